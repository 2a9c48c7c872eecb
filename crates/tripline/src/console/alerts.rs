//! Alerts: the list to triage (filters, sort and paging in the query string), and an
//! alert's page (its events, a link to the search that shows them, state, assignee
//! and notes).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};

use super::auth::actor;
use super::page::{self, AlertsTab, Frame, Nav};
use super::search::{Comparison, Range, search_link_within, severity_badge};
use super::{Console, ConsoleError, FormData, Signed, db};
use crate::alerts::{Alert, AlertFilter, AlertOrder, AlertState, AlertUpdate};
use crate::named::named_enum;
use crate::risk::Severity;
use crate::search::Field;
use crate::store::{Store, StoreError};

/// Alerts per page.
const PAGE: usize = 50;

named_enum! {
    /// Which alerts the list shows, by state.
    pub(crate) enum StateFilter ("alert state filter") {
        /// Open or in progress.
        Active = "active",
        Open = "open",
        InProgress = "in-progress",
        Closed = "closed",
        All = "all",
    }
}

impl StateFilter {
    fn states(self) -> Vec<AlertState> {
        match self {
            StateFilter::Active => vec![AlertState::Open, AlertState::InProgress],
            StateFilter::Open => vec![AlertState::Open],
            StateFilter::InProgress => vec![AlertState::InProgress],
            StateFilter::Closed => AlertState::ALL.iter().copied().filter(|s| s.is_closed()).collect(),
            StateFilter::All => Vec::new(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            StateFilter::Active => "Open and in progress",
            StateFilter::Open => "Open",
            StateFilter::InProgress => "In progress",
            StateFilter::Closed => "Closed",
            StateFilter::All => "All",
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    state: Option<String>,
    severity: Option<String>,
    rule: Option<String>,
    user: Option<String>,
    sort: Option<String>,
    page: Option<usize>,
}

fn bad(e: impl std::fmt::Display) -> ConsoleError {
    ConsoleError::BadRequest(e.to_string())
}

/// The list's filters, read from the query string (anything unknown refused).
struct Filters {
    state: StateFilter,
    severity: Option<Severity>,
    rule: Option<i64>,
    user: String,
    order: AlertOrder,
    page: usize,
}

impl Filters {
    fn read(q: &ListQuery) -> Result<Filters, ConsoleError> {
        let present = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        Ok(Filters {
            state: present(&q.state).map_or(Ok(StateFilter::Active), |s| s.parse()).map_err(bad)?,
            severity: present(&q.severity).map(|s| s.parse()).transpose().map_err(bad)?,
            rule: present(&q.rule).map(|r| r.parse::<i64>()).transpose().map_err(|_| bad("the rule is a number"))?,
            user: present(&q.user).unwrap_or_default(),
            order: present(&q.sort).map_or(Ok(AlertOrder::Newest), |s| s.parse()).map_err(bad)?,
            page: q.page.unwrap_or(1).max(1),
        })
    }

    fn link(&self, page: usize) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("state", self.state.as_str());
        if let Some(s) = self.severity {
            q.append_pair("severity", s.as_str());
        }
        if let Some(r) = self.rule {
            q.append_pair("rule", &r.to_string());
        }
        if !self.user.is_empty() {
            q.append_pair("user", &self.user);
        }
        q.append_pair("sort", self.order.as_str());
        q.append_pair("page", &page.to_string());
        format!("/alerts?{}", q.finish())
    }
}

/// Alerts at a glance, for the navigation's counter and the list's "new alerts" notice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct AlertPulse {
    /// Open or in progress.
    pub active: u64,
    /// The newest alert's `seq` (0: none yet).
    pub newest: i64,
}

impl AlertPulse {
    pub(crate) fn read(s: &dyn Store) -> Result<AlertPulse, StoreError> {
        let active = AlertFilter { states: StateFilter::Active.states(), limit: 1, ..Default::default() };
        let newest = s.alerts(&AlertFilter { limit: 1, ..Default::default() })?.0.first().map_or(0, |a| a.seq);
        Ok(AlertPulse { active: s.alerts(&active)?.1, newest })
    }
}

pub(crate) fn state_badge(state: AlertState) -> Markup {
    html! { span class={ "state state-" (state.as_str()) } { (state.label()) } }
}

/// The Forensic Search showing exactly an alert's events.
pub(crate) fn alert_search(alert: &Alert) -> String {
    let window = Some((alert.first_at - 60_000, alert.last_at + 60_000));
    search_link_within(&[(Field::Alert, Comparison::Is, &alert.id)], Range::Custom, window)
}

pub(crate) async fn list(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<ListQuery>,
) -> Result<Markup, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let f = Filters::read(&query)?;
    let filter = AlertFilter {
        states: f.state.states(),
        min_severity: f.severity,
        rule_id: f.rule,
        user: (!f.user.is_empty()).then(|| f.user.clone()),
        order: f.order,
        limit: PAGE,
        offset: (f.page - 1) * PAGE,
        ..AlertFilter::default()
    };
    let ((alerts, total), rules) = db(&console, move |s| Ok((s.alerts(&filter)?, s.rules()?))).await?;
    let now = Utc::now().timestamp_millis();
    let start = (f.page - 1) * PAGE;
    Ok(page::shell(
        &frame,
        Nav::Alerts,
        "Alerts",
        html! {
            div.page-head {
                div {
                    h1 { "Alerts" }
                    p { "Downloads that matched an enabled rule, grouped per rule and person while the rule's suppression window is open." }
                }
            }
            (page::alerts_tabs(&frame, AlertsTab::Alerts))
            div.notice #alerts-new hidden data-newest=(frame.alerts.map_or(0, |p| p.newest)) role="status" {
                "New alerts were raised since this page was shown. "
                a href=(f.link(1)) { "Show them" }
            }
            form.filters method="get" action="/alerts" {
                div {
                    label for="f-state" { "State" }
                    select #f-state name="state" {
                        @for s in StateFilter::ALL {
                            option value=(s.as_str()) selected[*s == f.state] { (s.label()) }
                        }
                    }
                }
                div {
                    label for="f-severity" { "Severity" }
                    select #f-severity name="severity" {
                        option value="" selected[f.severity.is_none()] { "Any" }
                        @for s in Severity::ALL.iter().filter(|s| **s != Severity::NoRisk) {
                            option value=(s.as_str()) selected[f.severity == Some(*s)] { (s.label()) " and above" }
                        }
                    }
                }
                div {
                    label for="f-rule" { "Rule" }
                    select #f-rule name="rule" {
                        option value="" selected[f.rule.is_none()] { "Any rule" }
                        @for r in &rules {
                            option value=(r.id) selected[f.rule == Some(r.id)] { (r.name) }
                        }
                    }
                }
                div {
                    label for="f-user" { "User" }
                    input #f-user type="text" name="user" value=(f.user) placeholder="username or user ID";
                }
                div {
                    label for="f-sort" { "Order" }
                    select #f-sort name="sort" {
                        @for order in AlertOrder::ALL {
                            option value=(order.as_str()) selected[*order == f.order] { (order.label()) }
                        }
                    }
                }
                div { button.primary type="submit" { "Apply" } }
            }
            @if alerts.is_empty() {
                div.empty {
                    strong { "No alerts match." }
                    @if rules.iter().any(|r| r.enabled) {
                        "Widen the filters, or look at the risks no rule covers."
                    } @else {
                        "No rule is enabled yet: " a href="/rules" { "enable a rule" } " to be alerted."
                    }
                }
            } @else {
                div.results-bar {
                    span #alert-count { (page::thousands((start + 1) as u64)) "–" (page::thousands((start + alerts.len()) as u64)) " of " (page::thousands(total)) }
                }
                div.table-wrap {
                    table #alerts {
                        thead { tr {
                            th { "Severity" } th { "Alert" } th { "User" } th.num { "Downloads" } th.num { "Rows" }
                            th { "Last download" } th { "State" } th { "Assignee" }
                        } }
                        tbody {
                            @for a in &alerts {
                                tr {
                                    td { (severity_badge(a.severity)) }
                                    td { a.truncate href={ "/alerts/" (a.id) } title=(a.rule_name) { (a.rule_name) } }
                                    td { a.truncate href={ "/users/" (a.user_id) } title=(a.username.as_deref().unwrap_or(&a.user_id)) { (a.username.as_deref().unwrap_or(&a.user_id)) } }
                                    td.num { (page::thousands(a.events as u64)) }
                                    td.num { (page::thousands(a.rows as u64)) }
                                    td { (page::time(a.last_at)) div.ago { (page::ago(a.last_at, now)) } }
                                    td { (state_badge(a.state)) }
                                    td { (a.assignee.as_deref().unwrap_or("—")) }
                                }
                            }
                        }
                    }
                }
                nav.pager aria-label="Pages" {
                    @if f.page > 1 { a.button href=(f.link(f.page - 1)) { "« Previous" } }
                    @if start + PAGE < total as usize { a.button href=(f.link(f.page + 1)) { "Next " (PAGE) " »" } }
                }
            }
        },
    ))
}

