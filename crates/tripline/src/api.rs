//! The JSON API under `/api/v1`: Forensic Search, streamed export (CSV, JSON Lines),
//! the connections and their health, and the OpenAPI document. Every call but the
//! document needs an API token (`Authorization: Bearer tl_...`).

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::connector::ConnectionContext;
use crate::search::SearchQuery;
use crate::search::output::{self, Format};
use crate::store::{Store, StoreError};

#[derive(Clone)]
struct Api {
    store: Arc<dyn Store>,
    /// The connections this server is monitoring, by id.
    running: Arc<HashMap<String, Arc<ConnectionContext>>>,
}

pub(crate) fn router(store: Arc<dyn Store>, running: Vec<Arc<ConnectionContext>>) -> Router {
    let running = Arc::new(running.into_iter().map(|c| (c.connection_id.clone(), c)).collect());
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/search", post(search))
        .route("/api/v1/export", post(export))
        .route("/api/v1/connections", get(connections))
        .route("/api/v1/connections/{id}/rescan", post(rescan))
        .with_state(Api { store, running })
}

/// A new API token (shown once) and the hash to store.
pub fn new_token() -> (String, String) {
    let token = format!("tl_{}", salesforce::oauth::random_token(32));
    let hash = token_hash(&token);
    (token, hash)
}

pub(crate) fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": { "code": self.1, "message": self.2 } }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidQuery(q) => ApiError(StatusCode::BAD_REQUEST, "invalid_query", q.0),
            StoreError::Conflict(m) => ApiError(StatusCode::CONFLICT, "conflict", m),
            StoreError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, "not_found", m),
            // What went wrong inside stays in the server's log.
            internal => {
                tracing::error!("storage: {:#}", anyhow::Error::new(internal));
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not complete the request".into(),
                )
            }
        }
    }
}

fn authenticate(api: &Api, headers: &HeaderMap) -> Result<String, ApiError> {
    let unauthorized = || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an API token is required: Authorization: Bearer tl_...".into(),
        )
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    api.store.api_token_name(&token_hash(token.trim()))?.ok_or_else(unauthorized)
}

/// Parses and checks a query body, with a clear error for anything wrong.
fn parse_query(body: &[u8]) -> Result<SearchQuery, ApiError> {
    let query: SearchQuery = serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_query", format!("the query is not valid: {e}")))?;
    query.validate().map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_query", e.0))?;
    Ok(query)
}

async fn search(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let query = parse_query(&body)?;
    let store = api.store.clone();
    let page = tokio::task::spawn_blocking(move || store.search(&query))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    let events: Vec<Value> = page.events.iter().map(output::nested).collect();
    Ok(Json(json!({ "events": events, "next": page.next })))
}

#[derive(Deserialize)]
struct ExportParams {
    format: Option<String>,
}

/// Sends what the writer produced to the response body in ~64 KB pieces.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buffer: Vec<u8>,
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        // A closed channel means the client went away: stop producing.
        self.tx.blocking_send(Ok(chunk)).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client gone"))
    }
}

async fn export(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(params): Query<ExportParams>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authenticate(&api, &headers)?;
    let (format, content_type) = match params.format.as_deref().unwrap_or("csv") {
        "csv" => (Format::Csv, "text/csv; charset=utf-8"),
        "jsonl" => (Format::Jsonl, "application/x-ndjson"),
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "invalid_format",
                format!("format {other:?}: use csv or jsonl"),
            ));
        }
    };
    let mut query = parse_query(&body)?;
    query.page_size = query.page_size.max(1000);
    let (tx, rx) = mpsc::channel(8);
    let store = api.store.clone();
    tokio::task::spawn_blocking(move || {
        let errors = tx.clone();
        let mut writer = output::Writer::new(ChannelWriter { tx, buffer: Vec::new() }, format, None);
        let outcome = (|| -> Result<(), String> {
            writer.header().map_err(|e| e.to_string())?;
            loop {
                let page = store.search(&query).map_err(|e| e.to_string())?;
                writer.rows(&page.events).map_err(|e| e.to_string())?;
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => break,
                }
            }
            writer.finish().map(|_| ()).map_err(|e| e.to_string())
        })();
        if let Err(e) = outcome {
            // The status line is gone; ending the body with an error tells the client.
            let _ = errors.blocking_send(Err(io::Error::other(e)));
        }
    });
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from_stream(ReceiverStream::new(rx))).into_response())
}

async fn connections(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let list = api.store.connections()?;
    Ok(Json(json!(list)))
}

