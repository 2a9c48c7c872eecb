//! The dashboard (every role): downloads over time by destination, rows exported, top
//! exporting users and reports, downloads to unmonitored devices, the severity mix and
//! connection health, for a chosen range. Figures come from the hourly counts the
//! aggregator keeps, so the page costs the same at ten million events as at ten.
//! Charts are SVG drawn here; every bar and figure links to the search behind it.

use axum::extract::{Query, State};
use chrono::Utc;
use maud::{Markup, html};

use super::page::{self, Frame, Nav};
use super::search::{Comparison, Range, search_link_within, severity_badge, severity_label};
use super::{Console, ConsoleError, Signed, db};
use crate::access::Role;
use crate::connection::ConnectionStatus;
use crate::risk::Severity;
use crate::search::Field;
use crate::store::{HourCount, Ranked};

const HOUR: i64 = 3_600_000;

crate::named::named_enum! {
    /// The dashboard's ranges.
    pub(crate) enum Span ("dashboard range") {
        Day = "24h",
        Week = "7d",
        Month = "30d",
    }
}

impl Span {
    fn hours(self) -> i64 {
        match self {
            Span::Day => 24,
            Span::Week => 7 * 24,
            Span::Month => 30 * 24,
        }
    }

    /// Hours per bar.
    fn bucket_hours(self) -> i64 {
        match self {
            Span::Day => 1,
            Span::Week => 6,
            Span::Month => 24,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Span::Day => "Last 24 hours",
            Span::Week => "Last 7 days",
            Span::Month => "Last 30 days",
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DashboardQuery {
    range: Option<String>,
}

/// The counts of one bar's window.
struct Bucket {
    from: i64,
    to: i64,
    corporate: u64,
    unmonitored: u64,
    rows: u64,
}

fn buckets(hours: &[HourCount], from: i64, span: Span) -> Vec<Bucket> {
    let width = span.bucket_hours() * HOUR;
    let mut out: Vec<Bucket> = (0..span.hours() / span.bucket_hours())
        .map(|i| Bucket { from: from + i * width, to: from + (i + 1) * width, corporate: 0, unmonitored: 0, rows: 0 })
        .collect();
    for h in hours {
        let i = ((h.hour - from) / width) as usize;
        if let Some(b) = out.get_mut(i) {
            b.corporate += h.corporate;
            b.unmonitored += h.unmonitored;
            b.rows += h.rows;
        }
    }
    out
}

/// A round number at or above `n` for an axis top (1, 2, 5 × 10^k).
fn nice_max(n: u64) -> u64 {
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if step * m >= n.max(1) {
                return step * m;
            }
        }
        step *= 10;
    }
}

fn short(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{}k", n / 1_000),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

fn axis_time(ms: i64, span: Span) -> String {
    let at = chrono::DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    match span {
        Span::Day => at.format("%H:%M").to_string(),
        _ => at.format("%b %d").to_string(),
    }
}

/// Segments stacked: each non-empty one's (bottom, top) in running totals.
fn stack<T: Copy>(segments: &[(u64, T)]) -> Vec<(u64, u64, T)> {
    let mut base = 0;
    let mut out = Vec::new();
    for (value, tag) in segments {
        if *value > 0 {
            out.push((base, base + value, *tag));
        }
        base += value;
    }
    out
}

/// One bar of a time chart: its window, and its segments (value, CSS class).
pub(crate) struct Bar {
    pub from: i64,
    pub to: i64,
    pub segments: Vec<(u64, &'static str)>,
}

/// A bar chart over time; each bar's segments are (value, CSS class), and each bar
/// links to the search of its window.
pub(crate) fn time_chart(
    title: &str,
    bars: &[Bar],
    span: Span,
    legend: &[(&str, &str)],
    link: impl Fn(i64, i64) -> String,
) -> Markup {
    const W: f64 = 760.0;
    const H: f64 = 200.0;
    const LEFT: f64 = 44.0;
    const BOTTOM: f64 = 22.0;
    let top = nice_max(bars.iter().map(|b| b.segments.iter().map(|(v, _)| v).sum::<u64>()).max().unwrap_or(0));
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - BOTTOM - 8.0;
    let slot = plot_w / bars.len().max(1) as f64;
    let bar_w = (slot * 0.72).max(1.0);
    let y = |v: u64| 8.0 + plot_h - (v as f64 / top as f64) * plot_h;
    let label_every = (bars.len() / 6).max(1);
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
                @for frac in [0.0, 0.5, 1.0] {
                    @let v = (top as f64 * frac) as u64;
                    line.grid x1=(LEFT) x2=(W - 8.0) y1=(y(v)) y2=(y(v)) {}
                    text.axis x=(LEFT - 6.0) y=(y(v) + 4.0) text-anchor="end" { (short(v)) }
                }
                @for (i, Bar { from, to, segments }) in bars.iter().enumerate() {
                    @let x = LEFT + i as f64 * slot + (slot - bar_w) / 2.0;
                    @let total: u64 = segments.iter().map(|(v, _)| v).sum();
                    a href=(link(*from, *to)) {
                        title { (axis_time(*from, span)) ": " (page::thousands(total)) }
                        // An invisible full-height target keeps thin bars clickable.
                        rect.hit x=(x) y="8" width=(bar_w) height=(plot_h) {}
                        @for (low, high, class) in stack(segments) {
                            rect class=(class) x=(x) y=(y(high)) width=(bar_w) height=(y(low) - y(high)) {}
                        }
                    }
                    @if i % label_every == 0 {
                        text.axis x=(x + bar_w / 2.0) y=(H - 6.0) text-anchor="middle" { (axis_time(*from, span)) }
                    }
                }
            }
            @if !legend.is_empty() {
                ul.legend {
                    @for (class, label) in legend { li { span class={ "swatch " (class) } {} (label) } }
                }
            }
        }
    }
}

