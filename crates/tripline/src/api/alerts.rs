//! Alerting through the API: alerts (list with paging by `seq`, one with its notes and
//! events, triage), rules (list, create, change, enable, disable, delete, back-test),
//! channels (without their secrets), risk settings and watch lists. Every change is
//! audited under the token's name.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{Api, ApiError, MAX_BODY, actor, authenticate, blocking, parameters};
use crate::alerts::output::alert_json;
use crate::alerts::{AlertFilter, AlertState, AlertUpdate, RuleDraft};
use crate::risk::{RiskSettings, WatchEntry, WatchKind};
use crate::store::StoreError;

/// Most alerts a page holds.
const MAX_ALERTS: usize = 1_000;

/// A JSON body of type `T`: unknown keys and wrong shapes are refused with the reason.
async fn body<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a request body has at most {MAX_BODY} bytes"),
        )
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("the body is not valid: {e}")))
}

fn invalid(problems: Vec<String>) -> Result<(), ApiError> {
    if problems.is_empty() { Ok(()) } else { Err(ApiError::bad_request("invalid_body", problems.join("; "))) }
}

fn number(text: &str, what: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request("invalid_parameter", format!("{what} is a number")))
}

pub(super) async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let params = parameters(raw.as_deref(), &["state", "severity", "rule", "user", "after", "limit"])?;
    let word = |e: crate::named::UnknownName| ApiError::bad_request("invalid_parameter", e.to_string());
    let states = match params.get("state") {
        None => Vec::new(),
        Some(list) => {
            list.split(',').map(|s| s.trim().parse::<AlertState>()).collect::<Result<_, _>>().map_err(word)?
        }
    };
    let limit = match params.get("limit") {
        None => 100,
        Some(text) => number(text, "limit")?.clamp(1, MAX_ALERTS as i64) as usize,
    };
    let filter = AlertFilter {
        states,
        min_severity: params.get("severity").map(|s| s.parse()).transpose().map_err(word)?,
        rule_id: params.get("rule").map(|r| number(r, "rule")).transpose()?,
        user: params.get("user").cloned(),
        after_seq: Some(params.get("after").map(|a| number(a, "after")).transpose()?.unwrap_or(0)),
        limit,
        ..AlertFilter::default()
    };
    let store = api.store.clone();
    let (alerts, _) = blocking(move || store.alerts(&filter)).await?;
    let next = (alerts.len() == limit).then(|| alerts.last().map(|a| a.seq)).flatten();
    let list: Vec<Value> = alerts.iter().map(|a| alert_json(a, None, None)).collect();
    Ok(Json(json!({ "alerts": list, "next": next })))
}

/// Events an alert's answer carries at most.
const ALERT_EVENTS: usize = 1_000;

pub(super) async fn show(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let store = api.store.clone();
    let (found, events) = blocking(move || Ok((store.alert(&id)?, store.alert_events(&id, ALERT_EVENTS)?))).await?;
    let (alert, notes) = found.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such alert"))?;
    Ok(Json(alert_json(&alert, Some(&notes), Some(&events))))
}

pub(super) async fn update(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Body,
) -> Result<Json<Value>, ApiError> {
    let token = authenticate(&api, &headers)?;
    let update: AlertUpdate = body(request).await?;
    if update.note.as_ref().is_some_and(|n| n.chars().count() > 4_000) {
        return Err(ApiError::bad_request("invalid_body", "a note has at most 4000 characters"));
    }
    let store = api.store.clone();
    let alert = blocking(move || {
        if let Some(name) = update.assignee.as_deref().filter(|a| !a.is_empty())
            && !store.accounts()?.iter().any(|a| a.username == name)
        {
            return Err(StoreError::NotFound(format!("account {name}")));
        }
        store.update_alert(&id, &update, &actor(&token))
    })
    .await?;
    Ok(Json(alert_json(&alert, None, None)))
}

pub(super) async fn rules(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let store = api.store.clone();
    Ok(Json(json!(blocking(move || store.rules()).await?)))
}

fn rule_id(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such rule"))
}

pub(super) async fn rule(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let (store, id) = (api.store.clone(), rule_id(&id)?);
    Ok(Json(json!(blocking(move || store.rule(id)).await?)))
}

pub(super) async fn create_rule(
    State(api): State<Api>,
    headers: HeaderMap,
    request: Body,
) -> Result<Json<Value>, ApiError> {
    let token = authenticate(&api, &headers)?;
    let draft: RuleDraft = body(request).await?;
    invalid(draft.problems())?;
    let store = api.store.clone();
    let rule = blocking(move || store.create_rule(&draft, &actor(&token))).await?;
    Ok(Json(json!(rule)))
}

pub(super) async fn replace_rule(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Body,
) -> Result<Json<Value>, ApiError> {
    let token = authenticate(&api, &headers)?;
    let id = rule_id(&id)?;
    let draft: RuleDraft = body(request).await?;
    invalid(draft.problems())?;
    let store = api.store.clone();
    let rule = blocking(move || store.update_rule(id, &draft, &actor(&token))).await?;
    api.alerting.rules_changed();
    Ok(Json(json!(rule)))
}

async fn set_enabled(api: Api, headers: HeaderMap, id: String, enabled: bool) -> Result<Json<Value>, ApiError> {
    let token = authenticate(&api, &headers)?;
    let (store, id) = (api.store.clone(), rule_id(&id)?);
    let rule = blocking(move || store.set_rule_enabled(id, enabled, &actor(&token))).await?;
    api.alerting.rules_changed();
    Ok(Json(json!(rule)))
}

