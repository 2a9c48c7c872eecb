//! Users: the monitored people with their last activity and highest severity, and a
//! page per person (downloads over time, recent downloads, sessions, source IPs), each
//! linking into Forensic Search.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use chrono::Utc;
use maud::{Markup, html};

use super::dashboard::{Bar, Span, time_chart};
use super::page::{self, Frame, Nav};
use super::search::{Comparison, Range, search_link, search_link_within, severity_badge};
use super::{Console, ConsoleError, Signed, db};
use crate::search::{Field, Filter, Op, SearchQuery, Sort};
use crate::store::Person;

const PAGE: usize = 100;
const HOUR: i64 = 3_600_000;

crate::named::named_enum! {
    /// How the Users list is ordered.
    pub(crate) enum PeopleOrder ("users order") {
        Recent = "recent",
        Downloads = "downloads",
        Rows = "rows",
        Severity = "severity",
        Name = "name",
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    q: Option<String>,
    sort: Option<String>,
    page: Option<usize>,
}

fn shown_name(p: &Person) -> String {
    p.username.clone().unwrap_or_else(|| p.user_id.clone())
}

pub(crate) async fn list(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<ListQuery>,
) -> Result<Markup, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let order: PeopleOrder = query
        .sort
        .as_deref()
        .unwrap_or("recent")
        .parse()
        .map_err(|e: crate::named::UnknownName| ConsoleError::BadRequest(e.to_string()))?;
    let text = query.q.clone().unwrap_or_default().trim().to_lowercase();
    let mut people = db(&console, |s| s.people()).await?;
    if !text.is_empty() {
        people.retain(|p| {
            [p.username.as_deref(), p.email.as_deref(), p.name.as_deref(), Some(p.user_id.as_str())]
                .iter()
                .flatten()
                .any(|v| v.to_lowercase().contains(&text))
        });
    }
    match order {
        PeopleOrder::Recent => {}
        PeopleOrder::Downloads => people.sort_by_key(|p| std::cmp::Reverse(p.downloads)),
        PeopleOrder::Rows => people.sort_by_key(|p| std::cmp::Reverse(p.rows)),
        PeopleOrder::Severity => people.sort_by(|a, b| b.worst.cmp(&a.worst).then(b.downloads.cmp(&a.downloads))),
        PeopleOrder::Name => people.sort_by_key(|p| shown_name(p).to_lowercase()),
    }
    let total = people.len();
    let page_no = query.page.unwrap_or(1).max(1);
    let start = (page_no - 1) * PAGE;
    let shown: Vec<&Person> = people.iter().skip(start).take(PAGE).collect();
    let now = Utc::now().timestamp_millis();
    let link = |order: PeopleOrder, page: usize| {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        if !text.is_empty() {
            out.append_pair("q", &text);
        }
        out.append_pair("sort", order.as_str());
        if page > 1 {
            out.append_pair("page", &page.to_string());
        }
        format!("/users?{}", out.finish())
    };
    let heading = |label: &str, by: PeopleOrder, numeric: bool| {
        html! {
            th.num[numeric] aria-sort=[(by == order).then_some("descending")] {
                a href=(link(by, 1)) { (label) @if by == order { " ↓" } }
            }
        }
    };
    Ok(page::shell(
        &frame,
        Nav::Users,
        "Users",
        html! {
            div.page-head {
                div {
                    h1 { "Users" }
                    p { "The people Tripline monitors (users with Export Reports in a connection's scope) and everyone who downloaded a report." }
                }
                form.inline method="get" action="/users" role="search" {
                    label.visually-hidden for="q" { "Find a user" }
                    input #q type="search" name="q" value=(text) placeholder="Username, email or name";
                    input type="hidden" name="sort" value=(order.as_str());
                    button type="submit" { "Find" }
                }
            }
            @if shown.is_empty() {
                div.empty {
                    strong { "No users found." }
                    @if text.is_empty() { "Users appear once a data connection has scanned its org." } @else { "No one matches “" (text) "”." }
                }
            } @else {
                div.results-bar {
                    div role="status" {
                        strong { (page::thousands(start as u64 + 1)) "–" (page::thousands((start + shown.len()) as u64)) }
                        " of " strong { (page::thousands(total as u64)) } " users"
                    }
                }
                div.table-wrap {
                    table #people {
                        thead { tr {
                            (heading("User", PeopleOrder::Name, false))
                            th { "Email" }
                            th { "Monitored" }
                            (heading("Downloads", PeopleOrder::Downloads, true))
                            (heading("Rows", PeopleOrder::Rows, true))
                            (heading("Last download", PeopleOrder::Recent, false))
                            (heading("Highest severity", PeopleOrder::Severity, false))
                        } }
                        tbody {
                            @for p in &shown {
                                tr {
                                    td {
                                        a.truncate href={ "/users/" (p.user_id) } title=(shown_name(p)) { (shown_name(p)) }
                                        @if let Some(name) = &p.name { div.muted { (name) } }
                                    }
                                    td.truncate title=[p.email.as_deref()] { (p.email.as_deref().unwrap_or("—")) }
                                    td { @if p.monitored { "Yes" } @else { span.muted { "No" } } }
                                    td.num { (page::thousands(p.downloads)) }
                                    td.num { (page::thousands(p.rows)) }
                                    td { @if let Some(at) = p.last_at { (page::time(at)) " " span.muted { "(" (page::ago(at, now)) ")" } } @else { span.muted { "None" } } }
                                    td { @if let Some(w) = p.worst { (severity_badge(w)) } @else { span.muted { "—" } } }
                                }
                            }
                        }
                    }
                }
                nav.pager aria-label="Pages" {
                    @if page_no > 1 { a.button href=(link(order, page_no - 1)) { "« Previous" } }
                    @if start + PAGE < total { a.button href=(link(order, page_no + 1)) { "Next " (PAGE) " »" } }
                }
            }
        },
    ))
}

