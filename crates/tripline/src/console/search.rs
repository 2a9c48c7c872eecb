//! Forensic Search: the filter builder (conditions in groups: any condition of a group,
//! every group), a time range in UTC, chosen columns, sort, keyset paging through every
//! result, saved searches, the event detail view and the streamed export. The whole
//! search lives in the query string, so a pasted link shows the same results.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{NaiveDateTime, Utc};
use maud::{Markup, html};

use super::auth::actor;
use super::page::{self, Frame, Nav};
use super::{Console, ConsoleError, FormData, Signed, db};
use crate::access::Role;
use crate::events::{Destination, FileEvent};
use crate::risk::Severity;
use crate::search::output::{self, Format};
use crate::search::{Field, Filter, Op, SearchQuery, Sort};

/// Results on a page.
const PAGE: usize = 100;
/// Matches counted exactly up to here; beyond, "10,000+".
const COUNT_CAP: u64 = 10_000;
/// Condition rows the form offers beyond those in use.
const SPARE_ROWS: usize = 2;
const GROUPS: [&str; 4] = ["A", "B", "C", "D"];

crate::named::named_enum! {
    /// The time ranges offered; Custom takes `from` and `to`.
    pub(crate) enum Range ("time range") {
        Minutes15 = "15m",
        Hour = "1h",
        Day = "24h",
        Week = "7d",
        Month = "30d",
        Quarter = "90d",
        Custom = "custom",
    }
}

impl Range {
    fn label(self) -> &'static str {
        match self {
            Range::Minutes15 => "Last 15 minutes",
            Range::Hour => "Last hour",
            Range::Day => "Last 24 hours",
            Range::Week => "Last 7 days",
            Range::Month => "Last 30 days",
            Range::Quarter => "Last 90 days",
            Range::Custom => "Custom (UTC)",
        }
    }
}

crate::named::named_enum! {
    /// How a condition compares a field.
    pub(crate) enum Comparison ("comparison") {
        Is = "is",
        IsNot = "is_not",
        AnyOf = "any_of",
        Matches = "matches",
        Exists = "exists",
        Missing = "missing",
        Above = "above",
        Below = "below",
    }
}

impl Comparison {
    fn label(self) -> &'static str {
        match self {
            Comparison::Is => "is",
            Comparison::IsNot => "is not",
            Comparison::AnyOf => "is any of (comma-separated)",
            Comparison::Matches => "matches (* and ? wildcards)",
            Comparison::Exists => "has a value",
            Comparison::Missing => "has no value",
            Comparison::Above => "is more than",
            Comparison::Below => "is less than",
        }
    }

    fn needs_value(self) -> bool {
        !matches!(self, Comparison::Exists | Comparison::Missing)
    }
}

/// The fields a condition can name (the time is the range), with their labels.
const FIELDS: &[(Field, &str)] = &[
    (Field::Username, "Username"),
    (Field::Email, "Email"),
    (Field::UserName, "User's name"),
    (Field::UserId, "Salesforce user ID"),
    (Field::ReportName, "Report name"),
    (Field::ReportId, "Report ID"),
    (Field::Rows, "Rows"),
    (Field::ExportFormat, "Export format"),
    (Field::Operation, "Operation"),
    (Field::QueriedEntities, "Queried entities"),
    (Field::FileName, "File name"),
    (Field::SourceIp, "Source IP"),
    (Field::Destination, "Destination (corporate, unmonitored)"),
    (Field::Severity, "Severity (no-risk ... critical)"),
    (Field::RiskScore, "Risk score"),
    (Field::Indicators, "Risk indicator (large-export, off-hours, ...)"),
    (Field::Alert, "Alert ID"),
    (Field::Attribution, "Attribution (login-session, user-lookup)"),
    (Field::ConnectionId, "Data connection ID"),
];

