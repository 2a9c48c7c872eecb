//! Administration > Integrations > Data Connections: the table (a red row for a
//! connection in Error), live status by Server-Sent Events, the detail panel with the
//! cause of an Error and what to do, and the actions a person takes on a connection.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{TimeZone, Utc};
use maud::{Markup, html};
use tokio_stream::Stream;

use super::alerts::AlertPulse;
use super::auth::actor;
use super::page::{self, Broken, Frame, Nav};
use super::{Console, ConsoleError, Signed, db};
use crate::access::Role;
use crate::connection::{ConnectionRecord, ConnectionStatus, ProblemSeverity, ScopeMode};
use crate::store::ConnectionActivity;

/// Midnight UTC today, in epoch ms ("events today").
fn today_start(now: i64) -> i64 {
    let day = Utc.timestamp_millis_opt(now).single().map(|d| d.date_naive()).unwrap_or_default();
    day.and_hms_opt(0, 0, 0).map(|d| d.and_utc().timestamp_millis()).unwrap_or(now)
}

/// Every connection with today's activity.
async fn overview(console: &Console) -> Result<Vec<(ConnectionRecord, ConnectionActivity)>, ConsoleError> {
    let since = today_start(Utc::now().timestamp_millis());
    db(console, move |s| {
        s.connections()?
            .into_iter()
            .map(|c| {
                let activity = s.connection_activity(&c.id, since)?;
                Ok((c, activity))
            })
            .collect()
    })
    .await
}

fn salesforce_logo() -> Markup {
    html! {
        svg width="20" height="20" viewBox="0 0 20 20" aria-hidden="true" {
            rect width="20" height="20" rx="4" fill="#0b8fd8" {}
            path d="M5 13.5c-1.4 0-2.3-1-2.3-2.2S3.7 9 5 9c.3-1.6 1.6-2.6 3-2.6 1 0 1.8.4 2.3 1.1.5-.4 1.1-.7 1.8-.7 1.3 0 2.3.8 2.7 1.9 1.5 0 2.6 1.2 2.6 2.5 0 1.3-1.1 2.3-2.5 2.3z" fill="#fff" {}
        }
    }
}

fn connection_row(c: &ConnectionRecord, a: &ConnectionActivity, now: i64) -> Markup {
    html! {
        tr class=[(c.status == ConnectionStatus::Error).then_some("row-error")] data-connection=(c.id) {
            td { span.service { (salesforce_logo()) "Salesforce" } }
            td { "Business tools" }
            td { a href={ "/admin/connections/" (c.id) } { (c.display_name) } }
            td data-field="status" { (page::status_badge(c.status)) }
            td data-field="last-event" { (last_event(a.last_event_at, now)) }
            td.num data-field="events-today" { (page::thousands(a.events_since)) }
            td { a href={ "/admin/connections/" (c.id) } aria-label={ "View details of " (c.display_name) } { "View details" } }
        }
    }
}

fn last_event(at: Option<i64>, now: i64) -> Markup {
    match at {
        Some(at) => html! { (page::time(at)) " " span.muted { "(" (page::ago(at, now)) ")" } },
        None => html! { span.muted { "None yet" } },
    }
}

pub(crate) async fn list(State(console): State<Console>, signed: Signed) -> Result<Markup, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let connections = overview(&console).await?;
    let now = Utc::now().timestamp_millis();
    Ok(page::shell(
        &frame,
        Nav::Connections,
        "Data Connections",
        html! {
            div.page-head {
                div {
                    div.crumbs { "Administration › Integrations" }
                    h1 { "Data Connections" }
                    p { "The services Tripline monitors for downloads. Status changes here as it happens." }
                }
                a.button.primary href="/admin/connections/new" { "Add data connection" }
            }
            @if connections.is_empty() {
                div.empty {
                    strong { "No data connections yet." }
                    "Add your Salesforce org to start monitoring report downloads."
                    p { a.button.primary href="/admin/connections/new" { "Add data connection" } }
                }
            } @else {
                div.table-wrap {
                    table #connections {
                        thead { tr {
                            th { "Service" } th { "Service type" } th { "Display name" } th { "Status" }
                            th { "Last event received" } th.num { "Events today (UTC)" } th { span.visually-hidden { "Details" } }
                        } }
                        tbody {
                            @for (c, a) in &connections { (connection_row(c, a, now)) }
                        }
                    }
                }
            }
        },
    ))
}