/// A top-N list as horizontal bars with the value printed, each linking to its search.
fn ranked_chart(title: &str, items: &[Ranked], link: impl Fn(&Ranked) -> String) -> Markup {
    let max = items.iter().map(|r| r.downloads).max().unwrap_or(1).max(1);
    html! {
        figure.chart.ranked {
            figcaption { (title) }
            @if items.is_empty() {
                p.muted { "No downloads in this range." }
            } @else {
                ol {
                    @for r in items {
                        li {
                            a href=(link(r)) {
                                span.rank-label title=(r.label) { (r.label) }
                                svg.rank-bar viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true" {
                                    rect.bar-main x="0" y="0" height="10" width=((r.downloads as f64 / max as f64 * 100.0).max(1.0)) {}
                                }
                                span.rank-value { (page::thousands(r.downloads)) " · " (page::thousands(r.rows)) " rows" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Alerts raised in the range by severity, and how many of them are still open.
fn alerts_table(counts: &[(Severity, u64, u64)], links: bool) -> Markup {
    html! {
        h3 { "Alerts by severity" }
        @if counts.is_empty() {
            p.muted { "No alerts raised in this range." }
        } @else {
            table.compact #dashboard-alerts {
                thead { tr { th { "Severity" } th.num { "Raised" } th.num { "Still open" } } }
                tbody {
                    @for (severity, all, open) in counts {
                        tr {
                            td {
                                @if links { a href={ "/alerts?state=all&severity=" (severity.as_str()) } { (severity_badge(*severity)) } }
                                @else { (severity_badge(*severity)) }
                            }
                            td.num { (page::thousands(*all)) }
                            td.num { (page::thousands(*open)) }
                        }
                    }
                }
            }
        }
    }
}

fn severity_chart(severities: &[(Severity, u64)], link: impl Fn(Severity) -> String) -> Markup {
    let total: u64 = severities.iter().map(|(_, n)| n).sum();
    html! {
        figure.chart {
            figcaption { "Severity mix" }
            @if total == 0 {
                p.muted { "No downloads in this range." }
            } @else {
                svg.mix viewBox="0 0 100 8" preserveAspectRatio="none" role="img" aria-label="Downloads by severity" {
                    @let segments: Vec<(u64, Severity)> = severities.iter().map(|(s, n)| (*n, *s)).collect();
                    @for (low, high, severity) in stack(&segments) {
                        a href=(link(severity)) {
                            title { (severity_label(severity)) ": " (page::thousands(high - low)) }
                            rect class={ "fill-" (severity.as_str()) } x=(low as f64 / total as f64 * 100.0) y="0"
                                width=((high - low) as f64 / total as f64 * 100.0) height="8" {}
                        }
                    }
                }
                ul.legend {
                    @for (severity, n) in severities {
                        li {
                            a href=(link(*severity)) {
                                span class={ "swatch fill-" (severity.as_str()) } {}
                                (severity_label(*severity)) " " strong { (page::thousands(*n)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) async fn page(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<DashboardQuery>,
) -> Result<Markup, ConsoleError> {
    let span: Span = query
        .range
        .as_deref()
        .unwrap_or("24h")
        .parse()
        .map_err(|e: crate::named::UnknownName| ConsoleError::BadRequest(e.to_string()))?;
    let frame = Frame::load(&console, &signed).await?;
    let now = Utc::now().timestamp_millis();
    // Whole buckets ending with the current one; a week or a month is whole UTC days.
    let width = if span == Span::Day { HOUR } else { 24 * HOUR };
    let to = (now.div_euclid(width) + 1) * width;
    let from = to - span.hours() * HOUR;
    let (figures, connections, alerts) =
        db(&console, move |s| Ok((s.dashboard(from, to, 8)?, s.connections()?, s.alert_counts(from, to)?))).await?;
    let open_alerts: u64 = alerts.iter().map(|(_, _, open)| open).sum();
    let bars = buckets(&figures.hours, from, span);
    let downloads: u64 = bars.iter().map(|b| b.corporate + b.unmonitored).sum();
    let unmonitored: u64 = bars.iter().map(|b| b.unmonitored).sum();
    let rows: u64 = bars.iter().map(|b| b.rows).sum();
    let risky: u64 = figures
        .severities
        .iter()
        .filter(|(s, _)| matches!(s, Severity::High | Severity::Critical))
        .map(|(_, n)| n)
        .sum();
    let analyst = frame.account.role.includes(Role::Analyst);
    let window = Some((from, to));
    let search = |conditions: &[(Field, Comparison, &str)], window: Option<(i64, i64)>| {
        if analyst { search_link_within(conditions, Range::Custom, window) } else { "#".to_owned() }
    };
    let healthy = connections.iter().filter(|c| c.status == ConnectionStatus::Monitoring).count();
    Ok(page::shell(
        &frame,
        Nav::Dashboard,
        "Dashboard",
        html! {
            div.page-head {
                div {
                    h1 { "Dashboard" }
                    p { "Salesforce report downloads, " (span.label().to_lowercase()) " (UTC hours). Counts settle within seconds of a download." }
                }
                nav.segmented aria-label="Time range" {
                    @for s in Span::ALL {
                        a href={ "/?range=" (s.as_str()) } aria-current=[(*s == span).then_some("page")] { (s.label()) }
                    }
                }
            }
            div.kpis {
                a.kpi href=(search(&[], window)) {
                    div.label { "Report downloads" } div.value { (page::thousands(downloads)) }
                }
                a.kpi href=(search(&[], window)) {
                    div.label { "Rows exported" } div.value { (page::thousands(rows)) }
                }
                a.kpi href=(search(&[(Field::Destination, Comparison::Is, "unmonitored")], window)) {
                    div.label { "To unmonitored devices" } div.value { (page::thousands(unmonitored)) }
                }
                a.kpi href=(search(&[(Field::Severity, Comparison::AnyOf, "high,critical")], window)) {
                    div.label { "High or critical" } div.value { (page::thousands(risky)) }
                }
                a.kpi href=[analyst.then_some("/alerts")] {
                    div.label { "Open alerts raised" } div.value { (page::thousands(open_alerts)) }
                }
                a.kpi href=[frame.is_admin().then_some("/admin/connections")] {
                    div.label { "Connections monitoring" } div.value { (healthy) " of " (connections.len()) }
                }
            }
            @if !analyst {
                p.muted { "Your role shows the figures; an analyst can open the downloads behind them." }
            }
            div.panel {
                (time_chart(
                    "Report downloads by destination",
                    &bars.iter().map(|b| Bar { from: b.from, to: b.to, segments: vec![(b.corporate, "bar-main"), (b.unmonitored, "bar-alert")] }).collect::<Vec<_>>(),
                    span,
                    &[("bar-main", "Corporate"), ("bar-alert", "Unmonitored device")],
                    |f, t| search(&[], Some((f, t))),
                ))
            }
            div.grid.even {
                div.panel {
                    (time_chart(
                        "Rows exported",
                        &bars.iter().map(|b| Bar { from: b.from, to: b.to, segments: vec![(b.rows, "bar-rows")] }).collect::<Vec<_>>(),
                        span,
                        &[],
                        |f, t| search(&[], Some((f, t))),
                    ))
                }
                div.panel {
                    (severity_chart(&figures.severities, |s| search(&[(Field::Severity, Comparison::Is, s.as_str())], window)))
                    (alerts_table(&alerts, analyst))
                    h3 { "Connection health" }
                    @if connections.is_empty() {
                        p.muted { "No data connections yet." }
                    } @else {
                        ul.health {
                            @for c in &connections {
                                li {
                                    @if frame.is_admin() {
                                        a href={ "/admin/connections/" (c.id) } { (c.display_name) }
                                    } @else {
                                        (c.display_name)
                                    }
                                    " " (page::status_badge(c.status))
                                }
                            }
                        }
                    }
                }
            }
            div.grid.even {
                div.panel {
                    (ranked_chart("Top exporting users", &figures.top_users, |r| search(&[(Field::UserId, Comparison::Is, &r.key)], window)))
                }
                div.panel {
                    (ranked_chart("Top reports", &figures.top_reports, |r| {
                        let field = if r.key.starts_with(sfwire::id::prefix::REPORT) { Field::ReportId } else { Field::ReportName };
                        search(&[(field, Comparison::Is, &r.key)], window)
                    }))
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(12), 20);
        assert_eq!(nice_max(4_100), 5_000);
    }

    #[test]
    fn hours_fall_into_their_buckets() {
        let from = 1_000 * HOUR;
        let hours = [
            HourCount { hour: from, corporate: 2, unmonitored: 1, rows: 30 },
            HourCount { hour: from + 7 * HOUR, corporate: 1, unmonitored: 0, rows: 5 },
            HourCount { hour: from + 200 * HOUR, corporate: 9, unmonitored: 9, rows: 9 },
        ];
        let b = buckets(&hours, from, Span::Week);
        assert_eq!(b.len(), 28);
        assert_eq!((b[0].corporate, b[0].unmonitored, b[0].rows), (2, 1, 30));
        assert_eq!((b[1].corporate, b[1].rows), (1, 5));
        assert_eq!(b.iter().map(|x| x.corporate).sum::<u64>(), 3, "outside the range is left out");
    }
}