pub(super) async fn enable(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_enabled(api, headers, id, true).await
}

pub(super) async fn disable(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_enabled(api, headers, id, false).await
}

pub(super) async fn delete_rule(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let token = authenticate(&api, &headers)?;
    let (store, id) = (api.store.clone(), rule_id(&id)?);
    blocking(move || store.delete_rule(id, &actor(&token))).await?;
    api.alerting.rules_changed();
    Ok(Json(json!({ "deleted": id })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Window {
    from_ms: i64,
    to_ms: i64,
}

pub(super) async fn backtest(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Body,
) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let id = rule_id(&id)?;
    let window: Window = body(request).await?;
    if window.from_ms >= window.to_ms {
        return Err(ApiError::bad_request("invalid_body", "from_ms must be before to_ms"));
    }
    let store = api.store.clone();
    let started = std::time::Instant::now();
    let result = blocking(move || {
        let rule = store.rule(id)?;
        crate::alerting::backtest(store.as_ref(), &rule, window.from_ms, window.to_ms)
    })
    .await?;
    Ok(Json(json!({ "result": result, "seconds": started.elapsed().as_secs_f64() })))
}

pub(super) async fn channels(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let store = api.store.clone();
    let (channels, health) = blocking(move || Ok((store.channels()?, store.channel_health()?))).await?;
    // Never the secrets: where each sends, and how its deliveries go.
    let list: Vec<Value> = channels
        .iter()
        .map(|c| {
            json!({
                "id": c.id, "name": c.name, "kind": c.target.kind(), "sends_to": c.target.summary(),
                "enabled": c.enabled, "deliveries": health.get(&c.id).cloned().unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(json!(list)))
}

pub(super) async fn risk(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let store = api.store.clone();
    Ok(Json(json!(blocking(move || store.risk_settings()).await?)))
}

/// Makes the stored settings and watch lists the ones every connector uses.
async fn reload(api: &Api) -> Result<(), ApiError> {
    let store = api.store.clone();
    let policy = blocking(move || crate::alerting::policy(store.as_ref())).await?;
    api.risk.replace(policy);
    Ok(())
}

pub(super) async fn set_risk(
    State(api): State<Api>,
    headers: HeaderMap,
    request: Body,
) -> Result<Json<Value>, ApiError> {
    let token = authenticate(&api, &headers)?;
    let settings: RiskSettings = body(request).await?;
    invalid(settings.problems())?;
    let (store, saved) = (api.store.clone(), settings.clone());
    blocking(move || store.set_risk_settings(&saved, &actor(&token))).await?;
    reload(&api).await?;
    Ok(Json(json!(settings)))
}

pub(super) async fn templates(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let store = api.store.clone();
    Ok(Json(json!(blocking(move || store.message_templates()).await?)))
}

pub(super) async fn set_templates(
    State(api): State<Api>,
    headers: HeaderMap,
    request: Body,
) -> Result<Json<Value>, ApiError> {
    let token = authenticate(&api, &headers)?;
    let templates: crate::alerts::template::Templates = body(request).await?;
    invalid(templates.problems())?;
    let (store, saved) = (api.store.clone(), templates.clone());
    blocking(move || store.set_message_templates(&saved, &actor(&token))).await?;
    api.alerting.set_templates(templates.clone());
    Ok(Json(json!(templates)))
}

pub(super) async fn watchlists(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authenticate(&api, &headers)?;
    let store = api.store.clone();
    Ok(Json(json!(blocking(move || store.watchlist()).await?)))
}

/// An entry as a client sends it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEntry {
    kind: WatchKind,
    username: String,
    departure: Option<chrono::NaiveDate>,
    note: Option<String>,
}

pub(super) async fn add_watch(
    State(api): State<Api>,
    headers: HeaderMap,
    request: Body,
) -> Result<Json<Value>, ApiError> {
    let token = authenticate(&api, &headers)?;
    let entries: Vec<NewEntry> = body(request).await?;
    let (now, who) = (chrono::Utc::now().timestamp_millis(), actor(&token));
    let mut problems = Vec::new();
    let entries: Vec<WatchEntry> = entries
        .into_iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let username = e.username.trim().to_lowercase();
            if let Some(problem) = crate::connector::scope_csv::username_problem(&username) {
                problems.push(format!("entry {}: {problem}", i + 1));
                return None;
            }
            Some(WatchEntry {
                kind: e.kind,
                username,
                departure: e.departure,
                note: e.note,
                added_at: now,
                added_by: who.clone(),
            })
        })
        .collect();
    invalid(problems)?;
    let store = api.store.clone();
    let added = blocking(move || store.add_watch_entries(&entries, &who)).await?;
    reload(&api).await?;
    Ok(Json(json!({ "added": added })))
}

pub(super) async fn remove_watch(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((kind, username)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let token = authenticate(&api, &headers)?;
    let kind: WatchKind = kind
        .parse()
        .map_err(|e: crate::named::UnknownName| ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()))?;
    let store = api.store.clone();
    blocking(move || store.remove_watch_entry(kind, &username, &actor(&token))).await?;
    reload(&api).await?;
    Ok(Json(json!({ "removed": true })))
}