/// Events an alert's page lists.
const ALERT_EVENTS: usize = 200;

pub(crate) async fn detail(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Markup, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let key = id.clone();
    let (found, events, accounts) =
        db(&console, move |s| Ok((s.alert(&key)?, s.alert_events(&key, ALERT_EVENTS)?, s.accounts()?))).await?;
    let (alert, notes) = found.ok_or_else(|| ConsoleError::NotFound(format!("alert {id}")))?;
    let who = alert.username.clone().unwrap_or_else(|| alert.user_id.clone());
    Ok(page::shell(
        &frame,
        Nav::Alerts,
        &alert.rule_name,
        html! {
            div.crumbs { a href="/alerts" { "Alerts" } " › " (alert.rule_name) }
            div.page-head {
                div {
                    h1 { (severity_badge(alert.severity)) " " (alert.rule_name) }
                    p { (who) " · " (page::count(alert.events as u64, "download")) " · " (page::thousands(alert.rows as u64)) " rows · " (state_badge(alert.state)) }
                }
                a.button.primary href=(alert_search(&alert)) { "Open in Forensic Search" }
            }
            div.grid {
                div {
                    section.panel {
                        h2 { "Downloads in this alert" }
                        div.table-wrap {
                            table #alert-events {
                                thead { tr { th { "Time" } th { "Report" } th.num { "Rows" } th { "Format" } th { "Destination" } th { "Source IP" } th { "Severity" } } }
                                tbody {
                                    @for e in &events {
                                        tr {
                                            td { a href={ "/search/events/" (e.id) } { (page::time(e.observed_at)) } }
                                            td.truncate title=[e.report_name.as_deref()] { (e.report_name.as_deref().unwrap_or("—")) }
                                            td.num { (page::thousands(e.rows.max(0) as u64)) }
                                            td { (e.export_format.as_deref().unwrap_or("—")) }
                                            td { (if e.destination == crate::events::Destination::Unmonitored { "Unmonitored device" } else { "Corporate" }) }
                                            td { code { (e.source_ip.as_deref().unwrap_or("—")) } }
                                            td { (severity_badge(e.severity)) }
                                        }
                                    }
                                }
                            }
                        }
                        @if alert.events as usize > events.len() {
                            p.hint { "The first " (events.len()) " of " (page::thousands(alert.events as u64)) " are listed; the search shows all." }
                        }
                    }
                    section.panel {
                        h2 { "Notes" }
                        @if notes.is_empty() {
                            p.muted { "No notes yet." }
                        } @else {
                            ul.notes #notes {
                                @for n in &notes {
                                    li { div.meta { (n.author) " · " (page::time(n.at)) } p { (n.text) } }
                                }
                            }
                        }
                    }
                }
                div {
                    section.panel {
                        h2 { "Details" }
                        dl.facts.side {
                            dt { "Rule" } dd { @if frame.is_admin() { a href={ "/rules/" (alert.rule_id) } { (alert.rule_name) } } @else { (alert.rule_name) } }
                            dt { "User" } dd { a href={ "/users/" (alert.user_id) } { (who) } }
                            dt { "First download" } dd { (page::time(alert.first_at)) }
                            dt { "Last download" } dd { (page::time(alert.last_at)) }
                            dt { "Raised" } dd { (page::time(alert.created_at)) }
                            dt { "Alert ID" } dd { code { (alert.id) } }
                        }
                    }
                    section.panel {
                        h2 { "Triage" }
                        form.stack #triage method="post" action={ "/alerts/" (alert.id) } {
                            (frame.csrf_field())
                            div {
                                label for="state" { "State" }
                                select #state name="state" {
                                    @for s in AlertState::ALL {
                                        option value=(s.as_str()) selected[*s == alert.state] { (s.label()) }
                                    }
                                }
                            }
                            div {
                                label for="assignee" { "Assignee" }
                                select #assignee name="assignee" {
                                    option value="" selected[alert.assignee.is_none()] { "Unassigned" }
                                    @for a in &accounts {
                                        option value=(a.username) selected[alert.assignee.as_deref() == Some(a.username.as_str())] { (a.username) }
                                    }
                                }
                            }
                            div {
                                label for="note" { "Add a note" }
                                textarea #note name="note" rows="3" maxlength="4000" placeholder="What you found, what you did" {}
                            }
                            button.primary type="submit" { "Save" }
                        }
                    }
                }
            }
        },
    ))
}