/// The result columns a person can choose, with their headings and the field to sort
/// by: only the time, which the database has an index for, so a page stays fast at
/// any size (every other index would cost ingest speed; measured).
const COLUMNS: &[(&str, &str, Option<Field>)] = &[
    ("time", "Time", Some(Field::ObservedAt)),
    ("username", "User", None),
    ("email", "Email", None),
    ("user_name", "Name", None),
    ("report_name", "Report", None),
    ("report_id", "Report ID", None),
    ("rows", "Rows", None),
    ("chunks", "Chunks", None),
    ("export_format", "Format", None),
    ("file_name", "File name", None),
    ("destination", "Destination", None),
    ("source_ip", "Source IP", None),
    ("severity", "Severity", None),
    ("risk_score", "Risk score", None),
    ("indicators", "Risk indicators", None),
    ("attribution", "Attribution", None),
    ("operation", "Operation", None),
    ("connection_id", "Connection", None),
];

const DEFAULT_COLUMNS: &[&str] =
    &["time", "username", "report_name", "rows", "export_format", "destination", "source_ip", "severity"];

fn field_label(field: Field) -> &'static str {
    FIELDS.iter().find(|(f, _)| *f == field).map_or("Time", |(_, l)| l)
}

/// One condition as typed.
#[derive(Debug, Clone, Default, PartialEq)]
struct Condition {
    group: String,
    field: String,
    comparison: String,
    value: String,
}

/// A search as its URL carries it.
#[derive(Debug, Clone)]
pub(crate) struct SearchForm {
    range: Range,
    from: String,
    to: String,
    conditions: Vec<Condition>,
    sort: Field,
    descending: bool,
    columns: Vec<String>,
    after: Option<String>,
    /// The index of the page's first result (for "101–200 of ...").
    start: usize,
}

