//! Rules: the list (enable, disable), the recommended rules, the form to make or
//! change one with its back-test, and the risks no enabled rule covers.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};

use super::auth::actor;
use super::page::{self, AlertsTab, Frame, Nav};
use super::search::severity_badge;
use super::{Console, ConsoleError, FormData, Signed, db};
use crate::alerts::engine::BacktestResult;
use crate::alerts::recommended::recommended;
use crate::alerts::{Channel, Conditions, ExportOperation, Rule, RuleDraft, Threshold};
use crate::connection::ConnectionRecord;
use crate::events::{Destination, FileEvent};
use crate::risk::{RiskIndicator, Severity, WatchKind};

const DAY: i64 = 86_400_000;

fn bad(e: impl std::fmt::Display) -> ConsoleError {
    ConsoleError::BadRequest(e.to_string())
}

pub(crate) async fn list(State(console): State<Console>, signed: Signed) -> Result<Markup, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let (rules, channels) = db(&console, |s| Ok((s.rules()?, s.channels()?))).await?;
    let missing: Vec<(usize, RuleDraft)> = recommended()
        .into_iter()
        .enumerate()
        .filter(|(_, d)| !rules.iter().any(|r| r.name.eq_ignore_ascii_case(&d.name)))
        .collect();
    let channel_names = |ids: &[i64]| -> String {
        let names: Vec<&str> =
            ids.iter().filter_map(|id| channels.iter().find(|c| c.id == *id)).map(|c| c.name.as_str()).collect();
        if names.is_empty() { "—".into() } else { names.join(", ") }
    };
    Ok(page::shell(
        &frame,
        Nav::Alerts,
        "Rules",
        html! {
            div.page-head {
                div {
                    h1 { "Alert rules" }
                    p { "Each enabled rule looks at every download as it is stored and raises an alert within a second. Back-test a rule on stored downloads before enabling it." }
                }
                @if frame.is_admin() { a.button.primary href="/rules/new" { "New rule" } }
            }
            (page::alerts_tabs(&frame, AlertsTab::Rules))
            @if rules.is_empty() {
                div.empty { strong { "No rules yet." } "Start from a recommended rule below, or write your own." }
            } @else {
                div.table-wrap {
                    table #rules {
                        thead { tr { th { "Status" } th { "Rule" } th { "Severity" } th { "Conditions" } th { "Notifies" } th { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for r in &rules {
                                tr data-rule=(r.name) {
                                    td { @if r.enabled { span.switch-on { "● Enabled" } } @else { span.switch-off { "○ Disabled" } } }
                                    td {
                                        @if frame.is_admin() { a href={ "/rules/" (r.id) } { (r.name) } } @else { (r.name) }
                                        @if !r.description.is_empty() { div.muted.truncate title=(r.description) { (r.description) } }
                                    }
                                    td { (severity_badge(r.severity)) }
                                    td { (r.conditions.describe().join(" · ")) }
                                    td { (channel_names(&r.channels)) }
                                    td {
                                        div.actions {
                                            a href={ "/alerts?state=all&rule=" (r.id) } { "Alerts" }
                                            @if frame.is_admin() {
                                                form method="post" action={ "/rules/" (r.id) (if r.enabled { "/disable" } else { "/enable" }) } {
                                                    (frame.csrf_field())
                                                    button type="submit" { (if r.enabled { "Disable" } else { "Enable" }) }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if frame.is_admin() && !missing.is_empty() {
                section.panel #recommended {
                    h2 { "Recommended rules" }
                    p.muted { "Ready to use: review one, back-test it, and save it; then enable it." }
                    div.table-wrap {
                        table {
                            thead { tr { th { "Rule" } th { "Severity" } th { "Conditions" } th { span.visually-hidden { "Add" } } } }
                            tbody {
                                @for (i, d) in &missing {
                                    tr {
                                        td { strong { (d.name) } div.muted { (d.description) } }
                                        td { (severity_badge(d.severity)) }
                                        td { (d.conditions.describe().join(" · ")) }
                                        td { a.button href={ "/rules/new?recommended=" (i) } { "Review" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewQuery {
    recommended: Option<usize>,
    from_event: Option<String>,
}

/// A rule made from a risky download no rule covered: its indicators and severity.
fn draft_from(e: &FileEvent) -> RuleDraft {
    let labels: Vec<&str> = e.indicators.iter().map(|i| i.label()).collect();
    RuleDraft {
        name: format!("{} downloads: {}", e.severity.label(), labels.join(", ")),
        description: format!(
            "Made from the download of {:?} by {}.",
            e.report_name.as_deref().unwrap_or("a report"),
            e.username.as_deref().unwrap_or(e.user_id.as_str())
        ),
        severity: e.severity.max(Severity::Low),
        conditions: Conditions {
            min_severity: Some(e.severity),
            indicators: e.indicators.clone(),
            ..Conditions::default()
        },
        channels: Vec::new(),
        suppress_minutes: 60,
    }
}

pub(crate) async fn new_page(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<NewQuery>,
) -> Result<Response, ConsoleError> {
    let draft = match (query.recommended, query.from_event) {
        (Some(i), _) => {
            recommended().into_iter().nth(i).ok_or_else(|| ConsoleError::NotFound("recommended rule".into()))?
        }
        (None, Some(id)) => {
            let event = db(&console, move |s| s.file_event(&id)).await?;
            draft_from(&event.ok_or_else(|| ConsoleError::NotFound("that download".into()))?)
        }
        (None, None) => RuleDraft {
            name: String::new(),
            description: String::new(),
            severity: Severity::High,
            conditions: Conditions::default(),
            channels: Vec::new(),
            suppress_minutes: 60,
        },
    };
    render(&console, &signed, None, &draft, &[], None, StatusCode::OK).await
}

pub(crate) async fn edit_page(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    let rule = db(&console, move |s| s.rule(id)).await?;
    let draft = RuleDraft {
        name: rule.name.clone(),
        description: rule.description.clone(),
        severity: rule.severity,
        conditions: rule.conditions.clone(),
        channels: rule.channels.clone(),
        suppress_minutes: rule.suppress_minutes,
    };
    render(&console, &signed, Some(&rule), &draft, &[], None, StatusCode::OK).await
}

/// The form's fields.
const FIELDS: &[&str] = &[
    "name",
    "description",
    "severity",
    "suppress_minutes",
    "min_severity",
    "indicators",
    "min_rows",
    "report_name",
    "queried_objects",
    "export_formats",
    "operations",
    "destination",
    "watch_lists",
    "include_users",
    "exclude_users",
    "connections",
    "window_minutes",
    "window_exports",
    "window_rows",
    "channels",
    "action",
    "range",
];

/// Text split on commas and new lines, blanks left out.
fn items(text: &str) -> Vec<String> {
    text.split([',', '\n']).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

/// The values of a repeated field, each a word of a closed list.
fn names<T>(form: &FormData, field: &'static str, errors: &mut Vec<(&'static str, String)>) -> Vec<T>
where
    T: std::str::FromStr<Err = crate::named::UnknownName>,
{
    form.all(field)
        .into_iter()
        .filter_map(|v| v.parse().map_err(|e: crate::named::UnknownName| errors.push((field, e.to_string()))).ok())
        .collect()
}

/// The draft the form describes, and what is wrong with it (by field).
fn read(form: &FormData) -> (RuleDraft, Vec<(&'static str, String)>) {
    let mut errors: Vec<(&'static str, String)> = Vec::new();
    let mut number = |field: &'static str, label: &str| -> Option<i64> {
        let text = form.text(field);
        let text = text.trim().replace(',', "");
        if text.is_empty() {
            return None;
        }
        match text.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                errors.push((field, format!("{label}: enter a whole number (0 or more).")));
                None
            }
        }
    };
    let min_rows = number("min_rows", "Rows");
    let window_minutes = number("window_minutes", "Window");
    let window_exports = number("window_exports", "Downloads");
    let window_rows = number("window_rows", "Rows within the window");
    let suppress = number("suppress_minutes", "Suppression").unwrap_or(0);
    let indicators: Vec<RiskIndicator> = names(form, "indicators", &mut errors);
    let operations: Vec<ExportOperation> = names(form, "operations", &mut errors);
    let watch_lists: Vec<WatchKind> = names(form, "watch_lists", &mut errors);
    let connections: Vec<String> = form.all("connections").into_iter().map(str::to_owned).collect();
    let channels: Vec<i64> = form
        .all("channels")
        .into_iter()
        .filter_map(|v| v.parse().map_err(|_| errors.push(("channels", "unknown channel".into()))).ok())
        .collect();
    let severity = form.text("severity").parse().unwrap_or_else(|e| {
        errors.push(("severity", format!("{e}")));
        Severity::High
    });
    let min_severity = match form.text("min_severity").as_str() {
        "" => None,
        text => text.parse().map_err(|e| errors.push(("min_severity", format!("{e}")))).ok(),
    };
    let destination = match form.text("destination").as_str() {
        "" => None,
        text => text.parse::<Destination>().map_err(|e| errors.push(("destination", format!("{e}")))).ok(),
    };
    let threshold =
        (window_minutes.is_some() || window_exports.is_some() || window_rows.is_some()).then(|| Threshold {
            window_minutes: window_minutes.unwrap_or(0).min(u32::MAX as i64) as u32,
            exports: window_exports.map(|n| n.min(u32::MAX as i64) as u32),
            rows: window_rows,
        });
    let report_name = Some(form.text("report_name").trim().to_owned()).filter(|p| !p.is_empty());
    let draft = RuleDraft {
        name: form.text("name").trim().to_owned(),
        description: form.text("description").trim().to_owned(),
        severity,
        conditions: Conditions {
            min_severity,
            indicators,
            min_rows,
            report_name,
            queried_objects: items(&form.text("queried_objects")),
            export_formats: items(&form.text("export_formats")),
            operations,
            destination,
            watch_lists,
            include_users: items(&form.text("include_users")).into_iter().map(|u| u.to_lowercase()).collect(),
            exclude_users: items(&form.text("exclude_users")).into_iter().map(|u| u.to_lowercase()).collect(),
            connections,
            threshold,
        },
        channels,
        suppress_minutes: suppress.min(u32::MAX as i64) as u32,
    };
    for problem in draft.problems() {
        errors.push(("form", page::sentence(&problem)));
    }
    (draft, errors)
}

/// How far back a back-test looks.
const RANGES: &[(&str, &str, i64)] =
    &[("1d", "Last 24 hours", 1), ("7d", "Last 7 days", 7), ("30d", "Last 30 days", 30), ("90d", "Last 90 days", 90)];

async fn submit(
    console: Console,
    signed: Signed,
    id: Option<i64>,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, FIELDS)?;
    let (draft, errors) = read(&form);
    let rule = match id {
        Some(id) => Some(db(&console, move |s| s.rule(id)).await?),
        None => None,
    };
    if form.get("action") == Some("backtest") {
        let (_, _, days) = RANGES.iter().find(|(k, _, _)| Some(*k) == form.get("range")).copied().unwrap_or(RANGES[1]);
        if !errors.is_empty() {
            return render(&console, &signed, rule.as_ref(), &draft, &errors, None, StatusCode::BAD_REQUEST).await;
        }
        let now = Utc::now().timestamp_millis();
        let probe = Rule {
            id: rule.as_ref().map_or(0, |r| r.id),
            name: draft.name.clone(),
            description: draft.description.clone(),
            severity: draft.severity,
            enabled: true,
            conditions: draft.conditions.clone(),
            channels: Vec::new(),
            suppress_minutes: draft.suppress_minutes,
            active_from_seq: 0,
            updated_at: now,
            updated_by: String::new(),
        };
        let started = std::time::Instant::now();
        let result = db(&console, move |s| crate::alerting::backtest(s, &probe, now - days * DAY, now + 1)).await?;
        let tested = Tested { result, days, seconds: started.elapsed().as_secs_f64() };
        return render(&console, &signed, rule.as_ref(), &draft, &[], Some(&tested), StatusCode::OK).await;
    }
    if !errors.is_empty() {
        return render(&console, &signed, rule.as_ref(), &draft, &errors, None, StatusCode::BAD_REQUEST).await;
    }
    let who = actor(&signed.0.account);
    let saved = db(&console, move |s| match id {
        Some(id) => s.update_rule(id, &draft, &who),
        None => s.create_rule(&draft, &who),
    })
    .await;
    match saved {
        Ok(_) => {
            console.alerting.rules_changed();
            Ok(Redirect::to("/rules").into_response())
        }
        Err(ConsoleError::BadRequest(message)) => {
            let (draft, _) = read(&form);
            let errors = vec![("name", page::sentence(&message))];
            render(&console, &signed, rule.as_ref(), &draft, &errors, None, StatusCode::BAD_REQUEST).await
        }
        Err(other) => Err(other),
    }
}

pub(crate) async fn create(
    State(console): State<Console>,
    signed: Signed,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    submit(console, signed, None, body).await
}

pub(crate) async fn save(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<i64>,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    submit(console, signed, Some(id), body).await
}

async fn set_enabled(console: &Console, signed: &Signed, id: i64, enabled: bool) -> Result<Response, ConsoleError> {
    let who = actor(&signed.0.account);
    db(console, move |s| s.set_rule_enabled(id, enabled, &who)).await?;
    console.alerting.rules_changed();
    Ok(Redirect::to("/rules").into_response())
}

pub(crate) async fn enable(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    set_enabled(&console, &signed, id, true).await
}

pub(crate) async fn disable(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    set_enabled(&console, &signed, id, false).await
}

pub(crate) async fn delete(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<i64>,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["confirm"])?;
    let rule = db(&console, move |s| s.rule(id)).await?;
    if form.get("confirm") != Some(rule.name.as_str()) {
        return Err(bad(format!("Tick the box naming “{}” to delete it.", rule.name)));
    }
    let who = actor(&signed.0.account);
    db(&console, move |s| s.delete_rule(id, &who)).await?;
    console.alerting.rules_changed();
    Ok(Redirect::to("/rules").into_response())
}

/// A back-test's outcome, as the form shows it.
struct Tested {
    result: BacktestResult,
    days: i64,
    seconds: f64,
}

fn field_error(errors: &[(&'static str, String)], field: &str) -> Markup {
    html! {
        @for (_, m) in errors.iter().filter(|(f, _)| *f == field) {
            div.field-error { (m) }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn render(
    console: &Console,
    signed: &Signed,
    rule: Option<&Rule>,
    draft: &RuleDraft,
    errors: &[(&'static str, String)],
    tested: Option<&Tested>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let frame = Frame::load(console, signed).await?;
    let (channels, connections): (Vec<Channel>, Vec<ConnectionRecord>) =
        db(console, |s| Ok((s.channels()?, s.connections()?))).await?;
    let c = &draft.conditions;
    let action = rule.map_or("/rules/new".to_owned(), |r| format!("/rules/{}", r.id));
    let title = rule.map_or("New rule".to_owned(), |r| r.name.clone());
    let threshold = c.threshold.clone();
    let body = html! {
        div.crumbs { a href="/rules" { "Rules" } " › " (title) }
        div.page-head {
            div {
                h1 { (title) }
                p {
                    @if let Some(r) = rule {
                        "Last changed " (page::time(r.updated_at)) " by " (r.updated_by) ". "
                        @if r.enabled { span.switch-on { "● Enabled" } " — changes apply to downloads stored from now on." }
                        @else { span.switch-off { "○ Disabled" } " — enable it from the rules list once the back-test looks right." }
                    } @else {
                        "A rule is saved disabled: back-test it, then enable it."
                    }
                }
            }
        }
        @if !errors.is_empty() {
            div.errors role="alert" #errors {
                "The rule was not saved:"
                ul { @for (_, m) in errors { li { (m) } } }
            }
        }
        @if let Some(t) = tested {
            div.result #backtest role="status" {
                strong { "Back-test, " (RANGES.iter().find(|r| r.2 == t.days).map_or("", |r| r.1).to_lowercase()) ": " }
                (page::count(t.result.alerts, "alert")) " from " (page::count(t.result.matched, "matching download")) " of "
                (page::thousands(t.result.events)) " stored (" (format!("{:.1}", t.seconds)) " s)."
                @if t.result.grown > 0 { " " (page::thousands(t.result.grown)) " more would have joined open alerts." }
                @if !t.result.sample.is_empty() {
                    div.table-wrap {
                        table #backtest-alerts {
                            thead { tr { th { "User" } th.num { "Downloads" } th.num { "Rows" } th { "First download" } } }
                            tbody {
                                @for a in &t.result.sample {
                                    tr {
                                        td { a href={ "/users/" (a.user_id) } { (a.username.as_deref().unwrap_or(&a.user_id)) } }
                                        td.num { (a.events.len()) }
                                        td.num { (page::thousands(a.events.iter().map(|e| e.rows.max(0) as u64).sum())) }
                                        td { (page::time(a.events.first().map_or(0, |e| e.at))) }
                                    }
                                }
                            }
                        }
                    }
                    @if t.result.alerts as usize > t.result.sample.len() { p.hint { "The first " (t.result.sample.len()) " are listed." } }
                }
            }
        }
        form.stack #rule-form method="post" action=(action) {
            (frame.csrf_field())
            fieldset.group {
                legend { "Rule" }
                div.fields {
                    div {
                        label for="name" { "Name" }
                        input #name type="text" name="name" value=(draft.name) maxlength="120" required;
                        (field_error(errors, "name"))
                    }
                    div {
                        label for="severity" { "Alert severity" }
                        select #severity name="severity" {
                            @for s in Severity::ALL.iter().filter(|s| **s != Severity::NoRisk) {
                                option value=(s.as_str()) selected[*s == draft.severity] { (s.label()) }
                            }
                        }
                    }
                    div {
                        label for="suppress_minutes" { "Suppression (minutes)" }
                        input #suppress_minutes type="number" min="0" max="10080" name="suppress_minutes" value=(draft.suppress_minutes);
                        div.hint { "Matches of one person within this long join the open alert." }
                    }
                }
                div {
                    label for="description" { "Description" }
                    textarea #description name="description" rows="2" maxlength="2000" { (draft.description) }
                }
            }
            fieldset.group {
                legend { "Which downloads match (all that are set)" }
                div.fields {
                    div {
                        label for="min_severity" { "Risk severity at least" }
                        select #min_severity name="min_severity" {
                            option value="" selected[c.min_severity.is_none()] { "Any" }
                            @for s in Severity::ALL.iter().filter(|s| **s != Severity::NoRisk) {
                                option value=(s.as_str()) selected[c.min_severity == Some(*s)] { (s.label()) }
                            }
                        }
                    }
                    div {
                        label for="min_rows" { "Rows at least" }
                        input #min_rows type="number" min="0" name="min_rows" value=[c.min_rows];
                    }
                    div {
                        label for="destination" { "Destination" }
                        select #destination name="destination" {
                            option value="" selected[c.destination.is_none()] { "Any" }
                            option value="unmonitored" selected[c.destination == Some(Destination::Unmonitored)] { "Unmonitored device" }
                            option value="corporate" selected[c.destination == Some(Destination::Corporate)] { "Corporate" }
                        }
                    }
                    div {
                        label for="report_name" { "Report name" }
                        input #report_name type="text" name="report_name" value=[c.report_name.as_deref()] placeholder="*pipeline*";
                        div.hint { "* stands for any text; any case." }
                    }
                    div {
                        label for="queried_objects" { "Queried objects (any of)" }
                        input #queried_objects type="text" name="queried_objects" value=(c.queried_objects.join(", ")) placeholder="Contact, Lead";
                    }
                    div {
                        label for="export_formats" { "Export formats (any of)" }
                        input #export_formats type="text" name="export_formats" value=(c.export_formats.join(", ")) placeholder="CSV, Excel";
                    }
                }
                h3 { "Risk indicators (any of)" }
                div.checks {
                    @for i in RiskIndicator::ALL {
                        label.check { input type="checkbox" name="indicators" value=(i.as_str()) checked[c.indicators.contains(i)]; (i.label()) }
                    }
                }
                h3 { "Watch lists (any of)" }
                div.checks {
                    @for w in WatchKind::ALL {
                        label.check { input type="checkbox" name="watch_lists" value=(w.as_str()) checked[c.watch_lists.contains(w)]; (w.label()) }
                    }
                }
                h3 { "Operation (any of)" }
                div.checks {
                    @for o in ExportOperation::ALL {
                        label.check { input type="checkbox" name="operations" value=(o.as_str()) checked[c.operations.contains(o)]; code { (o.as_str()) } }
                    }
                }
                div.fields {
                    div {
                        label for="include_users" { "Only these users" }
                        textarea #include_users name="include_users" rows="2" placeholder="one username per line" { (c.include_users.join("\n")) }
                    }
                    div {
                        label for="exclude_users" { "Never these users" }
                        textarea #exclude_users name="exclude_users" rows="2" placeholder="one username per line" { (c.exclude_users.join("\n")) }
                    }
                }
                @if connections.len() > 1 {
                    h3 { "Data connections (all when none is ticked)" }
                    div.checks {
                        @for conn in &connections {
                            label.check { input type="checkbox" name="connections" value=(conn.id) checked[c.connections.contains(&conn.id)]; (conn.display_name) }
                        }
                    }
                }
            }
            fieldset.group {
                legend { "Count per person over a window (optional)" }
                div.fields {
                    div {
                        label for="window_minutes" { "Window (minutes)" }
                        input #window_minutes type="number" min="1" max="10080" name="window_minutes" value=[threshold.as_ref().map(|t| t.window_minutes)];
                    }
                    div {
                        label for="window_exports" { "More than … downloads" }
                        input #window_exports type="number" min="0" name="window_exports" value=[threshold.as_ref().and_then(|t| t.exports)];
                    }
                    div {
                        label for="window_rows" { "Or at least … rows" }
                        input #window_rows type="number" min="1" name="window_rows" value=[threshold.as_ref().and_then(|t| t.rows)];
                    }
                }
                div.hint { "Leave empty to alert on each matching download." }
            }
            fieldset.group {
                legend { "Notify" }
                @if channels.is_empty() {
                    p.muted { "No notification channels yet. " a href="/channels" { "Add one" } " (email, webhook or syslog)." }
                } @else {
                    div.checks {
                        @for ch in &channels {
                            label.check { input type="checkbox" name="channels" value=(ch.id) checked[draft.channels.contains(&ch.id)]; (ch.name) span.muted { " (" (ch.target.kind()) ")" } }
                        }
                    }
                }
            }
            div.actions {
                button.primary type="submit" name="action" value="save" { "Save rule" }
                label.visually-hidden for="range" { "Back-test range" }
                select.auto #range name="range" {
                    @for (key, label, days) in RANGES {
                        option value=(key) selected[tested.is_some_and(|t| t.days == *days) || (tested.is_none() && *days == 7)] { (label) }
                    }
                }
                button type="submit" name="action" value="backtest" { "Back-test" }
                a href="/rules" { "Cancel" }
            }
        }
        @if let Some(r) = rule {
            section.panel {
                h2 { "Delete this rule" }
                p.muted { "Its alerts stay." }
                form.inline method="post" action={ "/rules/" (r.id) "/delete" } {
                    (frame.csrf_field())
                    label.check { input type="checkbox" name="confirm" value=(r.name) required; " Delete “" (r.name) "”" }
                    button.danger type="submit" { "Delete" }
                }
            }
        }
    };
    Ok((status, page::shell(&frame, Nav::Alerts, &title, body)).into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UncoveredQuery {
    range: Option<String>,
}

/// Risky downloads listed at most.
const UNCOVERED: usize = 100;

pub(crate) async fn uncovered(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<UncoveredQuery>,
) -> Result<Markup, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let key = query.range.unwrap_or_else(|| "7d".into());
    let (_, label, days) = RANGES
        .iter()
        .find(|(k, _, _)| *k == key)
        .copied()
        .ok_or_else(|| bad(format!("{key:?} is not a range (1d, 7d, 30d or 90d)")))?;
    let now = Utc::now().timestamp_millis();
    let (events, total) = db(&console, move |s| s.uncovered(now - days * DAY, now + 1, UNCOVERED)).await?;
    Ok(page::shell(
        &frame,
        Nav::Alerts,
        "Risks not covered",
        html! {
            div.page-head {
                div {
                    h1 { "Risks not covered by alerts" }
                    p { "High and critical downloads that no alert holds: either no enabled rule matched them, or they came before the rule." }
                }
                nav.segmented aria-label="Range" {
                    @for (k, l, _) in RANGES {
                        a href={ "/rules/uncovered?range=" (k) } aria-current=[(*k == key).then_some("page")] { (l) }
                    }
                }
            }
            (page::alerts_tabs(&frame, AlertsTab::Uncovered))
            @if events.is_empty() {
                div.empty { strong { "Nothing uncovered." } "Every high or critical download in the " (label.to_lowercase()) " is in an alert." }
            } @else {
                div.results-bar { span #uncovered-count { (page::count(total, "download")) " not covered" @if total as usize > events.len() { "; the newest " (events.len()) " are listed" } } }
                div.table-wrap {
                    table #uncovered {
                        thead { tr { th { "Time" } th { "User" } th { "Report" } th.num { "Rows" } th { "Severity" } th { "Indicators" } th { span.visually-hidden { "Rule" } } } }
                        tbody {
                            @for e in &events {
                                tr {
                                    td { a href={ "/search/events/" (e.id) } { (page::time(e.observed_at)) } }
                                    td { (e.username.as_deref().unwrap_or(e.user_id.as_str())) }
                                    td.truncate title=[e.report_name.as_deref()] { (e.report_name.as_deref().unwrap_or("—")) }
                                    td.num { (page::thousands(e.rows.max(0) as u64)) }
                                    td { (severity_badge(e.severity)) }
                                    td { (e.indicators.iter().map(|i| i.label()).collect::<Vec<_>>().join(", ")) }
                                    td { @if frame.is_admin() { a.button href={ "/rules/new?from_event=" (e.id) } { "Make a rule" } } }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}