/// Scans the org for the connection's monitored users now.
async fn rescan(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    api.store.connection(&id)?;
    let context = api.running.get(&id).ok_or_else(|| {
        ApiError(StatusCode::CONFLICT, "not_running", format!("connection {id} is not being monitored by this server"))
    })?;
    let users = crate::connector::rescan(context)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, "salesforce", format!("the scan failed: {e:#}")))?;
    Ok(Json(json!({ "monitored_users": users })))
}

async fn openapi() -> Json<Value> {
    let query_schema = json!({
        "type": "object",
        "required": ["from_ms", "to_ms"],
        "properties": {
            "from_ms": { "type": "integer", "description": "Start of the time range, epoch milliseconds (UTC), inclusive." },
            "to_ms": { "type": "integer", "description": "End of the time range, exclusive." },
            "filter": { "$ref": "#/components/schemas/Filter" },
            "sort": { "type": "object", "properties": {
                "field": { "$ref": "#/components/schemas/Field" }, "descending": { "type": "boolean" } } },
            "page_size": { "type": "integer", "minimum": 1, "maximum": crate::search::MAX_PAGE, "default": 500 },
            "after": { "type": "string", "description": "The `next` of the previous page." },
            "after_seq": { "type": "integer", "description": "Only events stored after this ingest sequence." }
        }
    });
    let fields = [
        "observed_at",
        "connection_id",
        "attribution",
        "user_id",
        "username",
        "email",
        "user_name",
        "report_id",
        "report_name",
        "export_format",
        "operation",
        "rows",
        "queried_entities",
        "file_name",
        "source_ip",
        "destination",
        "severity",
        "risk_score",
    ];
    Json(json!({
        "openapi": "3.1.0",
        "info": { "title": "Tripline API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Forensic Search over Salesforce report downloads." },
        "components": {
            "securitySchemes": { "token": { "type": "http", "scheme": "bearer", "description": "An API token (tripline api-token --name NAME)." } },
            "schemas": {
                "Field": { "type": "string", "enum": fields },
                "Filter": { "oneOf": [
                    { "type": "object", "required": ["all"], "properties": { "all": { "type": "array", "items": { "$ref": "#/components/schemas/Filter" } } } },
                    { "type": "object", "required": ["any"], "properties": { "any": { "type": "array", "items": { "$ref": "#/components/schemas/Filter" } } } },
                    { "type": "object", "required": ["term"], "properties": { "term": { "type": "object", "required": ["field", "op"], "properties": {
                        "field": { "$ref": "#/components/schemas/Field" },
                        "op": { "type": "string", "enum": ["is", "is_not", "any_of", "exists", "greater", "less", "within_last", "matches"] },
                        "value": { "description": "A string (is, is_not, matches: * and ? wildcards), strings (any_of), a boolean (exists), a number (greater, less), milliseconds (within_last)." }
                    } } } }
                ] },
                "SearchQuery": query_schema,
                "Error": { "type": "object", "properties": { "error": { "type": "object", "properties": {
                    "code": { "type": "string" }, "message": { "type": "string" } } } } }
            }
        },
        "security": [{ "token": [] }],
        "paths": {
            "/api/v1/search": { "post": {
                "summary": "One page of file events matching a query.",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SearchQuery" } } } },
                "responses": {
                    "200": { "description": "Events (nested: event, user, report, file, source, destination, risk, raw) and `next`." },
                    "400": { "description": "The query is not valid.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                    "401": { "description": "No valid API token." }
                }
            } },
            "/api/v1/export": { "post": {
                "summary": "Every event matching a query, streamed.",
                "parameters": [{ "name": "format", "in": "query", "schema": { "type": "string", "enum": ["csv", "jsonl"], "default": "csv" } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SearchQuery" } } } },
                "responses": {
                    "200": { "description": "CSV (formulas neutralised) or JSON Lines, streamed." },
                    "400": { "description": "The query or format is not valid." },
                    "401": { "description": "No valid API token." }
                }
            } },
            "/api/v1/connections/{id}/rescan": { "post": {
                "summary": "Scan the org for the connection's monitored users now.",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "How many users are monitored." }, "404": { "description": "No such connection." },
                               "409": { "description": "This server is not monitoring it." }, "502": { "description": "Salesforce failed." } }
            } },
            "/api/v1/connections": { "get": {
                "summary": "The data connections, their status and problems.",
                "responses": { "200": { "description": "Connections." }, "401": { "description": "No valid API token." } }
            } },
            "/api/v1/openapi.json": { "get": { "security": [], "summary": "This document.", "responses": { "200": { "description": "OpenAPI 3.1." } } } }
        }
    }))
}