impl SearchForm {
    /// Reads the query string; unknown names are refused.
    fn parse(raw: Option<&str>, extra: &[&str]) -> Result<SearchForm, ConsoleError> {
        let mut form = SearchForm {
            range: Range::Week,
            from: String::new(),
            to: String::new(),
            conditions: Vec::new(),
            sort: Field::ObservedAt,
            descending: true,
            columns: Vec::new(),
            after: None,
            start: 0,
        };
        let (mut groups, mut fields, mut comparisons, mut values) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let bad = |m: String| ConsoleError::BadRequest(m);
        for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let value = value.into_owned();
            match name.as_ref() {
                "range" => form.range = value.parse().map_err(|e| bad(format!("{e}")))?,
                "from" => form.from = value,
                "to" => form.to = value,
                "g" => groups.push(value),
                "f" => fields.push(value),
                "o" => comparisons.push(value),
                "v" => values.push(value),
                "sort" => {
                    let field: Field = value.parse().map_err(|e| bad(format!("{e}")))?;
                    if !COLUMNS.iter().any(|(_, _, sortable)| *sortable == Some(field)) {
                        return Err(bad(format!("results sort by time, not {value:?}")));
                    }
                    form.sort = field;
                }
                "dir" => form.descending = value != "asc",
                "col" => {
                    if !COLUMNS.iter().any(|(c, _, _)| *c == value) {
                        return Err(bad(format!("unknown column {value:?}")));
                    }
                    form.columns.push(value);
                }
                "after" => form.after = Some(value).filter(|v| !v.is_empty()),
                "start" => form.start = value.parse().unwrap_or(0),
                other if extra.contains(&other) => {}
                other => return Err(bad(format!("unknown search parameter {other:?}"))),
            }
        }
        if [groups.len(), comparisons.len(), values.len()].iter().any(|n| *n != fields.len()) {
            return Err(bad("each condition has a group, a field, a comparison and a value".into()));
        }
        for (((group, field), comparison), value) in groups.into_iter().zip(fields).zip(comparisons).zip(values) {
            if !field.is_empty() {
                form.conditions.push(Condition { group, field, comparison, value });
            }
        }
        if form.columns.is_empty() {
            form.columns = DEFAULT_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
        }
        Ok(form)
    }

    /// The query, or what is wrong with the form (each message names the condition).
    fn query(&self, now: i64) -> Result<SearchQuery, Vec<String>> {
        let mut errors = Vec::new();
        let (from_ms, to_ms) = match self.range {
            Range::Custom => {
                let parse = |label: &str, text: &str| {
                    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
                        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
                        .map(|t| t.and_utc().timestamp_millis())
                        .map_err(|_| format!("{label}: enter a UTC date and time such as 2026-11-01T09:00"))
                };
                match (parse("From", &self.from), parse("To", &self.to)) {
                    (Ok(from), Ok(to)) if from < to => (from, to),
                    (Ok(_), Ok(_)) => {
                        errors.push("The time range is empty: From must be before To.".into());
                        (0, 1)
                    }
                    (from, to) => {
                        errors.extend(from.err());
                        errors.extend(to.err());
                        (0, 1)
                    }
                }
            }
            preset => {
                let span = crate::search::parse_duration(preset.as_str()).unwrap_or(7 * 86_400_000);
                (now - span, now + 1)
            }
        };
        let mut groups: BTreeMap<&str, Vec<Filter>> = BTreeMap::new();
        for (i, c) in self.conditions.iter().enumerate() {
            let n = i + 1;
            let field = match c.field.parse::<Field>() {
                Ok(f) if FIELDS.iter().any(|(known, _)| *known == f) => f,
                _ => {
                    errors.push(format!("Condition {n}: choose a field."));
                    continue;
                }
            };
            let Ok(comparison) = c.comparison.parse::<Comparison>() else {
                errors.push(format!("Condition {n}: choose a comparison."));
                continue;
            };
            let value = c.value.trim();
            if comparison.needs_value() && value.is_empty() {
                errors.push(format!("Condition {n} ({}): enter a value.", field_label(field)));
                continue;
            }
            let number = || {
                value
                    .replace(',', "")
                    .parse::<f64>()
                    .map_err(|_| format!("Condition {n} ({}): {value:?} is not a number.", field_label(field)))
            };
            let op = match comparison {
                Comparison::Is => Ok(Op::Is(value.into())),
                Comparison::IsNot => Ok(Op::IsNot(value.into())),
                Comparison::AnyOf => {
                    Ok(Op::AnyOf(value.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect()))
                }
                Comparison::Matches => Ok(Op::Matches(value.into())),
                Comparison::Exists => Ok(Op::Exists(true)),
                Comparison::Missing => Ok(Op::Exists(false)),
                Comparison::Above => number().map(Op::Greater),
                Comparison::Below => number().map(Op::Less),
            };
            match op {
                Ok(op) => {
                    let group = GROUPS.iter().find(|g| **g == c.group).copied().unwrap_or("A");
                    groups.entry(group).or_default().push(Filter::Term { field, op });
                }
                Err(m) => errors.push(m),
            }
        }
        let filter = Filter::All(
            groups
                .into_values()
                .map(|mut terms| if terms.len() == 1 { terms.remove(0) } else { Filter::Any(terms) })
                .collect(),
        );
        let query = SearchQuery {
            from_ms,
            to_ms,
            filter,
            sort: Sort { field: self.sort, descending: self.descending },
            page_size: PAGE,
            after: self.after.clone(),
            after_seq: None,
        };
        if errors.is_empty()
            && let Err(e) = query.validate()
        {
            errors.push(e.0);
        }
        if errors.is_empty() { Ok(query) } else { Err(errors) }
    }

    /// The query string of this search, changed by `edit` (for links).
    fn link(&self, edit: impl FnOnce(&mut SearchForm)) -> String {
        let mut form = self.clone();
        edit(&mut form);
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        out.append_pair("range", form.range.as_str());
        if form.range == Range::Custom {
            out.append_pair("from", &form.from);
            out.append_pair("to", &form.to);
        }
        for c in &form.conditions {
            out.append_pair("g", &c.group);
            out.append_pair("f", &c.field);
            out.append_pair("o", &c.comparison);
            out.append_pair("v", &c.value);
        }
        out.append_pair("sort", form.sort.as_str());
        out.append_pair("dir", if form.descending { "desc" } else { "asc" });
        if form.columns != DEFAULT_COLUMNS {
            for c in &form.columns {
                out.append_pair("col", c);
            }
        }
        if let Some(after) = &form.after {
            out.append_pair("after", after);
            out.append_pair("start", &form.start.to_string());
        }
        out.finish()
    }

    /// This search from its first page.
    fn first_page(&self) -> SearchForm {
        SearchForm { after: None, start: 0, ..self.clone() }
    }
}