/// What the live stream sends: the banner, and for admins each row's status and counts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct LiveState {
    broken: Vec<BrokenLive>,
    rows: Vec<LiveRow>,
    /// For those who see alerts.
    alerts: Option<AlertPulse>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct BrokenLive {
    id: String,
    name: String,
    message: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct LiveRow {
    id: String,
    status: ConnectionStatus,
    status_label: &'static str,
    last_event_at: Option<i64>,
    events_today: String,
}

async fn live_state(console: &Console, role: Role) -> Result<LiveState, ConsoleError> {
    let admin = role.includes(Role::Admin);
    let connections = overview(console).await?;
    let alerts = if role.includes(Role::Analyst) { Some(db(console, AlertPulse::read).await?) } else { None };
    let broken = connections
        .iter()
        .filter_map(|(c, _)| page::broken(c.clone()))
        .map(|Broken { id, name, message }| BrokenLive { id, name, message })
        .collect();
    let rows = if admin {
        connections
            .iter()
            .map(|(c, a)| LiveRow {
                id: c.id.clone(),
                status: c.status,
                status_label: page::status_label(c.status),
                last_event_at: a.last_event_at,
                events_today: page::thousands(a.events_since),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(LiveState { broken, rows, alerts })
}

/// Server-Sent Events: the state whenever it changes (checked every second).
pub(crate) async fn live(
    State(console): State<Console>,
    signed: Signed,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = live_events(console, signed.0.account.role);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn live_events(console: Console, role: Role) -> impl Stream<Item = Result<Event, Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut last: Option<LiveState> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            // The page was closed: stop reading for it (a send would fail only when
            // the state changes).
            if tx.is_closed() {
                return;
            }
            let state = match live_state(&console, role).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("live status: {e:?}");
                    continue;
                }
            };
            if last.as_ref() == Some(&state) {
                continue;
            }
            let Ok(event) = Event::default().event("status").json_data(&state) else { continue };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
            last = Some(state);
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

crate::named::named_enum! {
    /// What a person does to a connection from its detail panel.
    pub(crate) enum Action ("connection action") {
        Rescan = "rescan",
        Pause = "pause",
        Resume = "resume",
        Deauthorize = "deauthorize",
        Remove = "remove",
    }
}

impl Action {
    fn label(self) -> &'static str {
        match self {
            Action::Rescan => "Rescan now",
            Action::Pause => "Pause",
            Action::Resume => "Resume",
            Action::Deauthorize => "Deauthorize",
            Action::Remove => "Remove",
        }
    }

    /// What the confirmation says will happen.
    fn consequence(self) -> &'static str {
        match self {
            Action::Rescan => {
                "Tripline scans the org now for the users in scope who hold Export Reports. Downloads by users newly in scope since the previous scan are read again."
            }
            Action::Pause => {
                "Monitoring stops now: downloads made while paused are read when you resume, as far as Salesforce still retains them (Pub/Sub keeps 72 hours; the stored ReportEvent object longer)."
            }
            Action::Resume => "Monitoring starts again from where it stopped.",
            Action::Deauthorize => {
                "Tripline revokes its Salesforce token (ending its sessions) and stops monitoring. The stored downloads are kept. To monitor this org again, authorize it again."
            }
            Action::Remove => {
                "The connection disappears from Data Connections with its history, checkpoints and sessions. Its stored downloads stay searchable."
            }
        }
    }

    /// Can the action apply to a connection in this state?
    fn applies(self, status: ConnectionStatus) -> bool {
        match self {
            Action::Rescan | Action::Pause => !status.is_held(),
            Action::Resume => status == ConnectionStatus::Paused,
            Action::Deauthorize => status != ConnectionStatus::Deauthorized,
            Action::Remove => status == ConnectionStatus::Deauthorized,
        }
    }

    fn done(self) -> &'static str {
        match self {
            Action::Rescan => "rescanned",
            Action::Pause => "paused",
            Action::Resume => "resumed",
            Action::Deauthorize => "deauthorized",
            Action::Remove => "removed",
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DetailQuery {
    done: Option<String>,
    users: Option<usize>,
}

pub(crate) async fn detail(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Result<Markup, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let now = Utc::now().timestamp_millis();
    let since = today_start(now);
    let key = id.clone();
    let (c, history, scope, activity, gaps, kept_aside) = db(&console, move |s| {
        let c = s.connection(&key)?;
        Ok((
            c,
            s.status_history(&key)?,
            s.scope(&key)?,
            s.connection_activity(&key, since)?,
            s.gaps(&key)?,
            s.quarantine(&key, 0)?.0,
        ))
    })
    .await?;
    let running = console.fleet.context(&id).await.is_some();
    let added = history.first();
    let open_gaps = gaps.iter().filter(|g| !g.recovered).count();
    let problems = c.status_detail.as_ref().map(|d| d.problems.clone()).unwrap_or_default();
    Ok(page::shell(
        &frame,
        Nav::Connections,
        &c.display_name,
        html! {
            div.page-head {
                div {
                    div.crumbs { a href="/admin/connections" { "Data Connections" } " › Salesforce" }
                    h1 { (c.display_name) " " span data-connection-status=(c.id) { (page::status_badge(c.status)) } }
                    p {
                        "Since " @if let Some(d) = &c.status_detail { (page::time(d.since)) } @else { (page::time(c.created_at)) }
                    }
                }
                div.actions {
                    @for action in Action::ALL {
                        @if action.applies(c.status) {
                            a.button.danger[matches!(action, Action::Deauthorize | Action::Remove)]
                                href={ "/admin/connections/" (c.id) "/confirm/" (action.as_str()) } { (action.label()) }
                        }
                    }
                    @if c.status != ConnectionStatus::Deauthorized {
                        a.button href={ "/admin/connections/" (c.id) "/scope" } { "Edit scope" }
                    }
                    a.button href={ "/admin/connections/" (c.id) "/reauthorize" } { "Authorize again" }
                }
            }
            @if let Some(done) = &query.done {
                div.notice.ok role="status" {
                    "“" (c.display_name) "” was " (done) "."
                    @if let Some(n) = query.users { " " (page::thousands(n as u64)) " users are monitored." }
                }
            }
            @if !problems.is_empty() {
                section aria-labelledby="problems" {
                    h2 #problems { @if c.status == ConnectionStatus::Error { "What is wrong" } @else { "Warnings" } }
                    @for p in &problems {
                        div.problem.warning[p.severity == ProblemSeverity::Warning] {
                            span.source { "Source: " (page::source_label(p.source)) }
                            (p.message)
                        }
                    }
                }
            }
            div.grid {
                div {
                    section.panel {
                        h2 { "Connection" }
                        dl.facts {
                            dt { "Service" } dd { "Salesforce (Business tools)" }
                            dt { "Salesforce org ID" } dd.mono { (c.org_id.as_str()) }
                            dt { "My Domain / login URL" } dd { (c.login_url) }
                            dt { "Instance URL" } dd { (c.instance_url) }
                            dt { "Service user ID" } dd.mono { (c.service_user_id.as_str()) }
                            dt { "Added" } dd {
                                (page::time(c.created_at))
                                @if let Some(a) = added { " by " (a.actor) }
                            }
                            dt { "Events today (UTC)" } dd { (page::thousands(activity.events_since)) }
                            dt { "Last event received" } dd { (last_event(activity.last_event_at, now)) }
                            dt { "Gaps recorded" } dd {
                                (gaps.len())
                                @if open_gaps > 0 { " (" (open_gaps) " not recovered)" }
                            }
                            dt { "Events kept aside" } dd { (kept_aside) @if kept_aside > 0 { " (could not be read; see " code { "tripline connections" } ")" } }
                            dt { "Connector" } dd { @if running { "Running on this server" } @else { "Not running" } }
                        }
                    }
                    section.panel {
                        h2 { "Status history" }
                        div.table-wrap {
                            table {
                                thead { tr { th { "When" } th { "Status" } th { "By" } th { "Cause" } } }
                                tbody {
                                    @for h in history.iter().rev().take(200) {
                                        tr {
                                            td { (page::time(h.at)) }
                                            td { (page::status_badge(h.status)) }
                                            td { (h.actor) }
                                            td.truncate {
                                                @if let Some(p) = h.detail.as_ref().and_then(|d| d.problems.first()) {
                                                    span title=(p.message) { (page::source_label(p.source)) ": " (p.message) }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                div {
                    section.panel {
                        h2 { "Scope" }
                        dl.facts {
                            dt { "Users monitored" } dd { (scope_label(&c.scope)) }
                            dt { "Monitored now" } dd {
                                (page::count(scope.len() as u64, "user")) " with Export Reports"
                            }
                            dt { "Last scan" } dd { @if let Some(at) = c.scope_scanned_at { (page::time(at)) } @else { "Not yet" } }
                        }
                        @if !c.scope.entries().is_empty() {
                            h3 { "Uploaded list" }
                            ul.mono {
                                @for e in c.scope.entries().iter().take(50) { li { (e) } }
                            }
                            @if c.scope.entries().len() > 50 { p.muted { "and " (c.scope.entries().len() - 50) " more" } }
                        }
                        p { a.button href={ "/admin/connections/" (c.id) "/scope.csv" } download { "Export users as CSV" } }
                    }
                }
            }
        },
    ))
}

fn scope_label(scope: &ScopeMode) -> String {
    match scope {
        ScopeMode::All => "All users with Export Reports".into(),
        ScopeMode::Users(e) => format!("Specific users ({} listed)", e.len()),
        ScopeMode::Groups(e) => format!("Specific groups ({} listed)", e.len()),
    }
}

/// The monitored users as CSV (formulas neutralised: names come from Salesforce).
pub(crate) async fn scope_csv(
    State(console): State<Console>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    use crate::search::output::csv_field;
    let key = id.clone();
    let users = db(&console, move |s| {
        s.connection(&key)?;
        s.scope(&key)
    })
    .await?;
    let mut out = String::from("username,email,name,user_id\r\n");
    for u in &users {
        let line = [
            csv_field(&u.username),
            csv_field(u.email.as_deref().unwrap_or_default()),
            csv_field(u.name.as_deref().unwrap_or_default()),
            csv_field(u.user_id.as_str()),
        ];
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    let mut response = out.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    let disposition = format!("attachment; filename=\"monitored-users-{id}.csv\"");
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

fn parse_action(text: &str) -> Result<Action, ConsoleError> {
    text.parse().map_err(|_| ConsoleError::NotFound(format!("action {text:?}")))
}

/// The confirmation of an action, naming the connection.
pub(crate) async fn confirm(
    State(console): State<Console>,
    signed: Signed,
    Path((id, action)): Path<(String, String)>,
) -> Result<Markup, ConsoleError> {
    let action = parse_action(&action)?;
    let frame = Frame::load(&console, &signed).await?;
    let key = id.clone();
    let c = db(&console, move |s| s.connection(&key)).await?;
    let back = format!("/admin/connections/{}", c.id);
    Ok(page::shell(
        &frame,
        Nav::Connections,
        action.label(),
        html! {
            div.crumbs { a href="/admin/connections" { "Data Connections" } " › " a href=(back) { (c.display_name) } }
            section.panel {
                h1 { (action.label()) " “" (c.display_name) "”?" }
                p { (action.consequence()) }
                @if !action.applies(c.status) {
                    div.notice.bad { "This cannot be done while the connection is " (page::status_label(c.status)) "." }
                }
                div.actions {
                    form method="post" action={ "/admin/connections/" (c.id) "/" (action.as_str()) } {
                        (frame.csrf_field())
                        button.primary.danger[matches!(action, Action::Deauthorize | Action::Remove)] type="submit" disabled[!action.applies(c.status)] {
                            (action.label()) " “" (c.display_name) "”"
                        }
                    }
                    a.button href=(back) { "Cancel" }
                }
            }
        },
    ))
}

/// Carries out an action at once in the running server, audited.
pub(crate) async fn act(
    State(console): State<Console>,
    signed: Signed,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let action = parse_action(&action)?;
    let who = actor(&signed.0.account);
    let key = id.clone();
    let record = db(&console, move |s| s.connection(&key)).await?;
    if !action.applies(record.status) {
        return Err(ConsoleError::BadRequest(format!(
            "“{}” is {}: it cannot be {} now.",
            record.display_name,
            page::status_label(record.status),
            action.done()
        )));
    }
    let refused = |e: crate::connector::Error| match e {
        crate::connector::Error::Store(e) => ConsoleError::from(e),
        other => ConsoleError::BadRequest(other.problem().message),
    };
    let mut users = None;
    match action {
        Action::Rescan => {
            let context = console.fleet.context(&id).await.ok_or_else(|| {
                ConsoleError::BadRequest(format!("“{}” is not running on this server.", record.display_name))
            })?;
            let (key, who) = (id.clone(), who.clone());
            db(&console, move |s| s.audit(&who, "connection.rescan", &key)).await?;
            users = Some(crate::connector::rescan(&context).await.map_err(refused)?);
        }
        Action::Pause => {
            console.fleet.stop(&id).await;
            let (key, who) = (id.clone(), who.clone());
            db(&console, move |s| crate::connector::lifecycle::pause(s, &key, &who).map_err(store_or_refused)).await?;
        }
        Action::Resume => {
            let (key, who) = (id.clone(), who.clone());
            let record = db(&console, move |s| {
                crate::connector::lifecycle::resume(s, &key, &who).map_err(store_or_refused)?;
                s.connection(&key)
            })
            .await?;
            // A connection that cannot start shows Error with the cause on its panel.
            let _ = console.fleet.start(&record).await;
        }
        Action::Deauthorize => {
            console.fleet.stop(&id).await;
            let allowed = console.fleet.app().allowed_origins.clone();
            crate::connector::lifecycle::deauthorize(&*console.store, &id, &allowed, &who).await.map_err(refused)?;
        }
        Action::Remove => {
            console.fleet.stop(&id).await;
            let key = id.clone();
            db(&console, move |s| crate::connector::lifecycle::remove(s, &key, &who).map_err(store_or_refused)).await?;
            return Ok(Redirect::to("/admin/connections").into_response());
        }
    }
    let mut to = format!("/admin/connections/{id}?done={}", action.done());
    if let Some(n) = users {
        to.push_str(&format!("&users={n}"));
    }
    Ok(Redirect::to(&to).into_response())
}

/// A lifecycle refusal inside store work: the store's own failures stay themselves.
fn store_or_refused(e: crate::connector::Error) -> crate::store::StoreError {
    match e {
        crate::connector::Error::Store(e) => e,
        other => crate::store::StoreError::Conflict(other.problem().message),
    }
}

fn scope_page(frame: &Frame, c: &ConnectionRecord, chosen: &str, errors: &[String]) -> Markup {
    let body = html! {
        div.crumbs { a href="/admin/connections" { "Data Connections" } " › " a href={ "/admin/connections/" (c.id) } { (c.display_name) } " › Scope" }
        h1 { "Users to monitor in “" (c.display_name) "”" }
        p { "Now: " (scope_label(&c.scope)) ". The new scope is checked against the org before it is saved, and applies at once." }
        @if !errors.is_empty() {
            div.errors role="alert" #errors {
                "Nothing changed:"
                ul { @for m in errors { li { (m) } } }
            }
        }
        form.stack method="post" action={ "/admin/connections/" (c.id) "/scope" } enctype="multipart/form-data" {
            (frame.csrf_field())
            fieldset {
                legend { "Which users to monitor" }
                p.hint { "In every case only users who hold the Export Reports permission are monitored." }
                @for (value, label) in [("all", "All users"), ("users", "Specific users (CSV of usernames or emails)"), ("groups", "Specific groups (CSV of public groups)")] {
                    div.choice {
                        input id={ "scope-" (value) } type="radio" name="scope" value=(value) checked[chosen == value];
                        label for={ "scope-" (value) } { (label) }
                    }
                }
            }
            div {
                label for="file" { "Upload .CSV file" }
                input #file type="file" name="file" accept=".csv,text/csv";
                div.hint { "Needed for specific users or groups; it replaces the current list." }
            }
            div.actions {
                button.primary type="submit" { "Save scope" }
                a.button href={ "/admin/connections/" (c.id) } { "Cancel" }
            }
        }
    };
    page::shell(frame, Nav::Connections, "Edit scope", body)
}

pub(crate) async fn scope_form(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Markup, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let c = db(&console, move |s| s.connection(&id)).await?;
    Ok(scope_page(&frame, &c, c.scope.name(), &[]))
}

pub(crate) async fn scope_save(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    form: axum::extract::Multipart,
) -> Result<Response, ConsoleError> {
    use crate::connector::scope_csv::{CsvKind, ScopeCsv};
    let frame = Frame::load(&console, &signed).await?;
    let key = id.clone();
    let c = db(&console, move |s| s.connection(&key)).await?;
    let form = super::wizard::read_form(form, &["scope"]).await?;
    let chosen = form.fields.get("scope").cloned().unwrap_or_default();
    let file = form.file;
    let invalid = |errors: Vec<String>| {
        (axum::http::StatusCode::BAD_REQUEST, scope_page(&frame, &c, &chosen, &errors)).into_response()
    };
    let kind = match chosen.as_str() {
        "all" => None,
        "users" => Some(CsvKind::Users),
        "groups" => Some(CsvKind::Groups),
        _ => return Ok(invalid(vec!["Choose who to monitor.".into()])),
    };
    let (scope, lines, file_name) = match (kind, &file) {
        (None, _) => (ScopeMode::All, None, String::new()),
        (Some(_), None) => return Ok(invalid(vec!["Upload a CSV file with the list.".into()])),
        (Some(kind), Some((name, bytes))) => match ScopeCsv::parse(bytes, kind) {
            Ok(csv) => {
                let new = crate::connector::NewConnection::from_csv(&c.display_name, &csv, Vec::new());
                (new.scope, new.scope_lines, name.clone())
            }
            Err(e) => return Ok(invalid(e.messages(name))),
        },
    };
    let who = actor(&signed.0.account);
    let app = console.fleet.app().clone();
    match crate::connector::lifecycle::change_scope(&console.store, &app, &id, &scope, lines, &who).await {
        Ok(()) => {}
        Err(crate::connector::Error::Scope(e)) => {
            return Ok(invalid(e.messages(&file_name)));
        }
        Err(crate::connector::Error::Store(e)) => return Err(e.into()),
        Err(e) => return Ok(invalid(vec![e.problem().message])),
    }
    // Restarted, so the new scope is scanned now.
    if console.fleet.context(&id).await.is_some() {
        super::restart(&console, &id).await?;
    }
    Ok(Redirect::to(&format!("/admin/connections/{id}?done=given+a+new+scope")).into_response())
}