/// Longest note.
const MAX_NOTE: usize = 4000;

pub(crate) async fn update(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["state", "assignee", "note"])?;
    let state: Option<AlertState> = form.get("state").map(str::parse).transpose().map_err(bad)?;
    let note = form.get("note").map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned);
    if note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE) {
        return Err(bad(format!("a note has at most {MAX_NOTE} characters")));
    }
    let assignee = form.get("assignee").map(str::to_owned);
    let (who, key) = (actor(&signed.0.account), id.clone());
    db(&console, move |s| {
        if let Some(name) = assignee.as_deref().filter(|a| !a.is_empty())
            && !s.accounts()?.iter().any(|a| a.username == name)
        {
            return Err(crate::store::StoreError::NotFound(format!("account {name}")));
        }
        let (current, _) = s.alert(&key)?.ok_or_else(|| crate::store::StoreError::NotFound(format!("alert {key}")))?;
        // Only what changed is recorded (and audited).
        let update = AlertUpdate {
            state: state.filter(|s| *s != current.state),
            assignee: assignee.filter(|a| current.assignee.as_deref().unwrap_or("") != a),
            note,
        };
        s.update_alert(&key, &update, &who)
    })
    .await?;
    Ok(Redirect::to(&format!("/alerts/{id}")).into_response())
}