/// A search's link, from its first page.
pub(crate) fn search_link(conditions: &[(Field, Comparison, &str)], range: Range) -> String {
    search_link_within(conditions, range, None)
}

/// A search's link over a custom UTC window `[from, to)` (epoch ms) when given.
pub(crate) fn search_link_within(
    conditions: &[(Field, Comparison, &str)],
    range: Range,
    window: Option<(i64, i64)>,
) -> String {
    let minute = |ms: i64| {
        chrono::DateTime::<Utc>::from_timestamp_millis(ms)
            .map(|d| d.format("%Y-%m-%dT%H:%M").to_string())
            .unwrap_or_default()
    };
    let (range, from, to) = match window {
        Some((from, to)) => (Range::Custom, minute(from), minute(to)),
        None => (range, String::new(), String::new()),
    };
    let form = SearchForm {
        range,
        from,
        to,
        conditions: conditions
            .iter()
            .enumerate()
            .map(|(i, (f, c, v))| Condition {
                group: GROUPS[i.min(GROUPS.len() - 1)].into(),
                field: f.as_str().into(),
                comparison: c.as_str().into(),
                value: (*v).into(),
            })
            .collect(),
        sort: Field::ObservedAt,
        descending: true,
        columns: DEFAULT_COLUMNS.iter().map(|c| (*c).to_owned()).collect(),
        after: None,
        start: 0,
    };
    format!("/search?{}", form.link(|_| {}))
}

pub(crate) fn severity_badge(severity: Severity) -> Markup {
    html! { span class={ "sev sev-" (severity.as_str()) } { (severity_label(severity)) } }
}

pub(crate) fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::NoRisk => "No risk",
        Severity::Low => "Low",
        Severity::Moderate => "Moderate",
        Severity::High => "High",
        Severity::Critical => "Critical",
    }
}

fn destination_label(d: Destination) -> &'static str {
    match d {
        Destination::Corporate => "Corporate",
        Destination::Unmonitored => "Unmonitored device",
    }
}

/// One result cell.
fn cell(e: &FileEvent, column: &str) -> Markup {
    match column {
        "time" => page::time(e.observed_at),
        "rows" => html! { (page::thousands(e.rows.max(0) as u64)) },
        "severity" => severity_badge(e.severity),
        "destination" => html! { (destination_label(e.destination)) },
        "username" => {
            let shown = e.username.clone().unwrap_or_else(|| e.user_id.to_string());
            html! { span.truncate title=(shown) { (shown) } }
        }
        other => {
            let text = output::cell(e, other);
            html! { span.truncate title=(text) { (text) } }
        }
    }
}

fn is_numeric_column(column: &str) -> bool {
    matches!(column, "rows" | "chunks" | "risk_score")
}

