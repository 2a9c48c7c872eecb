//! The JSON API under `/api/v1`: Forensic Search, streamed export (CSV, JSON Lines),
//! the connections and their health, API tokens, the audit log, and the OpenAPI
//! document. Every call but the document needs an API token
//! (`Authorization: Bearer tl_...`, the scheme in any case).
//!
//! Every answer carries an `x-request-id`; errors are one JSON shape,
//! `{"error": {"code", "message", "request_id"}}`, and what went wrong inside the
//! server stays in its log under that id. Each request is logged (method, route,
//! status, duration, token, id); repeated failed authentication from one address is
//! refused for a while.

mod alerts;
pub(crate) mod export;
mod openapi;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use salesforce::error::error_chain;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::access::ApiToken;
use crate::connector::Fleet;
use crate::search::SearchQuery;
use crate::search::output;
use crate::store::{Store, StoreError};

/// Largest request body accepted (a search query is a few KB at most).
const MAX_BODY: usize = 256 * 1024;
/// Failed authentications from one address within [`FAILURE_WINDOW`] before its
/// requests are refused until the window has passed.
pub(crate) const MAX_FAILURES: usize = 10;
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub(crate) struct Api {
    store: Arc<dyn Store>,
    /// The connections this server is monitoring.
    fleet: Arc<Fleet>,
    exports: Arc<export::Slots>,
    failures: Arc<Failures>,
    /// Told when rules change.
    alerting: Arc<crate::alerting::Alerting>,
    /// Replaced when risk settings or watch lists change.
    risk: Arc<crate::risk::RiskPolicy>,
}

pub(crate) fn router(
    store: Arc<dyn Store>,
    fleet: Arc<Fleet>,
    exports: Arc<export::Slots>,
    alerting: Arc<crate::alerting::Alerting>,
    risk: Arc<crate::risk::RiskPolicy>,
) -> Router {
    let api = Api { store, fleet, exports, failures: Arc::default(), alerting, risk };
    Router::new()
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/search", post(search))
        .route("/api/v1/export", post(export::export))
        .route("/api/v1/connections", get(connections))
        .route("/api/v1/connections/{id}/rescan", post(rescan))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/tokens", get(tokens))
        .route("/api/v1/tokens/{name}", delete(revoke_token))
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/alerts/{alert}", get(alerts::show).patch(alerts::update))
        .route("/api/v1/rules", get(alerts::rules).post(alerts::create_rule))
        .route("/api/v1/rules/{rule}", get(alerts::rule).put(alerts::replace_rule).delete(alerts::delete_rule))
        .route("/api/v1/rules/{rule}/enable", post(alerts::enable))
        .route("/api/v1/rules/{rule}/disable", post(alerts::disable))
        .route("/api/v1/rules/{rule}/backtest", post(alerts::backtest))
        .route("/api/v1/channels", get(alerts::channels))
        .route("/api/v1/risk", get(alerts::risk).put(alerts::set_risk))
        .route("/api/v1/templates", get(alerts::templates).put(alerts::set_templates))
        .route("/api/v1/watchlists", get(alerts::watchlists).post(alerts::add_watch))
        .route("/api/v1/watchlists/{kind}/{username}", delete(alerts::remove_watch))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(observe))
        .with_state(api)
}

/// A new API token (shown once) and the hash to store.
pub fn new_token() -> (String, String) {
    let token = format!("tl_{}", salesforce::oauth::random_token(32));
    let hash = token_hash(&token);
    (token, hash)
}

pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What is known of the request being answered.
struct RequestInfo {
    id: String,
    client: IpAddr,
    token: Mutex<Option<String>>,
}

tokio::task_local! {
    static REQUEST: Arc<RequestInfo>;
}

fn request_id() -> String {
    REQUEST.try_with(|r| r.id.clone()).unwrap_or_default()
}

/// Gives each request an id, and logs it when answered.
async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let client =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let info = Arc::new(RequestInfo { id: salesforce::oauth::random_token(12), client, token: Mutex::new(None) });
    let mut response = REQUEST.scope(info.clone(), next.run(request)).await;
    if let Ok(id) = HeaderValue::from_str(&info.id) {
        response.headers_mut().insert("x-request-id", id);
    }
    let token = info.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
    tracing::info!(
        request_id = %info.id,
        %method,
        route = route.as_deref().unwrap_or("(none)"),
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        token = token.as_deref().unwrap_or("-"),
        client = %info.client,
        "api request"
    );
    response
}

/// An error answer: the one JSON shape of every failure.
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Busy or throttled: try again after `seconds`.
    fn too_many(message: impl Into<String>, seconds: u64) -> ApiError {
        ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
        }
    }

    /// A failure inside the server: logged in full, answered in general terms.
    fn internal(what: &str, cause: &dyn std::error::Error) -> ApiError {
        tracing::error!(request_id = %request_id(), "{what}: {}", error_chain(cause));
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server could not complete the request")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message, "request_id": request_id() } });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidQuery(q) => ApiError::bad_request("invalid_query", q.0),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            internal => ApiError::internal("storage", &internal),
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API resource (see /api/v1/openapi.json)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this resource does not answer that method")
}