/// One person: their downloads over 30 days, the newest downloads, sessions and
/// source IPs.
pub(crate) async fn person(
    State(console): State<Console>,
    signed: Signed,
    Path(user_id): Path<String>,
) -> Result<Markup, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let now = Utc::now().timestamp_millis();
    let to = (now.div_euclid(24 * HOUR) + 1) * 24 * HOUR;
    let from = to - 30 * 24 * HOUR;
    let key = user_id.clone();
    let (person, hours, sessions, recent) = db(&console, move |s| {
        let person = s.people()?.into_iter().find(|p| p.user_id == key);
        let query = SearchQuery {
            from_ms: 0,
            to_ms: now + 1,
            filter: Filter::Term { field: Field::UserId, op: Op::Is(key.clone()) },
            sort: Sort::default(),
            page_size: 200,
            after: None,
            after_seq: None,
        };
        Ok((person, s.person_hours(&key, from, to)?, s.person_sessions(&key, 50)?, s.search(&query)?.events))
    })
    .await?;
    let person = person.ok_or_else(|| ConsoleError::NotFound(format!("user {user_id}")))?;
    let mut days: BTreeMap<i64, u64> = BTreeMap::new();
    for (hour, downloads, _) in &hours {
        *days.entry(hour.div_euclid(24 * HOUR) * 24 * HOUR).or_default() += downloads;
    }
    let bars: Vec<Bar> = (0..30)
        .map(|i| {
            let start = from + i * 24 * HOUR;
            Bar {
                from: start,
                to: start + 24 * HOUR,
                segments: vec![(days.get(&start).copied().unwrap_or(0), "bar-main")],
            }
        })
        .collect();
    let mine =
        |f: i64, t: i64| search_link_within(&[(Field::UserId, Comparison::Is, &user_id)], Range::Custom, Some((f, t)));
    // Source IPs from sessions and downloads: first and last seen, how often.
    let mut ips: BTreeMap<String, (i64, i64, usize, usize)> = BTreeMap::new();
    for s in &sessions {
        if let Some(ip) = &s.source_ip {
            let e = ips.entry(ip.clone()).or_insert((s.login_at, s.login_at, 0, 0));
            e.0 = e.0.min(s.login_at);
            e.1 = e.1.max(s.login_at);
            e.2 += 1;
        }
    }
    for d in &recent {
        if let Some(ip) = &d.source_ip {
            let e = ips.entry(ip.clone()).or_insert((d.observed_at, d.observed_at, 0, 0));
            e.0 = e.0.min(d.observed_at);
            e.1 = e.1.max(d.observed_at);
            e.3 += 1;
        }
    }
    let mut ips: Vec<_> = ips.into_iter().collect();
    ips.sort_by_key(|(_, (_, last, _, _))| std::cmp::Reverse(*last));
    let name = shown_name(&person);
    Ok(page::shell(
        &frame,
        Nav::Users,
        &name,
        html! {
            div.crumbs { a href="/users" { "Users" } " › " (name) }
            div.page-head {
                div {
                    h1 { (name) }
                    p {
                        (person.name.as_deref().unwrap_or("")) " "
                        @if let Some(email) = &person.email { "· " (email) " " }
                        "· " code { (person.user_id) } " · "
                        @if person.monitored { "Monitored" } @else { "Not in any connection's scope" }
                    }
                }
                a.button.primary href=(search_link(&[(Field::UserId, Comparison::Is, &user_id)], Range::Quarter)) { "Open in Forensic Search" }
            }
            div.kpis {
                div.kpi { div.label { "Downloads (all time)" } div.value { (page::thousands(person.downloads)) } }
                div.kpi { div.label { "Rows exported" } div.value { (page::thousands(person.rows)) } }
                div.kpi { div.label { "Last download" } div.value.small { @if let Some(at) = person.last_at { (page::ago(at, now)) } @else { "None" } } }
                div.kpi { div.label { "Highest severity" } div.value.small { @if let Some(w) = person.worst { (severity_badge(w)) } @else { "—" } } }
            }
            div.panel {
                (time_chart("Downloads per day, last 30 days (UTC)", &bars, Span::Month, &[], mine))
            }
            div.grid.even {
                section.panel {
                    h2 { "Newest downloads" }
                    @if recent.is_empty() {
                        p.muted { "No downloads recorded." }
                    } @else {
                        div.table-wrap {
                            table {
                                thead { tr { th { "Time" } th { "Report" } th.num { "Rows" } th { "Severity" } } }
                                tbody {
                                    @for e in recent.iter().take(25) {
                                        tr {
                                            td { a href={ "/search/events/" (e.id) } { (page::time(e.observed_at)) } }
                                            td.truncate title=[e.report_name.as_deref()] { (e.report_name.as_deref().unwrap_or("(unnamed report)")) }
                                            td.num { (page::thousands(e.rows.max(0) as u64)) }
                                            td { (severity_badge(e.severity)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                section.panel {
                    h2 { "Source IPs" }
                    p.hint { "From the newest 50 sessions and 200 downloads." }
                    @if ips.is_empty() {
                        p.muted { "None seen." }
                    } @else {
                        div.table-wrap {
                            table {
                                thead { tr { th { "IP address" } th { "First seen" } th { "Last seen" } th.num { "Sessions" } th.num { "Downloads" } } }
                                tbody {
                                    @for (ip, (first, last, sessions, downloads)) in &ips {
                                        tr {
                                            td { a href=(search_link(&[(Field::UserId, Comparison::Is, &user_id), (Field::SourceIp, Comparison::Is, ip)], Range::Quarter)) { code { (ip) } } }
                                            td { (page::time(*first)) }
                                            td { (page::time(*last)) }
                                            td.num { (sessions) }
                                            td.num { (downloads) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    h2 { "Sessions" }
                    @if sessions.is_empty() {
                        p.muted { "No login seen since monitoring began." }
                    } @else {
                        div.table-wrap {
                            table {
                                thead { tr { th { "Signed in" } th { "Source IP" } th { "Browser / platform" } th { "Location" } } }
                                tbody {
                                    @for s in &sessions {
                                        tr {
                                            td { (page::time(s.login_at)) }
                                            td { code { (s.source_ip.as_deref().unwrap_or("—")) } }
                                            td { (s.browser.as_deref().unwrap_or("—")) " / " (s.platform.as_deref().unwrap_or("—")) }
                                            td { (s.city.as_deref().unwrap_or("—")) ", " (s.country.as_deref().unwrap_or("—")) }
                                        }
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