pub(crate) async fn page(
    State(console): State<Console>,
    signed: Signed,
    RawQuery(raw): RawQuery,
) -> Result<Markup, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let form = SearchForm::parse(raw.as_deref(), &[])?;
    let now = Utc::now().timestamp_millis();
    let saved = db(&console, |s| s.saved_searches()).await?;
    let (results, errors) = match form.query(now) {
        Ok(query) => {
            let counted = query.clone();
            let (page, total) = db(&console, move |s| Ok((s.search(&query)?, s.count(&counted, COUNT_CAP)?))).await?;
            (Some((page, total)), Vec::new())
        }
        Err(errors) => (None, errors),
    };
    let here = form.link(|_| {});
    Ok(page::shell(
        &frame,
        Nav::Search,
        "Forensic Search",
        html! {
            div.page-head {
                div {
                    h1 { "Forensic Search" }
                    p { "Every Salesforce report download, searchable by any field. Times are UTC; your local time is shown beside them." }
                }
                @if !saved.is_empty() {
                    details.saved {
                        summary.button { "Saved searches (" (saved.len()) ")" }
                        ul {
                            @for s in &saved {
                                li {
                                    a href={ "/search?" (s.query) } { (s.name) }
                                    span.muted { " by " (s.owner) }
                                    @if s.owner == super::auth::actor(&frame.account) || frame.is_admin() {
                                        form.inline method="post" action={ "/search/saved/" (s.id) "/delete" } {
                                            (frame.csrf_field())
                                            button.link type="submit" aria-label={ "Delete the saved search " (s.name) } { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (search_form(&form))
            @if !errors.is_empty() {
                div.errors role="alert" #errors {
                    "The search cannot run:"
                    ul { @for m in &errors { li { (m) } } }
                }
            }
            @if let Some((results, total)) = &results {
                @let shown = results.events.len();
                @let first = form.start + 1;
                div.results-bar {
                    div role="status" {
                        @if shown == 0 {
                            "No downloads match."
                        } @else {
                            strong { (page::thousands(first as u64)) "–" (page::thousands((form.start + shown) as u64)) }
                            " of "
                            strong { (page::thousands(*total)) @if *total >= COUNT_CAP { "+" } }
                            " downloads"
                        }
                    }
                    div.actions {
                        a.button href={ "/search/export?" (form.first_page().link(|_| {})) "&format=csv" } download { "Export CSV" }
                        a.button href={ "/search/export?" (form.first_page().link(|_| {})) "&format=jsonl" } download { "Export JSON Lines" }
                        form.inline method="post" action="/search/saved" {
                            (frame.csrf_field())
                            input type="hidden" name="query" value=(form.first_page().link(|_| {}));
                            label.visually-hidden for="save-name" { "Name of the saved search" }
                            input #save-name type="text" name="name" placeholder="Name this search" required maxlength="100";
                            button type="submit" { "Save" }
                        }
                    }
                }
                @if shown == 0 {
                    div.empty {
                        strong { "No downloads in this range." }
                        "Widen the time range or remove a condition, or check "
                        @if frame.is_admin() { a href="/admin/connections" { "Data Connections" } } @else { "Data Connections" }
                        "."
                    }
                } @else {
                    div.table-wrap {
                        table #results {
                            thead {
                                tr {
                                    @for column in &form.columns {
                                        @let (heading, sortable) = COLUMNS.iter().find(|(c, _, _)| c == column).map(|(_, h, f)| (*h, *f)).unwrap_or(("", None));
                                        th.num[is_numeric_column(column)] aria-sort=[sortable.filter(|f| *f == form.sort).map(|_| if form.descending { "descending" } else { "ascending" })] {
                                            @if let Some(field) = sortable {
                                                a href={ "/search?" (form.first_page().link(|f| { f.descending = !(f.sort == field && f.descending); f.sort = field; })) } {
                                                    (heading)
                                                    @if field == form.sort { @if form.descending { " ↓" } @else { " ↑" } }
                                                }
                                            } @else {
                                                (heading)
                                            }
                                        }
                                    }
                                    th { span.visually-hidden { "Details" } }
                                }
                            }
                            tbody {
                                @for e in &results.events {
                                    tr {
                                        @for column in &form.columns {
                                            td.num[is_numeric_column(column)] { (cell(e, column)) }
                                        }
                                        td { a href={ "/search/events/" (e.id) "?" (here) } { "Details" } }
                                    }
                                }
                            }
                        }
                    }
                    nav.pager aria-label="Pages" {
                        @if form.start > 0 {
                            a.button href={ "/search?" (form.first_page().link(|_| {})) } { "« First page" }
                        }
                        @if let Some(next) = &results.next {
                            a.button href={ "/search?" (form.link(|f| { f.after = Some(next.clone()); f.start += PAGE; })) } { "Next " (PAGE) " »" }
                        }
                    }
                }
            }
        },
    ))
}

fn search_form(form: &SearchForm) -> Markup {
    let rows = form.conditions.len() + SPARE_ROWS;
    html! {
        form.search method="get" action="/search" {
            div.search-row {
                div {
                    label for="range" { "Time range" }
                    select #range name="range" {
                        @for r in Range::ALL {
                            option value=(r.as_str()) selected[*r == form.range] { (r.label()) }
                        }
                    }
                }
                div {
                    label for="from" { "From (UTC)" }
                    input #from type="datetime-local" name="from" value=(form.from) data-utc;
                }
                div {
                    label for="to" { "To (UTC)" }
                    input #to type="datetime-local" name="to" value=(form.to) data-utc;
                }
                div {
                    label for="dir" { "Order" }
                    select #dir name="dir" {
                        option value="desc" selected[form.descending] { "Newest first" }
                        option value="asc" selected[!form.descending] { "Oldest first" }
                    }
                }
            }
            fieldset.conditions {
                legend { "Conditions" }
                p.hint { "A group matches when any of its conditions does; every group must match. Empty rows are ignored." }
                table.conditions {
                    thead { tr { th { "Group" } th { "Field" } th { "Comparison" } th { "Value" } } }
                    tbody {
                        @for i in 0..rows {
                            @let c = form.conditions.get(i).cloned().unwrap_or_default();
                            tr {
                                td {
                                    select name="g" aria-label={ "Group of condition " (i + 1) } {
                                        @for g in GROUPS {
                                            option value=(g) selected[c.group == g || (c.group.is_empty() && g == "A")] { (g) }
                                        }
                                    }
                                }
                                td {
                                    select name="f" aria-label={ "Field of condition " (i + 1) } {
                                        option value="" { "—" }
                                        @for (field, label) in FIELDS {
                                            option value=(field.as_str()) selected[c.field == field.as_str()] { (label) }
                                        }
                                    }
                                }
                                td {
                                    select name="o" aria-label={ "Comparison of condition " (i + 1) } {
                                        @for comparison in Comparison::ALL {
                                            option value=(comparison.as_str()) selected[c.comparison == comparison.as_str()] { (comparison.label()) }
                                        }
                                    }
                                }
                                td { input type="text" name="v" value=(c.value) aria-label={ "Value of condition " (i + 1) }; }
                            }
                        }
                    }
                }
            }
            details.columns {
                summary { "Columns (" (form.columns.len()) ")" }
                div.column-choices {
                    @for (column, heading, _) in COLUMNS {
                        label.check {
                            input type="checkbox" name="col" value=(column) checked[form.columns.iter().any(|c| c == column)];
                            " " (heading)
                        }
                    }
                }
            }
            div.actions {
                button.primary type="submit" { "Search" }
                a.button href="/search" { "Reset" }
            }
        }
    }
}

/// The whole result, streamed as CSV or JSON Lines (formulas neutralised in CSV).
pub(crate) async fn export(
    State(console): State<Console>,
    signed: Signed,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let form = SearchForm::parse(raw.as_deref(), &["format"])?;
    let format = url::form_urlencoded::parse(raw.as_deref().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| "csv".into());
    let (format, content_type, extension) = match format.as_str() {
        "csv" => (Format::Csv, "text/csv; charset=utf-8", "csv"),
        "jsonl" => (Format::Jsonl, "application/x-ndjson", "jsonl"),
        other => return Err(ConsoleError::BadRequest(format!("format {other:?}: use csv or jsonl"))),
    };
    let query =
        form.first_page().query(Utc::now().timestamp_millis()).map_err(|e| ConsoleError::BadRequest(e.join(" ")))?;
    let slot = console.exports.take(&format!("console {}", signed.0.account.username)).ok_or_else(|| {
        ConsoleError::BadRequest("Too many exports are running. Wait for one to finish and try again.".into())
    })?;
    let who = actor(&signed.0.account);
    let target = form.first_page().link(|_| {});
    db(&console, move |s| s.audit(&who, "search.export", &target)).await?;
    let columns = (format == Format::Csv).then(|| form.columns.clone());
    let body = crate::api::export::stream(console.store.clone(), query, format, columns, slot, String::new());
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"tripline-downloads-{stamp}.{extension}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

pub(crate) async fn save(
    State(console): State<Console>,
    signed: Signed,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["name", "query"])?;
    let name = form.text("name").trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ConsoleError::BadRequest("A saved search needs a name of 1 to 100 characters.".into()));
    }
    // What is saved must be a search this page can read back.
    let query = form.text("query");
    SearchForm::parse(Some(&query), &[])?;
    let owner = actor(&signed.0.account);
    let stored = query.clone();
    db(&console, move |s| s.save_search(&name, &stored, &owner)).await?;
    Ok(Redirect::to(&format!("/search?{query}")).into_response())
}

/// Every field of one download, its chunks and the raw Salesforce events.
pub(crate) async fn event(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Markup, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    // The search it was opened from, to go back to.
    let back = SearchForm::parse(raw.as_deref(), &[]).map(|f| f.link(|_| {})).unwrap_or_default();
    let key = id.clone();
    let (e, connection) = db(&console, move |s| {
        let e = s.file_event(&key)?.ok_or_else(|| crate::store::StoreError::NotFound(format!("download {key}")))?;
        let connection = s.connection(&e.connection_id).ok().map(|c| c.display_name);
        Ok((e, connection))
    })
    .await?;
    let user_search = search_link(&[(Field::UserId, Comparison::Is, e.user_id.as_str())], Range::Quarter);
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let facts: Vec<(&str, Markup)> = vec![
        ("Time", page::time(e.observed_at)),
        ("Stored", page::time(e.ingested_at)),
        ("User", html! { (opt(&e.username)) " · " a href=(user_search) { "all downloads by this user" } }),
        ("Email", html! { (opt(&e.email)) }),
        ("Name", html! { (opt(&e.user_name)) }),
        ("Salesforce user ID", html! { code { (e.user_id.as_str()) } }),
        ("Attribution", html! { (e.attribution.as_str()) }),
        ("Report", html! { (opt(&e.report_name)) }),
        ("Report ID", html! { (opt(&e.report_id)) }),
        ("Report description", html! { (opt(&e.report_description)) }),
        ("Report type", html! { (e.report_type.map(|t| t.as_str()).unwrap_or("—")) }),
        ("Rows", html! { (page::thousands(e.rows.max(0) as u64)) " rows" }),
        ("Columns", html! { (opt(&e.columns)) }),
        ("Queried entities", html! { (opt(&e.queried_entities)) }),
        ("Format", html! { (opt(&e.export_format)) " (report format " (opt(&e.report_format)) ")" }),
        ("Operation", html! { (opt(&e.operation)) }),
        ("File name", html! { (e.file_name) }),
        ("Destination", html! { (destination_label(e.destination)) }),
        ("Source IP", html! { (opt(&e.source_ip)) }),
        ("Browser / platform", html! { (opt(&e.browser)) " / " (opt(&e.platform)) }),
        ("Location", html! { (opt(&e.city)) ", " (opt(&e.country)) }),
        ("Severity", html! { (severity_badge(e.severity)) " (score " (e.risk_score) ")" }),
        (
            "Risk indicators",
            html! { @if e.indicators.is_empty() { "None" } @else { @for i in &e.indicators { code { (i.as_str()) } " " } } },
        ),
        ("Data connection", html! { (connection.unwrap_or_else(|| e.connection_id.clone())) }),
        ("Execution ID", html! { (opt(&e.execution_id)) }),
        ("Session key", html! { (opt(&e.session_key)) }),
        ("Event ID", html! { code { (e.id) } }),
    ];
    Ok(page::shell(
        &frame,
        Nav::Search,
        "Download",
        html! {
            div.crumbs { a href={ "/search?" (back) } { "Forensic Search" } " › Download" }
            div.page-head {
                div {
                    h1 { (e.report_name.clone().unwrap_or_else(|| "(unnamed report)".into())) }
                    p { (opt(&e.username)) " · " (page::thousands(e.rows.max(0) as u64)) " rows · " (page::time(e.observed_at)) }
                }
                (severity_badge(e.severity))
            }
            div.grid.even {
                section.panel {
                    h2 { "Download" }
                    dl.facts { @for (label, value) in &facts { dt { (label) } dd { (value) } } }
                }
                section.panel {
                    h2 { "Salesforce events (" (e.raw.len()) @if e.raw.len() == 1 { " chunk" } @else { " chunks" } ")" }
                    p.hint { "As received from ReportEventStream (or the stored ReportEvent object), one per chunk of the export." }
                    @for (i, raw) in e.raw.iter().enumerate() {
                        h3 { "Chunk " (i + 1) }
                        pre.raw { (pretty(raw.get())) }
                    }
                }
            }
        },
    ))
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_owned())
}

/// Deletes a saved search (its owner or an admin).
pub(crate) async fn delete_saved(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    let me = actor(&signed.0.account);
    let admin = signed.0.account.role.includes(Role::Admin);
    db(&console, move |s| {
        let saved = s.saved_searches()?;
        let target = saved
            .iter()
            .find(|x| x.id == id)
            .ok_or_else(|| crate::store::StoreError::NotFound(format!("saved search {id}")))?;
        if target.owner != me && !admin {
            return Err(crate::store::StoreError::Conflict(
                "Only its owner or an admin can delete a saved search.".into(),
            ));
        }
        s.delete_saved_search(id)?;
        s.audit(&me, "search.delete", &target.name)
    })
    .await?;
    Ok(Redirect::to("/search").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(query: &str) -> SearchForm {
        SearchForm::parse(Some(query), &[]).expect("parses")
    }

    #[test]
    fn conditions_of_a_group_are_any_and_groups_are_all() {
        let f = form(
            "range=24h&g=A&f=username&o=is&v=a%40x&g=B&f=rows&o=above&v=1%2C000&g=A&f=email&o=matches&v=*%40y&g=A&f=&o=is&v=",
        );
        let q = f.query(1_000_000_000).expect("valid");
        assert_eq!(q.to_ms - q.from_ms, 86_400_000 + 1);
        let Filter::All(groups) = q.filter else { panic!("all") };
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[0],
            Filter::Any(vec![
                Filter::Term { field: Field::Username, op: Op::Is("a@x".into()) },
                Filter::Term { field: Field::Email, op: Op::Matches("*@y".into()) },
            ])
        );
        assert_eq!(groups[1], Filter::Term { field: Field::Rows, op: Op::Greater(1000.0) });
    }

    #[test]
    fn what_cannot_run_is_named_and_unknown_parameters_are_refused() {
        let errors = form(
            "range=custom&from=2026-11-02T00:00&to=2026-11-01T00:00&g=A&f=rows&o=above&v=many&g=A&f=email&o=is&v=",
        )
        .query(0)
        .expect_err("refused");
        assert!(errors.iter().any(|e| e.contains("From must be before To")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("Condition 1 (Rows): \"many\" is not a number")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("Condition 2 (Email): enter a value")), "{errors:?}");
        assert!(SearchForm::parse(Some("range=7d&limit=5"), &[]).is_err());
        assert!(SearchForm::parse(Some("col=password"), &[]).is_err());
        assert!(SearchForm::parse(Some("g=A&f=rows"), &[]).is_err(), "a condition comes whole");
    }

    #[test]
    fn a_link_reproduces_the_search() {
        let f = form(
            "range=custom&from=2026-11-01T00:00&to=2026-11-02T00:00&g=B&f=report_name&o=matches&v=*Pipe%26line*&sort=observed_at&dir=asc&col=time&col=rows",
        );
        let again = form(&f.link(|_| {}));
        assert_eq!(again.query(5).expect("valid"), f.query(5).expect("valid"));
        assert_eq!(again.columns, ["time", "rows"]);
    }
}
