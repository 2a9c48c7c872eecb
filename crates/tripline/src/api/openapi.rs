//! The OpenAPI 3.1 document of `/api/v1`. Field and operator lists come from the
//! query model itself (`Field::ALL`, `Op::NAMES`), so the document cannot drift from
//! what the API accepts; `tests/api.rs` calls every documented path.

use axum::Json;
use serde_json::{Value, json};

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

pub(super) async fn document() -> Json<Value> {
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
                "description": "Default: observed_at, newest first." },
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
                  "description": "Forensic Search over Salesforce report downloads, data connections, API tokens and the audit log." },
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
            "/api/v1/openapi.json": { "get": { "security": [], "summary": "This document.", "responses": { "200": { "description": "OpenAPI 3.1." } } } }
        }
    }))
}