/// Recent failed authentications by client address.
#[derive(Default)]
pub(crate) struct Failures(Mutex<HashMap<IpAddr, VecDeque<Instant>>>);

impl Failures {
    /// The failures within the window (older ones forgotten).
    pub(crate) fn recent(&self, client: IpAddr) -> usize {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = map.get_mut(&client) else { return 0 };
        while times.front().is_some_and(|t| t.elapsed() > FAILURE_WINDOW) {
            times.pop_front();
        }
        let n = times.len();
        if n == 0 {
            map.remove(&client);
        }
        n
    }

    pub(crate) fn record(&self, client: IpAddr) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let times = map.entry(client).or_default();
        times.push_back(Instant::now());
        if times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }
}

/// The token a request carries, checked: known, not revoked, not expired. Failures
/// are logged and counted by client address; too many are refused for a while.
fn authenticate(api: &Api, headers: &HeaderMap) -> Result<ApiToken, ApiError> {
    let client = REQUEST.try_with(|r| r.client).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if api.failures.recent(client) >= MAX_FAILURES {
        return Err(ApiError::too_many("too many failed authentications from this address", FAILURE_WINDOW.as_secs()));
    }
    let refuse = |why: &str| {
        api.failures.record(client);
        tracing::warn!(request_id = %request_id(), %client, "authentication refused: {why}");
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API token is required: Authorization: Bearer tl_...",
        )
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| refuse("no bearer token"))?;
    let now = chrono::Utc::now().timestamp_millis();
    let token = api.store.api_token(&token_hash(presented))?.ok_or_else(|| refuse("unknown token"))?;
    if !token.is_valid(now) {
        return Err(refuse(&format!("token {:?} is revoked or expired", token.name)));
    }
    // The last use is kept to the minute: one write per token a minute, not per call.
    if token.last_used_at.is_none_or(|at| now - at > 60_000) {
        api.store.touch_api_token(&token.name, now)?;
    }
    let _ = REQUEST.try_with(|r| *r.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.name.clone()));
    Ok(token)
}

/// Who a token acts as, in the audit log.
fn actor(token: &ApiToken) -> String {
    format!("token {}", token.name)
}

/// Reads and parses a query body, with a clear error for anything wrong.
async fn read_query(body: Body) -> Result<SearchQuery, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a request body has at most {MAX_BODY} bytes"),
        )
    })?;
    let query: SearchQuery = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_query", format!("the query is not valid: {e}")))?;
    query.validate().map_err(|e| ApiError::bad_request("invalid_query", e.0))?;
    Ok(query)
}

/// The query string's parameters; any name not in `known` is refused.
fn parameters(raw: Option<&str>, known: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if !known.contains(&name.as_ref()) {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("unknown parameter {name:?} (known: {})", known.join(", ")),
            ));
        }
        out.insert(name.into_owned(), value.into_owned());
    }
    Ok(out)
}

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(ApiError::internal("a storage task", &e)),
    }
}

async fn search(State(api): State<Api>, headers: HeaderMap, body: Body) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let query = read_query(body).await?;
    let store = api.store.clone();
    let page = blocking(move || store.search(&query)).await?;
    let events: Vec<Value> = page.events.iter().map(output::nested).collect();
    Ok(Json(json!({ "events": events, "next": page.next })))
}

async fn connections(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let store = api.store.clone();
    let list = blocking(move || store.connections()).await?;
    Ok(Json(json!(list)))
}

/// The nodes sharing the database, their last heartbeat and the leases they hold.
async fn nodes(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    Ok(Json(json!({ "nodes": api.fleet.nodes().await? })))
}

/// Scans the org for the connection's monitored users now.
async fn rescan(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let token = authenticate(&api, &headers)?;
    api.store.connection(&id)?;
    let context = api.fleet.context(&id).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_running",
            format!("connection {id} is not being monitored by this server"),
        )
    })?;
    api.store.audit(&actor(&token), "connection.rescan", &id)?;
    let users = crate::connector::rescan(&context).await.map_err(|e| {
        ApiError::new(StatusCode::BAD_GATEWAY, "salesforce", format!("the scan failed: {}", e.problem().message))
    })?;
    Ok(Json(json!({ "monitored_users": users })))
}

async fn tokens(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let store = api.store.clone();
    Ok(Json(json!(blocking(move || store.api_tokens()).await?)))
}

async fn revoke_token(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let token = authenticate(&api, &headers)?;
    api.store.revoke_api_token(&name, &actor(&token))?;
    Ok(Json(json!({ "revoked": name })))
}

async fn audit_log(
    State(api): State<Api>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let params = parameters(raw.as_deref(), &["limit"])?;
    let limit = match params.get("limit") {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::bad_request("invalid_parameter", "limit is a number from 1 to 10000"))?,
    };
    let store = api.store.clone();
    Ok(Json(json!(blocking(move || store.audit_log(limit)).await?)))
}
