//! Risk settings (each indicator's score, working hours and time zone, sensitive
//! objects, severity thresholds) and the watch lists.

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};

use super::auth::actor;
use super::page::{self, AlertsTab, Frame, Nav};
use super::{Console, ConsoleError, FormData, Signed, db};
use crate::connector::scope_csv::WatchCsv;
use crate::risk::{MAX_SCORE, RiskIndicator, RiskSettings, SeverityThresholds, TimeZone, WatchEntry, WatchKind};

/// Reads the settings and watch lists again into the policy every connector uses.
async fn reload(console: &Console) -> Result<(), ConsoleError> {
    let policy = db(console, crate::alerting::policy).await?;
    console.risk.replace(policy);
    Ok(())
}

pub(crate) async fn settings_page(State(console): State<Console>, signed: Signed) -> Result<Response, ConsoleError> {
    let settings = db(&console, |s| s.risk_settings()).await?;
    render(&console, &signed, &settings, &[], None, StatusCode::OK).await
}

async fn render(
    console: &Console,
    signed: &Signed,
    s: &RiskSettings,
    errors: &[String],
    notice: Option<Markup>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let frame = Frame::load(console, signed).await?;
    let t = s.thresholds;
    let body = html! {
        div.page-head {
            div {
                h1 { "Risk settings" }
                p { "Each download gets the indicators it shows; their scores add up to its risk score, and the score gives its severity. Changes apply to downloads stored from now on: stored downloads keep the risk they were given." }
            }
        }
        (page::alerts_tabs(&frame, AlertsTab::Risk))
        @if let Some(n) = notice { (n) }
        @if !errors.is_empty() {
            div.errors role="alert" #errors { "Nothing changed:" ul { @for e in errors { li { (e) } } } }
        }
        form.stack.wide #risk-form method="post" action="/risk" {
            (frame.csrf_field())
            div.grid.even {
                section.panel {
                    h2 { "Indicator scores" }
                    p.hint { "0 turns an indicator off; at most " (MAX_SCORE) "." }
                    div.table-wrap {
                        table #scores {
                            thead { tr { th { "Indicator" } th.num { "Score" } } }
                            tbody {
                                @for i in RiskIndicator::ALL {
                                    tr {
                                        td { label.plain for={ "score-" (i.as_str()) } { (i.label()) } }
                                        td.num.score {
                                            input id={ "score-" (i.as_str()) } type="number" min="0" max=(MAX_SCORE) name={ "score-" (i.as_str()) } value=(s.scores.get(i).copied().unwrap_or(0));
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                div {
                    section.panel {
                        h2 { "Severity from the score" }
                        div.fields {
                            @for (name, label, value) in [("low", "Low from", t.low), ("moderate", "Moderate from", t.moderate), ("high", "High from", t.high), ("critical", "Critical from", t.critical)] {
                                div {
                                    label for={ "t-" (name) } { (label) }
                                    input id={ "t-" (name) } type="number" min="1" name={ "threshold-" (name) } value=(value);
                                }
                            }
                        }
                        p.hint { "A score below the low threshold is no risk." }
                    }
                    section.panel {
                        h2 { "What the indicators look at" }
                        div.fields {
                            div {
                                label for="large_export_rows" { "Large export: rows at least" }
                                input #large_export_rows type="number" min="1" name="large_export_rows" value=(s.large_export_rows);
                            }
                            div {
                                label for="time_zone" { "Time zone of working hours" }
                                input #time_zone type="text" name="time_zone" value=(s.time_zone.0.name()) list="zones" autocomplete="off";
                                datalist #zones {
                                    @for z in chrono_tz::TZ_VARIANTS { option value=(z.name()) {} }
                                }
                            }
                            div {
                                label for="work_starts" { "Working hours start (hour)" }
                                input #work_starts type="number" min="0" max="23" name="work_starts" value=(s.work_starts);
                            }
                            div {
                                label for="work_ends" { "Working hours end (hour)" }
                                input #work_ends type="number" min="1" max="24" name="work_ends" value=(s.work_ends);
                            }
                        }
                        label.check.spaced { input type="checkbox" name="weekends_off" value="yes" checked[s.weekends_off]; "Saturdays and Sundays are off hours" }
                        div.spaced {
                            label for="sensitive_objects" { "Sensitive objects" }
                            input #sensitive_objects type="text" name="sensitive_objects" value=(s.sensitive_objects.join(", "));
                            div.hint { "API names, comma-separated: a report querying any of them carries “Sensitive objects”." }
                        }
                    }
                }
            }
            div.actions { button.primary type="submit" { "Save risk settings" } }
        }
    };
    Ok((status, page::shell(&frame, Nav::Alerts, "Risk settings", body)).into_response())
}

pub(crate) async fn save_settings(
    State(console): State<Console>,
    signed: Signed,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let mut known: Vec<String> = RiskIndicator::ALL.iter().map(|i| format!("score-{}", i.as_str())).collect();
    known.extend(
        [
            "threshold-low",
            "threshold-moderate",
            "threshold-high",
            "threshold-critical",
            "large_export_rows",
            "time_zone",
            "work_starts",
            "work_ends",
            "weekends_off",
            "sensitive_objects",
        ]
        .map(str::to_owned),
    );
    let names: Vec<&str> = known.iter().map(String::as_str).collect();
    let form = FormData::parse(&body, &names)?;
    let mut errors = Vec::new();
    let mut number = |field: &str, label: &str| -> u32 {
        form.text(field).trim().parse::<u32>().unwrap_or_else(|_| {
            errors.push(format!("{label}: enter a whole number."));
            0
        })
    };
    let mut settings = RiskSettings {
        scores: RiskIndicator::ALL.iter().map(|i| (*i, number(&format!("score-{}", i.as_str()), i.label()))).collect(),
        large_export_rows: i64::from(number("large_export_rows", "Large export rows")),
        time_zone: TimeZone(chrono_tz::UTC),
        work_starts: number("work_starts", "Working hours start"),
        work_ends: number("work_ends", "Working hours end"),
        weekends_off: form.get("weekends_off") == Some("yes"),
        sensitive_objects: form
            .text("sensitive_objects")
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect(),
        thresholds: SeverityThresholds {
            low: number("threshold-low", "Low threshold"),
            moderate: number("threshold-moderate", "Moderate threshold"),
            high: number("threshold-high", "High threshold"),
            critical: number("threshold-critical", "Critical threshold"),
        },
    };
    match TimeZone::parse(&form.text("time_zone")) {
        Ok(zone) => settings.time_zone = zone,
        Err(m) => errors.push(m),
    }
    errors.extend(settings.problems().iter().map(|p| page::sentence(p)));
    if !errors.is_empty() {
        return render(&console, &signed, &settings, &errors, None, StatusCode::BAD_REQUEST).await;
    }
    let (who, saved) = (actor(&signed.0.account), settings.clone());
    db(&console, move |s| s.set_risk_settings(&saved, &who)).await?;
    reload(&console).await?;
    let notice = html! { div.notice.ok role="status" { "Saved. Downloads stored from now on are scored with these settings; stored downloads keep their risk." } };
    render(&console, &signed, &settings, &[], Some(notice), StatusCode::OK).await
}

pub(crate) async fn watchlists(State(console): State<Console>, signed: Signed) -> Result<Response, ConsoleError> {
    watch_page(&console, &signed, WatchKind::Departing, &[], None, StatusCode::OK).await
}

async fn watch_page(
    console: &Console,
    signed: &Signed,
    chosen: WatchKind,
    errors: &[String],
    notice: Option<Markup>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let frame = Frame::load(console, signed).await?;
    let entries = db(console, |s| s.watchlist()).await?;
    let today = Utc::now().date_naive();
    let body = html! {
        div.page-head {
            div {
                h1 { "Watch lists" }
                p { "Downloads by people on a list carry its risk indicator from now on; rules can match each list." }
            }
        }
        (page::alerts_tabs(&frame, AlertsTab::Watchlists))
        @if let Some(n) = notice { (n) }
        @if !errors.is_empty() {
            div.errors role="alert" #errors { "Nothing was added:" ul { @for e in errors { li { (e) } } } }
        }
        div.grid {
            div {
                @for kind in WatchKind::ALL {
                    section.panel {
                        h2 { (kind.label()) " " span.muted { "(" (entries.iter().filter(|e| e.kind == *kind).count()) ")" } }
                        @let listed: Vec<&WatchEntry> = entries.iter().filter(|e| e.kind == *kind).collect();
                        @if listed.is_empty() {
                            p.muted { "Nobody is on this list." }
                        } @else {
                            div.table-wrap {
                                table data-list=(kind.as_str()) {
                                    thead { tr {
                                        th { "Username" }
                                        @if *kind == WatchKind::Departing { th { "Departure" } }
                                        th { "Note" } th { "Added" }
                                        @if frame.is_admin() { th { span.visually-hidden { "Remove" } } }
                                    } }
                                    tbody {
                                        @for e in listed {
                                            tr {
                                                td { (e.username) }
                                                @if *kind == WatchKind::Departing {
                                                    td {
                                                        @if let Some(d) = e.departure {
                                                            (d.format("%Y-%m-%d"))
                                                            @if d < today { span.muted { " (left)" } }
                                                        } @else { span.muted { "—" } }
                                                    }
                                                }
                                                td.truncate title=[e.note.as_deref()] { (e.note.as_deref().unwrap_or("—")) }
                                                td { (page::time(e.added_at)) div.muted { (e.added_by) } }
                                                @if frame.is_admin() {
                                                    td {
                                                        form.inline method="post" action="/watchlists/remove" {
                                                            (frame.csrf_field())
                                                            input type="hidden" name="kind" value=(kind.as_str());
                                                            input type="hidden" name="username" value=(e.username);
                                                            button.link type="submit" aria-label={ "Remove " (e.username) } { "Remove" }
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
                }
            }
            @if frame.is_admin() {
                div {
                    section.panel {
                        h2 { "Add a person" }
                        form.stack #watch-add method="post" action="/watchlists" {
                            (frame.csrf_field())
                            div {
                                label for="w-kind" { "List" }
                                select #w-kind name="kind" { @for k in WatchKind::ALL { option value=(k.as_str()) selected[*k == chosen] { (k.label()) } } }
                            }
                            div {
                                label for="w-username" { "Salesforce username" }
                                input #w-username type="text" name="username" required maxlength="255" autocomplete="off";
                            }
                            div {
                                label for="w-departure" { "Departure date (departing employees)" }
                                input #w-departure type="date" name="departure";
                            }
                            div {
                                label for="w-note" { "Note" }
                                input #w-note type="text" name="note" maxlength="255";
                            }
                            button.primary type="submit" { "Add" }
                        }
                    }
                    section.panel {
                        h2 { "Upload a CSV" }
                        p.hint { "One username per line, then optionally the departure date (YYYY-MM-DD) and a note. A header line is fine; UTF-8." }
                        form.stack #watch-upload method="post" action="/watchlists/upload" enctype="multipart/form-data" {
                            (frame.csrf_field())
                            div {
                                label for="u-kind" { "List" }
                                select #u-kind name="kind" { @for k in WatchKind::ALL { option value=(k.as_str()) selected[*k == chosen] { (k.label()) } } }
                            }
                            div {
                                label for="u-file" { "CSV file" }
                                input #u-file type="file" name="file" accept=".csv,text/csv" required;
                            }
                            button type="submit" { "Upload" }
                        }
                    }
                }
            }
        }
    };
    Ok((status, page::shell(&frame, Nav::Alerts, "Watch lists", body)).into_response())
}

fn kind(text: &str) -> Result<WatchKind, ConsoleError> {
    text.parse().map_err(|e: crate::named::UnknownName| ConsoleError::BadRequest(e.to_string()))
}

async fn add(
    console: &Console,
    signed: &Signed,
    kind: WatchKind,
    entries: Vec<WatchEntry>,
) -> Result<Response, ConsoleError> {
    let (who, n) = (actor(&signed.0.account), entries.len());
    let added = db(console, move |s| s.add_watch_entries(&entries, &who)).await?;
    reload(console).await?;
    let people =
        |n: usize| if n == 1 { "1 person".to_owned() } else { format!("{} people", page::thousands(n as u64)) };
    let notice = html! { div.notice.ok role="status" { (people(added)) " added" @if n > added { ", " (people(n - added)) " already listed (updated)" } "." } };
    watch_page(console, signed, kind, &[], Some(notice), StatusCode::OK).await
}

pub(crate) async fn add_watch(
    State(console): State<Console>,
    signed: Signed,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["kind", "username", "departure", "note"])?;
    let kind = kind(&form.text("kind"))?;
    let username = form.text("username").trim().to_lowercase();
    let mut errors = Vec::new();
    errors.extend(crate::connector::scope_csv::username_problem(&username).map(|p| page::sentence(&p)));
    let departure = match form.text("departure").trim() {
        "" => None,
        text => match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => {
                errors.push(format!("{text:?} is not a date."));
                None
            }
        },
    };
    if !errors.is_empty() {
        return watch_page(&console, &signed, kind, &errors, None, StatusCode::BAD_REQUEST).await;
    }
    let note = Some(form.text("note").trim().to_owned()).filter(|n| !n.is_empty());
    let entry = WatchEntry {
        kind,
        username,
        departure,
        note,
        added_at: Utc::now().timestamp_millis(),
        added_by: actor(&signed.0.account),
    };
    add(&console, &signed, kind, vec![entry]).await
}

pub(crate) async fn upload_watch(
    State(console): State<Console>,
    signed: Signed,
    form: Multipart,
) -> Result<Response, ConsoleError> {
    let form = super::wizard::read_form(form, &["kind"]).await?;
    let kind = kind(form.fields.get("kind").map(String::as_str).unwrap_or_default())?;
    let Some((file_name, bytes)) = form.file else {
        let errors = ["Choose a CSV file.".to_owned()];
        return watch_page(&console, &signed, kind, &errors, None, StatusCode::BAD_REQUEST).await;
    };
    let csv = match WatchCsv::parse(&bytes) {
        Ok(csv) => csv,
        Err(e) => {
            return watch_page(&console, &signed, kind, &e.messages(&file_name), None, StatusCode::BAD_REQUEST).await;
        }
    };
    let (now, who) = (Utc::now().timestamp_millis(), actor(&signed.0.account));
    let entries = csv
        .entries
        .into_iter()
        .map(|(_, username, departure, note)| WatchEntry {
            kind,
            username,
            departure,
            note,
            added_at: now,
            added_by: who.clone(),
        })
        .collect();
    add(&console, &signed, kind, entries).await
}

pub(crate) async fn remove_watch(
    State(console): State<Console>,
    signed: Signed,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["kind", "username"])?;
    let (kind, username, who) = (kind(&form.text("kind"))?, form.text("username"), actor(&signed.0.account));
    db(&console, move |s| s.remove_watch_entry(kind, &username, &who)).await?;
    reload(&console).await?;
    Ok(Redirect::to("/watchlists").into_response())
}
