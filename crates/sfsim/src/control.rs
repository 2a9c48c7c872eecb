//! The control API (`/control/v1`, JSON) that tests, the demo and benchmarks use to
//! act as people and admins in the org and to inject faults. Documented in
//! `docs/sfsim.md`. Not a Salesforce interface.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value as J, json};
use sfwire::id::SfId;

use crate::activity::{CORPORATE_CIDRS, ExportRequest, People};
use crate::chaos::{Chaos, ChaosSettings};
use crate::clock::now_ms;
use crate::faults::Delivery;
use crate::model::Value;
use crate::org::{EventType, same_id};
use crate::sessions::{IpRange, RefreshPolicy};
use crate::sim::Sim;

/// A client of the control API, for tests, demos and benchmarks.
#[derive(Debug, Clone)]
pub struct ControlClient {
    base: String,
    http: reqwest::Client,
}

impl ControlClient {
    /// `base_url` is the org's (the control API lives under `/control/v1`).
    pub fn new(base_url: &str) -> ControlClient {
        ControlClient { base: format!("{base_url}/control/v1"), http: reqwest::Client::new() }
    }

    /// POSTs `body` to `path` (such as `/users/ID/export`); an error for any answer
    /// but success.
    pub async fn post(&self, path: &str, body: &J) -> anyhow::Result<J> {
        let r = self.http.post(format!("{}{path}", self.base)).json(body).send().await?;
        Self::answer(path, r).await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<J> {
        let r = self.http.get(format!("{}{path}", self.base)).send().await?;
        Self::answer(path, r).await
    }

    async fn answer(path: &str, r: reqwest::Response) -> anyhow::Result<J> {
        let status = r.status();
        if !status.is_success() {
            anyhow::bail!("control {path}: {status}: {}", r.text().await.unwrap_or_default());
        }
        Ok(r.json().await?)
    }
}

/// What control handlers share: the org and its simulated people.
#[derive(Clone)]
struct ControlState {
    sim: Arc<Sim>,
    people: Arc<People>,
    chaos: Arc<Chaos>,
}

impl FromRef<ControlState> for Arc<Chaos> {
    fn from_ref(state: &ControlState) -> Arc<Chaos> {
        state.chaos.clone()
    }
}

impl FromRef<ControlState> for Arc<Sim> {
    fn from_ref(state: &ControlState) -> Arc<Sim> {
        state.sim.clone()
    }
}

impl FromRef<ControlState> for Arc<People> {
    fn from_ref(state: &ControlState) -> Arc<People> {
        state.people.clone()
    }
}

pub fn routes(sim: Arc<Sim>, people: Arc<People>, chaos: Arc<Chaos>) -> Router {
    Router::new()
        .route("/org", get(org))
        .route("/users", get(users))
        .route("/users/{user}/login", post(login))
        .route("/users/{user}/logout", post(logout))
        .route("/users/{user}/export", post(export))
        .route("/users/{user}/state", post(user_state))
        .route("/users/{user}/password", post(set_password))
        .route("/users/{user}/permission-sets", post(assign))
        .route("/users/{user}/permission-sets/remove", post(unassign))
        .route("/permission-sets", get(permission_sets))
        .route("/permission-sets/{id}", post(set_permissions))
        .route("/groups", get(groups))
        .route("/groups/{id}/members", post(group_members))
        .route("/reports", get(reports))
        .route("/event-settings", get(event_settings).post(set_event_settings))
        .route("/licence", post(licence))
        .route("/policies", get(policies).post(add_policy))
        .route("/policies/{id}/delete", post(delete_policy))
        .route("/tokens/revoke", post(revoke_tokens))
        .route("/sessions/expire", post(expire_sessions))
        .route("/api-limit", post(api_limit))
        .route("/streams/drop", post(drop_streams))
        .route("/streams/corrupt", post(corrupt_event))
        .route("/stall", post(stall_requests))
        .route("/activity", get(activity_status).post(activity))
        .route("/preload", post(preload))
        .route("/retention", post(retention))
        .route("/connected-app/callbacks", post(add_callback))
        .route("/connected-app/certificate", post(set_certificate))
        .route("/connected-app/refresh-tokens", get(refresh_policy).post(set_refresh_policy))
        .route("/connected-app/ip-restrictions", get(ip_restrictions).post(set_ip_restrictions))
        .route("/concurrency", post(concurrency))
        .route("/streams/limits", post(stream_limits))
        .route("/streams/allocation", post(delivery_allocation))
        .route("/streams/delivery", get(delivery).post(set_delivery))
        .route("/streams/migrate", post(migrate))
        .route("/chaos", get(chaos_status).post(set_chaos))
        .route("/tls-certificate", get(tls_certificate))
        .with_state(ControlState { sim, people, chaos })
}

struct ControlError(StatusCode, String);

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(message: impl Into<String>) -> ControlError {
    ControlError(StatusCode::BAD_REQUEST, message.into())
}

fn missing(message: impl Into<String>) -> ControlError {
    ControlError(StatusCode::NOT_FOUND, message.into())
}

type Reply = Result<Json<J>, ControlError>;

/// A user named by id (15 or 18) or username.
fn user_of(sim: &Sim, text: &str) -> Result<SfId, ControlError> {
    let org = sim.org();
    let by_id = SfId::parse(text).ok().filter(|id| org.table("User").get(id.as_str()).is_some());
    by_id.or_else(|| org.find_user_by_username(text)).ok_or_else(|| missing(format!("no user {text:?}")))
}

fn id_in(sim: &Sim, object: &str, text: &str) -> Result<SfId, ControlError> {
    let org = sim.org();
    SfId::parse(text)
        .ok()
        .filter(|id| org.table(object).get(id.as_str()).is_some())
        .ok_or_else(|| missing(format!("no {object} {text:?}")))
}

async fn org(State(sim): State<Arc<Sim>>) -> Json<J> {
    let org = sim.org();
    let service = &org.service_user;
    Json(json!({
        "organization_id": org.id,
        "name": org.name,
        "instance_url": sim.base_url,
        "login_url": sim.base_url,
        "service_account": {
            "user_id": service,
            "username": org.username(service),
            "password": org.passwords.get(service.as_str()),
        },
        "connected_app": {
            "client_id": org.app.client_id,
            "client_secret": org.app.client_secret,
            "callback_urls": org.app.callback_urls,
        },
        "users": org.table("User").len(),
        "reports": org.reports.len(),
        "corporate_cidrs": CORPORATE_CIDRS,
        "pubsub": { "topics": sim.topics.iter().map(|t| json!({"topic": t.name, "retained": t.len(), "schema_id": t.schema_id})).collect::<Vec<_>>() },
    }))
}

#[derive(Deserialize)]
struct Page {
    offset: Option<usize>,
    limit: Option<usize>,
}

async fn users(State(sim): State<Arc<Sim>>, State(people): State<Arc<People>>, Query(page): Query<Page>) -> Json<J> {
    let now = now_ms();
    let org = sim.org();
    let list: Vec<J> = org
        .user_ids()
        .into_iter()
        .skip(page.offset.unwrap_or(0))
        .take(page.limit.unwrap_or(usize::MAX))
        .map(|u| {
            json!({
                "id": u,
                "username": org.username(&u),
                "email": org.user_field(&u, "Email").to_json(),
                "name": org.user_field(&u, "Name").to_json(),
                "active": org.user_active(&u),
                "frozen": org.user_frozen(&u),
                "can_export_reports": org.user_has_permission(&u, "PermissionsExportReport", now),
                "logged_in": people.session(&u).is_some(),
                "password": org.passwords.get(u.as_str()),
            })
        })
        .collect();
    Json(J::Array(list))
}

#[derive(Deserialize, Default)]
struct LoginBody {
    source_ip: Option<String>,
}

async fn login(
    State(sim): State<Arc<Sim>>,
    State(people): State<Arc<People>>,
    Path(user): Path<String>,
    body: Option<Json<LoginBody>>,
) -> Reply {
    let user = user_of(&sim, &user)?;
    let ip = body.and_then(|b| b.0.source_ip);
    let (session, event) = people.login(&sim, &user, ip).map_err(bad)?;
    Ok(Json(json!({ "session": session, "event_identifier": event })))
}

async fn logout(State(sim): State<Arc<Sim>>, State(people): State<Arc<People>>, Path(user): Path<String>) -> Reply {
    let user = user_of(&sim, &user)?;
    let event = people.logout(&sim, &user);
    Ok(Json(json!({ "was_logged_in": event.is_some(), "event_identifier": event })))
}

async fn export(
    State(sim): State<Arc<Sim>>,
    State(people): State<Arc<People>>,
    Path(user): Path<String>,
    body: Option<Json<ExportRequest>>,
) -> Reply {
    let user = user_of(&sim, &user)?;
    let request = body.map(|b| b.0).unwrap_or_default();
    let outcome = people.export(&sim, &user, &request).map_err(bad)?;
    Ok(Json(serde_json::to_value(outcome).unwrap_or_default()))
}

#[derive(Deserialize)]
struct UserState {
    active: Option<bool>,
    frozen: Option<bool>,
}

async fn user_state(State(sim): State<Arc<Sim>>, Path(user): Path<String>, Json(body): Json<UserState>) -> Reply {
    let user = user_of(&sim, &user)?;
    if let Some(active) = body.active {
        sim.set_user_active(&user, active);
    }
    let mut org = sim.org();
    if let Some(frozen) = body.frozen {
        org.set_user_frozen(&user, frozen);
    }
    Ok(Json(json!({ "active": org.user_active(&user), "frozen": org.user_frozen(&user) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Password {
    password: String,
}

/// A new password (an admin's reset or the user's change) ends the user's sessions.
async fn set_password(State(sim): State<Arc<Sim>>, Path(user): Path<String>, Json(body): Json<Password>) -> Reply {
    let user = user_of(&sim, &user)?;
    if body.password.chars().count() < 8 {
        return Err(bad("a password has at least 8 characters"));
    }
    let (_, ended) = sim.set_password(&user, body.password);
    Ok(Json(json!({ "ended_sessions": ended })))
}

#[derive(Deserialize)]
struct Assignment {
    permission_set: String,
    expires: Option<String>,
}

async fn assign(State(sim): State<Arc<Sim>>, Path(user): Path<String>, Json(body): Json<Assignment>) -> Reply {
    let user = user_of(&sim, &user)?;
    let ps = id_in(&sim, "PermissionSet", &body.permission_set)?;
    let expires = match &body.expires {
        Some(t) => Some(crate::model::parse_datetime(t).ok_or_else(|| bad(format!("expires: not a datetime: {t:?}")))?),
        None => None,
    };
    let mut org = sim.org();
    let psg = {
        let t = org.table("PermissionSet");
        t.get(ps.as_str()).and_then(|r| t.value(r, "PermissionSetGroupId").as_str().and_then(|s| SfId::parse(s).ok()))
    };
    let id = org.assign(&user, &ps, psg.as_ref(), expires);
    Ok(Json(json!({ "assignment_id": id })))
}

async fn unassign(State(sim): State<Arc<Sim>>, Path(user): Path<String>, Json(body): Json<Assignment>) -> Reply {
    let user = user_of(&sim, &user)?;
    let ps = id_in(&sim, "PermissionSet", &body.permission_set)?;
    let mut org = sim.org();
    let t = org.table("PermissionSetAssignment");
    let ids: Vec<String> = t
        .rows()
        .filter(|r| same_id(t.value(r, "AssigneeId"), &user) && same_id(t.value(r, "PermissionSetId"), &ps))
        .filter_map(|r| t.value(r, "Id").as_str().map(str::to_owned))
        .collect();
    let t = org.table_mut("PermissionSetAssignment");
    let removed = ids.iter().filter(|id| t.delete(id)).count();
    Ok(Json(json!({ "removed": removed })))
}

async fn permission_sets(State(sim): State<Arc<Sim>>) -> Json<J> {
    let org = sim.org();
    let t = org.table("PermissionSet");
    let list: Vec<J> = t
        .rows()
        .map(|r| {
            let mut o = serde_json::Map::new();
            for (f, v) in t.schema.fields.iter().zip(r) {
                o.insert(f.name.into(), v.to_json());
            }
            J::Object(o)
        })
        .collect();
    Json(J::Array(list))
}

/// Body: `{"PermissionsExportReport": false, ...}`.
async fn set_permissions(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    Json(body): Json<serde_json::Map<String, J>>,
) -> Reply {
    let ps = id_in(&sim, "PermissionSet", &id)?;
    let mut org = sim.org();
    let schema = org.table("PermissionSet").schema;
    for (name, value) in &body {
        let field = schema
            .field_index(name)
            .map(|i| schema.fields[i].name)
            .filter(|f| f.starts_with("Permissions"))
            .ok_or_else(|| bad(format!("{name:?} is not a permission field")))?;
        let on = value.as_bool().ok_or_else(|| bad(format!("{name}: expected true or false")))?;
        org.table_mut("PermissionSet").set(ps.as_str(), field, Value::Bool(on));
    }
    org.recompute_permission_set_groups();
    Ok(Json(json!({ "updated": body.len() })))
}

async fn groups(State(sim): State<Arc<Sim>>) -> Json<J> {
    let org = sim.org();
    let t = org.table("Group");
    let members = org.table("GroupMember");
    let list: Vec<J> = t
        .rows()
        .map(|r| {
            let id = t.value(r, "Id").as_str().unwrap_or_default();
            let direct: Vec<&str> = members
                .rows()
                .filter(|m| members.value(m, "GroupId").as_str() == Some(id))
                .filter_map(|m| members.value(m, "UserOrGroupId").as_str())
                .collect();
            json!({
                "id": id,
                "name": t.value(r, "Name").to_json(),
                "developer_name": t.value(r, "DeveloperName").to_json(),
                "type": t.value(r, "Type").to_json(),
                "members": direct,
            })
        })
        .collect();
    Json(J::Array(list))
}

#[derive(Deserialize)]
struct Members {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

async fn group_members(State(sim): State<Arc<Sim>>, Path(id): Path<String>, Json(body): Json<Members>) -> Reply {
    let group = id_in(&sim, "Group", &id)?;
    let resolve = |m: &String| -> Result<SfId, ControlError> {
        if m.starts_with(sfwire::id::prefix::GROUP) { id_in(&sim, "Group", m) } else { user_of(&sim, m) }
    };
    let add: Vec<SfId> = body.add.iter().map(resolve).collect::<Result<_, _>>()?;
    let remove: Vec<SfId> = body.remove.iter().map(resolve).collect::<Result<_, _>>()?;
    let mut org = sim.org();
    for m in &add {
        org.add_group_member(&group, m);
    }
    let removed = remove.iter().filter(|m| org.remove_group_member(&group, m)).count();
    Ok(Json(json!({ "added": add.len(), "removed": removed })))
}

async fn reports(State(sim): State<Arc<Sim>>) -> Json<J> {
    Json(serde_json::to_value(&sim.org().reports).unwrap_or_default())
}

async fn event_settings(State(sim): State<Arc<Sim>>) -> Json<J> {
    Json(serde_json::to_value(&sim.org().settings).unwrap_or_default())
}

#[derive(Deserialize)]
struct EventSwitch {
    event: String,
    streaming: Option<bool>,
    storing: Option<bool>,
}

async fn set_event_settings(State(sim): State<Arc<Sim>>, Json(body): Json<EventSwitch>) -> Reply {
    let e = EventType::parse(&body.event).ok_or_else(|| bad(format!("unknown event type {:?}", body.event)))?;
    let mut org = sim.org();
    org.settings.set(e, body.streaming, body.storing);
    Ok(Json(serde_json::to_value(&org.settings).unwrap_or_default()))
}

#[derive(Deserialize)]
struct Enabled {
    enabled: bool,
}

async fn licence(State(sim): State<Arc<Sim>>, Json(body): Json<Enabled>) -> Json<J> {
    sim.org().settings.licence = body.enabled;
    Json(json!({ "licence": body.enabled }))
}

async fn policies(State(sim): State<Arc<Sim>>) -> Json<J> {
    Json(serde_json::to_value(&sim.org().policies).unwrap_or_default())
}

/// Adds a transaction security policy on report events (after those there are).
async fn add_policy(State(sim): State<Arc<Sim>>, Json(mut policy): Json<crate::org::SecurityPolicy>) -> Reply {
    if !crate::org::SecurityPolicy::OUTCOMES.contains(&policy.outcome.as_str()) {
        return Err(bad(format!("outcome is one of {:?}", crate::org::SecurityPolicy::OUTCOMES)));
    }
    let mut org = sim.org();
    policy.id = org.new_id(sfwire::id::prefix::TRANSACTION_SECURITY_POLICY);
    org.policies.push(policy.clone());
    Ok(Json(serde_json::to_value(policy).unwrap_or_default()))
}

async fn delete_policy(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Reply {
    let mut org = sim.org();
    let before = org.policies.len();
    org.policies.retain(|p| p.id.as_str() != id && p.id.short() != id);
    if org.policies.len() == before {
        return Err(missing(format!("no policy {id}")));
    }
    Ok(Json(json!({ "deleted": id })))
}

#[derive(Deserialize, Default)]
struct MaybeUser {
    user: Option<String>,
}

async fn revoke_tokens(State(sim): State<Arc<Sim>>, body: Option<Json<MaybeUser>>) -> Reply {
    let user = body.and_then(|b| b.0.user).map(|u| user_of(&sim, &u)).transpose()?;
    let revoked = sim.sessions().revoke_user(user.as_ref());
    Ok(Json(json!({ "revoked": revoked })))
}

async fn expire_sessions(State(sim): State<Arc<Sim>>, body: Option<Json<MaybeUser>>) -> Reply {
    let user = body.and_then(|b| b.0.user).map(|u| user_of(&sim, &u)).transpose()?;
    let expired = sim.sessions().expire_access(user.as_ref());
    Ok(Json(json!({ "expired_access_tokens": expired })))
}

#[derive(Deserialize)]
struct Remaining {
    remaining: i64,
}

async fn api_limit(State(sim): State<Arc<Sim>>, Json(body): Json<Remaining>) -> Json<J> {
    sim.api_remaining.store(body.remaining.max(0), Ordering::SeqCst);
    Json(json!({ "remaining": body.remaining.max(0), "max": sim.config.api_daily_limit }))
}

async fn drop_streams(State(sim): State<Arc<Sim>>) -> Json<J> {
    sim.end_streams();
    Json(json!({ "dropped": true }))
}

#[derive(Deserialize)]
struct Stall {
    seconds: u64,
}

/// REST and Metadata requests are accepted and left unanswered for `seconds` (0 ends it).
async fn stall_requests(State(sim): State<Arc<Sim>>, Json(body): Json<Stall>) -> Json<J> {
    let until = if body.seconds == 0 { 0 } else { now_ms() + body.seconds.min(3_600) as i64 * 1_000 };
    sim.stalled_until_ms.store(until, Ordering::SeqCst);
    Json(json!({ "stalled_until_ms": until }))
}

/// Holds a request while the org is stalled (a layer on the REST and Metadata routes).
pub(crate) async fn stall(
    State(sim): State<Arc<Sim>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    loop {
        let until = sim.stalled_until_ms.load(Ordering::SeqCst);
        let now = now_ms();
        if until <= now {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis((until - now).min(200) as u64)).await;
    }
    next.run(request).await
}

#[derive(Deserialize)]
struct Corrupt {
    event: String,
}

/// Publishes one event whose payload does not decode in its topic's schema (a
/// truncated datum), as a damaged event would arrive.
async fn corrupt_event(State(sim): State<Arc<Sim>>, Json(body): Json<Corrupt>) -> Reply {
    let e = EventType::parse(&body.event).ok_or_else(|| bad(format!("unknown event type {:?}", body.event)))?;
    // A long whose varint never ends: no reader can finish the first field.
    let payload = vec![0xff; 7];
    let replay = sim.topic(e).publish([(format!("corrupt-{}", now_ms()), payload, now_ms())]);
    Ok(Json(json!({ "replay_id": replay.first() })))
}

#[derive(Deserialize)]
struct ActivityBody {
    paused: Option<bool>,
    rate: Option<f64>,
}

async fn activity_status(State(people): State<Arc<People>>) -> Json<J> {
    let (paused, rate) = people.status();
    Json(json!({ "paused": paused, "rate": rate, "logged_in": people.logged_in() }))
}

async fn activity(State(people): State<Arc<People>>, Json(body): Json<ActivityBody>) -> Reply {
    if let Some(rate) = body.rate {
        if !rate.is_finite() || rate < 0.0 {
            return Err(bad("rate must be a non-negative number"));
        }
        people.set_rate(rate);
    }
    if let Some(paused) = body.paused {
        people.set_paused(paused);
    }
    Ok(activity_status(State(people)).await)
}

#[derive(Deserialize)]
struct Preload {
    count: usize,
    /// Spread EventDates over this many seconds before now (default: one hour).
    span_seconds: Option<i64>,
    seed: Option<u64>,
}

async fn preload(State(sim): State<Arc<Sim>>, Json(body): Json<Preload>) -> Reply {
    if body.count > 50_000_000 {
        return Err(bad("count: at most 50,000,000"));
    }
    let span_ms = body.span_seconds.unwrap_or(3600).max(1) * 1000;
    let seed = body.seed.unwrap_or(sim.config.seed);
    let started = Instant::now();
    let s = sim.clone();
    let published = tokio::task::spawn_blocking(move || crate::activity::preload(&s, body.count, span_ms, seed))
        .await
        .map_err(|e| ControlError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Json(json!({ "published": published, "seconds": seconds })))
}

#[derive(Deserialize)]
struct Retention {
    seconds: i64,
}

async fn retention(State(sim): State<Arc<Sim>>, Json(body): Json<Retention>) -> Reply {
    if body.seconds <= 0 {
        return Err(bad("seconds must be positive"));
    }
    sim.retention_ms.store(body.seconds * 1000, Ordering::SeqCst);
    for t in &sim.topics {
        t.trim(now_ms());
    }
    Ok(Json(json!({ "retention_seconds": body.seconds })))
}

#[derive(Deserialize)]
struct Callback {
    url: String,
}

async fn add_callback(State(sim): State<Arc<Sim>>, Json(body): Json<Callback>) -> Reply {
    if !(body.url.starts_with("http://") || body.url.starts_with("https://")) {
        return Err(bad("url must be http(s)"));
    }
    let mut org = sim.org();
    if !org.app.callback_urls.contains(&body.url) {
        org.app.callback_urls.push(body.url);
    }
    Ok(Json(json!({ "callback_urls": org.app.callback_urls })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Certificate {
    pem: String,
}

/// "Use digital signatures": the certificate whose key signs JWT bearer assertions.
async fn set_certificate(State(sim): State<Arc<Sim>>, Json(body): Json<Certificate>) -> Reply {
    crate::oauth::certificate_key(&body.pem).map_err(bad)?;
    sim.org().app.certificate_pem = Some(body.pem);
    Ok(Json(json!({ "certificate": "set" })))
}

async fn tls_certificate(State(sim): State<Arc<Sim>>) -> String {
    sim.tls_cert_pem.clone()
}

async fn refresh_policy(State(sim): State<Arc<Sim>>) -> Json<J> {
    Json(serde_json::to_value(sim.org().app.refresh_policy).unwrap_or_default())
}

/// The connected app's refresh-token policy: `{"expiry": {"kind": "until-revoked" |
/// "immediately" | "after" | "if-unused", "seconds"?}, "rotate"?}`.
async fn set_refresh_policy(State(sim): State<Arc<Sim>>, Json(policy): Json<RefreshPolicy>) -> Json<J> {
    sim.org().app.refresh_policy = policy;
    Json(serde_json::to_value(policy).unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IpRestrictions {
    ranges: Option<Vec<IpRange>>,
}

async fn ip_restrictions(State(sim): State<Arc<Sim>>) -> Json<J> {
    Json(json!({ "ranges": sim.org().app.ip_ranges }))
}

/// "Enforce IP restrictions" with these ranges (`null`: relax them).
async fn set_ip_restrictions(State(sim): State<Arc<Sim>>, Json(body): Json<IpRestrictions>) -> Reply {
    for range in body.ranges.iter().flatten() {
        range.check().map_err(bad)?;
    }
    sim.org().app.ip_ranges = body.ranges.clone();
    Ok(Json(json!({ "ranges": body.ranges })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Concurrency {
    max_requests: Option<usize>,
}

async fn concurrency(State(sim): State<Arc<Sim>>, Json(body): Json<Concurrency>) -> Json<J> {
    sim.faults.set_max_requests(body.max_requests);
    Json(json!({ "max_requests": sim.faults.max_requests() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamLimits {
    max_subscriptions: Option<usize>,
}

async fn stream_limits(State(sim): State<Arc<Sim>>, Json(body): Json<StreamLimits>) -> Json<J> {
    sim.faults.set_max_subscriptions(body.max_subscriptions);
    Json(json!({ "max_subscriptions": sim.faults.max_subscriptions() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Allocation {
    remaining: Option<i64>,
}

/// Deliveries left today (`null`: not counted, as for Real-Time Event Monitoring).
async fn delivery_allocation(State(sim): State<Arc<Sim>>, Json(body): Json<Allocation>) -> Json<J> {
    sim.faults.set_delivery_remaining(body.remaining);
    Json(json!({ "remaining": sim.faults.delivery_remaining() }))
}

async fn delivery(State(sim): State<Arc<Sim>>) -> Json<J> {
    Json(serde_json::to_value(sim.faults.delivery()).unwrap_or_default())
}

async fn set_delivery(State(sim): State<Arc<Sim>>, Json(body): Json<Delivery>) -> Reply {
    if body.delay_ms > 60_000 || body.burst_ms > 60_000 {
        return Err(bad("delay_ms and burst_ms are at most 60000"));
    }
    sim.faults.set_delivery(body);
    Ok(Json(serde_json::to_value(body).unwrap_or_default()))
}

async fn migrate(State(sim): State<Arc<Sim>>) -> Json<J> {
    sim.migrate();
    Json(json!({ "migrated": true }))
}

async fn chaos_status(State(chaos): State<Arc<Chaos>>) -> Json<J> {
    Json(json!({ "settings": chaos.settings(), "injected": chaos.log() }))
}

/// Chaos mode: `{"rate": faults a minute (0: off), "seed"?, "faults"?: [...]}`.
async fn set_chaos(State(chaos): State<Arc<Chaos>>, Json(settings): Json<ChaosSettings>) -> Reply {
    chaos.set(settings.clone()).map_err(bad)?;
    Ok(Json(json!({ "settings": settings })))
}

/// Salesforce's refusal, in the dialect of the API asked (REST JSON or a SOAP fault).
fn refusal(path: &str, status: StatusCode, code: &str, message: &str) -> Response {
    if path.starts_with("/services/Soap/") {
        crate::metadata::fault(code, message)
    } else {
        (status, axum::Json(serde_json::json!([{ "message": message, "errorCode": code }]))).into_response()
    }
}

/// A layer on the REST, Metadata and SOAP routes: a session used from outside the
/// connected app's IP ranges is not valid there, and beyond the concurrent-request
/// limit Salesforce refuses the request (as it does long-running ones past 25).
pub(crate) async fn guard(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let with_session = path.starts_with("/services/data/") || path.starts_with("/services/Soap/m/");
    if with_session && !sim.org().app_ip_allowed(peer.ip()) {
        return refusal(&path, StatusCode::UNAUTHORIZED, "INVALID_SESSION_ID", "Session expired or invalid");
    }
    let Some(_slot) = sim.faults.enter() else {
        return refusal(
            &path,
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentPerOrgLongTxn Limit exceeded.",
        );
    };
    next.run(request).await
}
