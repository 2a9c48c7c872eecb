//! The OpenAPI 3.1 document of `/api/v1`. Field and operator lists come from the
//! query model itself (`Field::ALL`, `Op::NAMES`), so the document cannot drift from
//! what the API accepts; `tests/api.rs` calls every documented path.

use axum::Json;
use serde_json::{Value, json};

use crate::alerts::AlertState;
use crate::risk::{RiskIndicator, Severity, WatchKind};
use crate::search::{Field, MAX_DEPTH, MAX_PAGE, MAX_TERMS, MAX_TEXT, MAX_VALUES, Op};

fn error(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn answers(ok: &str) -> Value {
    json!({
        "200": { "description": ok },
        "401": error("No valid API token."),
        "429": error("Too many failed authentications from this address, or too many exports at once; see Retry-After."),
    })
}

/// `answers` with one more status.
fn with(mut responses: Value, status: &str, description: &str) -> Value {
    responses[status] = error(description);
    responses
}

fn path(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
}

fn body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

pub(super) async fn document() -> Json<Value> {
    let states: Vec<&str> = AlertState::ALL.iter().map(|s| s.as_str()).collect();
    let severities: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    let watch_kinds: Vec<&str> = WatchKind::ALL.iter().map(|s| s.as_str()).collect();
    let indicators: Vec<&str> = RiskIndicator::ALL.iter().map(|s| s.as_str()).collect();
    let rule_draft = json!({
        "type": "object", "additionalProperties": false, "required": ["name", "severity"],
        "properties": {
            "name": { "type": "string", "maxLength": 120 },
            "description": { "type": "string" },
            "severity": { "type": "string", "enum": &severities[1..] },
            "suppress_minutes": { "type": "integer", "minimum": 0, "maximum": crate::alerts::MAX_MINUTES, "default": 60 },
            "channels": { "type": "array", "items": { "type": "integer" } },
            "conditions": { "type": "object", "additionalProperties": false, "properties": {
                "min_severity": { "type": "string", "enum": severities },
                "indicators": { "type": "array", "items": { "type": "string", "enum": indicators } },
                "min_rows": { "type": "integer" },
                "report_name": { "type": "string", "description": "* matches any text, any case." },
                "queried_objects": { "type": "array", "items": { "type": "string" } },
                "export_formats": { "type": "array", "items": { "type": "string" } },
                "operations": { "type": "array", "items": { "type": "string", "enum": crate::alerts::ExportOperation::ALL.iter().map(|o| o.as_str()).collect::<Vec<_>>() } },
                "destination": { "type": "string", "enum": ["corporate", "unmonitored"] },
                "watch_lists": { "type": "array", "items": { "type": "string", "enum": watch_kinds } },
                "include_users": { "type": "array", "items": { "type": "string" } },
                "exclude_users": { "type": "array", "items": { "type": "string" } },
                "connections": { "type": "array", "items": { "type": "string" } },
                "threshold": { "type": "object", "additionalProperties": false, "required": ["window_minutes"], "properties": {
                    "window_minutes": { "type": "integer", "minimum": 1 }, "exports": { "type": "integer", "description": "More than this many downloads." },
                    "rows": { "type": "integer", "description": "At least this many rows." } } }
            } }
        }
    });
    let fields: Vec<&str> = Field::ALL.iter().map(|f| f.as_str()).collect();
    let query = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["from_ms", "to_ms"],
        "properties": {
            "from_ms": { "type": "integer", "description": "Start of the time range, epoch milliseconds (UTC), inclusive." },
            "to_ms": { "type": "integer", "description": "End of the time range, exclusive." },
            "filter": { "$ref": "#/components/schemas/Filter" },
            "sort": { "type": "object", "additionalProperties": false, "required": ["field", "descending"], "properties": {
                "field": { "$ref": "#/components/schemas/Field" }, "descending": { "type": "boolean" } },
                "description": "Default: observed_at, newest first. Any field but alert." },
            "page_size": { "type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 500 },
            "after": { "type": "string", "description": "The `next` of the previous page." },
            "after_seq": { "type": "integer", "description": "Only events stored after this ingest sequence." }
        },
        "description": format!(
            "Unknown keys are refused. At most {MAX_TERMS} terms, {MAX_VALUES} values, {MAX_TEXT} characters a value, groups {MAX_DEPTH} deep."
        ),
    });
    let mut search = answers("Events (nested: event, user, report, file, source, destination, risk, raw) and `next`.");
    search["400"] = error("The query is not valid (the message names the problem).");
    let mut export = answers("CSV (formulas neutralised) or JSON Lines, streamed.");
    export["400"] = error("The query, format or a parameter is not valid.");
    let mut rescan = answers("How many users are monitored.");
    rescan["404"] = error("No such connection.");
    rescan["409"] = error("This server is not monitoring it.");
    rescan["502"] = error("Salesforce failed.");
    let mut revoke = answers("The token is revoked.");
    revoke["404"] = error("No token has this name.");
    let mut audit = answers("Audit entries, newest first: at, actor, action, target.");
    audit["400"] = error("limit is not a number from 1 to 10000.");
    Json(json!({
        "openapi": "3.1.0",
        "info": { "title": "Tripline API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Forensic Search over Salesforce report downloads, alerts and their rules, risk settings and watch lists, data connections, API tokens and the audit log." },
        "components": {
            "securitySchemes": { "token": { "type": "http", "scheme": "bearer", "description": "An API token (tripline api-token create --name NAME)." } },
            "schemas": {
                "Field": { "type": "string", "enum": fields },
                "Filter": { "oneOf": [
                    { "type": "object", "additionalProperties": false, "required": ["all"], "properties": { "all": { "type": "array", "items": { "$ref": "#/components/schemas/Filter" } } } },
                    { "type": "object", "additionalProperties": false, "required": ["any"], "properties": { "any": { "type": "array", "items": { "$ref": "#/components/schemas/Filter" } } } },
                    { "type": "object", "additionalProperties": false, "required": ["term"], "properties": { "term": { "type": "object", "additionalProperties": false, "required": ["field", "op"], "properties": {
                        "field": { "$ref": "#/components/schemas/Field" },
                        "op": { "type": "string", "enum": Op::NAMES },
                        "value": { "description": "A string (is, is_not, matches: * and ? wildcards), strings (any_of), a boolean (exists), a number (greater, less), milliseconds (within_last)." }
                    } } } }
                ] },
                "SearchQuery": query,
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "object",
                    "required": ["code", "message", "request_id"], "properties": {
                    "code": { "type": "string" }, "message": { "type": "string" },
                    "request_id": { "type": "string", "description": "Also in the x-request-id header and the server's log." } } } } }
            }
        },
        "security": [{ "token": [] }],
        "paths": {
            "/api/v1/search": { "post": {
                "summary": "One page of file events matching a query.",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SearchQuery" } } } },
                "responses": search
            } },
            "/api/v1/export": { "post": {
                "summary": "Every event matching a query, streamed (the server chooses the page size).",
                "parameters": [{ "name": "format", "in": "query", "schema": { "type": "string", "enum": ["csv", "jsonl"], "default": "csv" } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SearchQuery" } } } },
                "responses": export
            } },
            "/api/v1/connections": { "get": {
                "summary": "The data connections, their status and problems.",
                "responses": answers("Connections.")
            } },
            "/api/v1/connections/{id}/rescan": { "post": {
                "summary": "Scan the org for the connection's monitored users now (audited).",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": rescan
            } },
            "/api/v1/nodes": { "get": {
                "summary": "The nodes sharing the database: name, console address, start, last heartbeat, live, and the leases each holds (connection ids with their fencing token, duties).",
                "responses": answers("Nodes.")
            } },
            "/api/v1/tokens": { "get": {
                "summary": "The API tokens: name, created, last used, expiry, revocation (never the tokens).",
                "responses": answers("Tokens.")
            } },
            "/api/v1/tokens/{name}": { "delete": {
                "summary": "Revoke a token for good (audited).",
                "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": revoke
            } },
            "/api/v1/audit": { "get": {
                "summary": "The audit log.",
                "parameters": [{ "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 10000, "default": 100 } }],
                "responses": audit
            } },
            "/api/v1/alerts": { "get": {
                "summary": "Alerts in creation order, after `after` (a `seq`); `next` continues.",
                "parameters": [
                    { "name": "state", "in": "query", "schema": { "type": "string" }, "description": format!("Comma-separated: {}.", states.join(", ")) },
                    { "name": "severity", "in": "query", "schema": { "type": "string", "enum": severities }, "description": "This severity or higher." },
                    { "name": "rule", "in": "query", "schema": { "type": "integer" } },
                    { "name": "user", "in": "query", "schema": { "type": "string" }, "description": "Username or Salesforce user id." },
                    { "name": "after", "in": "query", "schema": { "type": "integer", "default": 0 } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } }
                ],
                "responses": with(answers("Alerts and `next`."), "400", "A parameter is not valid.")
            } },
            "/api/v1/alerts/{alert}": {
                "get": { "summary": "One alert with its notes and file events.", "parameters": [path("alert")],
                         "responses": with(answers("The alert."), "404", "No such alert.") },
                "patch": { "summary": "Triage: state, assignee (\"\" unassigns), a note (audited).", "parameters": [path("alert")],
                           "requestBody": body(json!({ "type": "object", "additionalProperties": false, "properties": {
                               "state": { "type": "string", "enum": states }, "assignee": { "type": "string" }, "note": { "type": "string", "maxLength": 4000 } } })),
                           "responses": with(with(answers("The alert as changed."), "404", "No such alert or account."), "400", "The body is not valid.") }
            },
            "/api/v1/rules": {
                "get": { "summary": "The alert rules.", "responses": answers("Rules.") },
                "post": { "summary": "Add a rule, disabled (audited).", "requestBody": body(rule_draft.clone()),
                          "responses": with(with(answers("The rule."), "400", "The rule is not valid (the message says why)."), "409", "The name is taken.") }
            },
            "/api/v1/rules/{rule}": {
                "get": { "summary": "One rule.", "parameters": [path("rule")], "responses": with(answers("The rule."), "404", "No such rule.") },
                "put": { "summary": "Change a rule (audited); an enabled rule applies as changed to downloads stored from then on.",
                         "parameters": [path("rule")], "requestBody": body(rule_draft),
                         "responses": with(with(answers("The rule."), "400", "The rule is not valid."), "404", "No such rule.") },
                "delete": { "summary": "Remove a rule; its alerts stay (audited).", "parameters": [path("rule")],
                            "responses": with(answers("Removed."), "404", "No such rule.") }
            },
            "/api/v1/rules/{rule}/enable": { "post": { "summary": "Enable a rule for downloads stored from now on (audited).",
                "parameters": [path("rule")], "responses": with(answers("The rule."), "404", "No such rule.") } },
            "/api/v1/rules/{rule}/disable": { "post": { "summary": "Disable a rule (audited).",
                "parameters": [path("rule")], "responses": with(answers("The rule."), "404", "No such rule.") } },
            "/api/v1/rules/{rule}/backtest": { "post": {
                "summary": "What the rule would have raised over the downloads observed in a window, in the order they were stored.",
                "parameters": [path("rule")],
                "requestBody": body(json!({ "type": "object", "additionalProperties": false, "required": ["from_ms", "to_ms"],
                    "properties": { "from_ms": { "type": "integer" }, "to_ms": { "type": "integer" } } })),
                "responses": with(with(answers("events, matched, alerts, grown, the first alerts, seconds."), "400", "The window is not valid."), "404", "No such rule.")
            } },
            "/api/v1/channels": { "get": { "summary": "Notification channels and their deliveries (never their secrets).", "responses": answers("Channels.") } },
            "/api/v1/risk": {
                "get": { "summary": "Risk settings: indicator scores, large-export rows, working hours and time zone, sensitive objects, severity thresholds.", "responses": answers("Risk settings.") },
                "put": { "summary": "Replace the risk settings (audited); they apply to downloads stored from now on.",
                         "requestBody": body(json!({ "type": "object", "description": "The whole settings object as GET returns it; unknown keys are refused." })),
                         "responses": with(answers("The settings."), "400", "The settings are not valid.") }
            },
            "/api/v1/templates": {
                "get": { "summary": "The message template: subject and text with {placeholders}.", "responses": answers("The template.") },
                "put": { "summary": "Replace the message template (audited); messages sent from then on use it.",
                         "requestBody": body(json!({ "type": "object", "additionalProperties": false, "required": ["subject", "body"],
                             "properties": { "subject": { "type": "string" }, "body": { "type": "string" } },
                             "description": format!("Placeholders: {}.", crate::alerts::template::PLACEHOLDERS.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")) })),
                         "responses": with(answers("The template."), "400", "A placeholder is unknown, or the subject is not one line.") }
            },
            "/api/v1/watchlists": {
                "get": { "summary": "Everyone on a watch list.", "responses": answers("Entries: kind, username, departure, note, added.") },
                "post": { "summary": "Add people to watch lists, or update their departure and note (audited).",
                          "requestBody": body(json!({ "type": "array", "items": { "type": "object", "additionalProperties": false, "required": ["kind", "username"],
                              "properties": { "kind": { "type": "string", "enum": watch_kinds }, "username": { "type": "string" },
                                              "departure": { "type": "string", "format": "date" }, "note": { "type": "string" } } } })),
                          "responses": with(answers("How many were new."), "400", "An entry is not valid.") }
            },
            "/api/v1/watchlists/{kind}/{username}": { "delete": { "summary": "Take someone off a watch list (audited).",
                "parameters": [path("kind"), path("username")], "responses": with(answers("Removed."), "404", "Not on that list.") } },
            "/api/v1/openapi.json": { "get": { "security": [], "summary": "This document.", "responses": { "200": { "description": "OpenAPI 3.1." } } } }
        }
    }))
}
