//! The frame of every page (navigation, the Error banner, who is signed in) and the
//! small pieces pages share: times, numbers, status badges, the CSRF field.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::alerts::AlertPulse;
use super::{Console, ConsoleError, Signed, db};
use crate::access::{Account, Role};
use crate::connection::{ConnectionStatus, ProblemSource};

/// A connection in Error, as the banner names it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Broken {
    pub id: String,
    pub name: String,
    pub message: String,
}

/// What every signed-in page shows around its content.
pub(crate) struct Frame {
    pub account: Account,
    pub csrf: String,
    pub broken: Vec<Broken>,
    /// For those who see alerts.
    pub alerts: Option<AlertPulse>,
}

impl Frame {
    pub async fn load(console: &Console, signed: &Signed) -> Result<Frame, ConsoleError> {
        let analyst = signed.0.account.role.includes(Role::Analyst);
        let (connections, alerts) =
            db(console, move |s| Ok((s.connections()?, analyst.then(|| AlertPulse::read(s)).transpose()?))).await?;
        let broken = connections.into_iter().filter_map(broken).collect();
        Ok(Frame { account: signed.0.account.clone(), csrf: signed.0.csrf.clone(), broken, alerts })
    }

    pub fn is_admin(&self) -> bool {
        self.account.role.includes(Role::Admin)
    }

    /// The hidden field every form carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

/// The banner entry of a connection in Error (none otherwise).
pub(crate) fn broken(c: crate::connection::ConnectionRecord) -> Option<Broken> {
    (c.status == ConnectionStatus::Error).then(|| Broken {
        message: c
            .status_detail
            .and_then(|d| d.problems.into_iter().next())
            .map(|p| format!("{}: {}", source_label(p.source), p.message))
            .unwrap_or_else(|| "the cause is not known yet".into()),
        id: c.id,
        name: c.display_name,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Dashboard,
    Alerts,
    Search,
    Users,
    Connections,
    Accounts,
    Tokens,
    Audit,
    Settings,
    Account,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Tripline" }
            link rel="stylesheet" href=(super::assets::STYLESHEET);
            link rel="icon" href=(super::assets::ICON);
            script src=(super::assets::SCRIPT) defer {}
        }
    }
}

fn brand() -> Markup {
    html! {
        a.brand href="/" {
            img src=(super::assets::ICON) alt="" width="22" height="22";
            span { "Tripline" }
        }
    }
}

/// A signed-in page: navigation, the Error banner, then `body`.
pub(crate) fn shell(frame: &Frame, nav: Nav, title: &str, body: Markup) -> Markup {
    let item = |target: Nav, href: &str, label: &str| {
        html! {
            a href=(href) aria-current=[(nav == target).then_some("page")] { (label) }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.topbar {
                    (brand())
                    nav aria-label="Main" {
                        (item(Nav::Dashboard, "/", "Dashboard"))
                        @if frame.account.role.includes(Role::Analyst) {
                            a href="/alerts" aria-current=[(nav == Nav::Alerts).then_some("page")] {
                                "Alerts"
                                @let active = frame.alerts.map_or(0, |p| p.active);
                                span.nav-count #open-alerts hidden[active == 0] title="Open and in progress" {
                                    (thousands(active))
                                }
                            }
                            (item(Nav::Search, "/search", "Forensic Search"))
                            (item(Nav::Users, "/users", "Users"))
                        }
                        @if frame.is_admin() {
                            span.nav-group { "Administration" }
                            (item(Nav::Connections, "/admin/connections", "Data Connections"))
                            (item(Nav::Accounts, "/admin/accounts", "Accounts"))
                            (item(Nav::Tokens, "/admin/tokens", "API tokens"))
                            (item(Nav::Audit, "/admin/audit", "Audit log"))
                            (item(Nav::Settings, "/admin/settings", "Settings"))
                        }
                    }
                    div.who {
                        a.who-link href="/account" aria-current=[(nav == Nav::Account).then_some("page")] {
                            (frame.account.username) " "
                            span.role { (frame.account.role.label()) }
                        }
                        form method="post" action="/logout" {
                            (frame.csrf_field())
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                div #banner aria-live="polite" data-live="/live" data-admin=(frame.is_admin()) {
                    (banner(&frame.broken, frame.is_admin()))
                }
                main #main {
                    (body)
                }
            }
        }
    }
}

/// The pages of the Alerts section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AlertsTab {
    Alerts,
    Rules,
    Uncovered,
    Risk,
    Watchlists,
    Channels,
}

/// The Alerts section's tabs (admin pages for admins only).
pub(crate) fn alerts_tabs(frame: &Frame, current: AlertsTab) -> Markup {
    let tab = |target: AlertsTab, href: &str, label: &str| {
        html! { a href=(href) aria-current=[(current == target).then_some("page")] { (label) } }
    };
    html! {
        nav.tabs aria-label="Alerts" {
            (tab(AlertsTab::Alerts, "/alerts", "Alerts"))
            (tab(AlertsTab::Rules, "/rules", "Rules"))
            (tab(AlertsTab::Uncovered, "/rules/uncovered", "Risks not covered"))
            @if frame.is_admin() { (tab(AlertsTab::Risk, "/risk", "Risk settings")) }
            (tab(AlertsTab::Watchlists, "/watchlists", "Watch lists"))
            @if frame.is_admin() { (tab(AlertsTab::Channels, "/channels", "Notification channels")) }
        }
    }
}

/// The red banner naming each connection in Error.
pub(crate) fn banner(broken: &[Broken], links: bool) -> Markup {
    html! {
        @for b in broken {
            div.banner role="alert" {
                span.icon aria-hidden="true" { "!" }
                span {
                    strong { "Data connection “" (b.name) "” is in Error. " }
                    (b.message)
                }
                @if links {
                    a href={ "/admin/connections/" (b.id) } { "View details" }
                }
            }
        }
    }
}

/// A page outside the signed-in frame (sign-in, setup, errors): one centred card.
pub(crate) fn card_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main #main.card {
                    div.card-brand { (brand()) }
                    (body)
                }
            }
        }
    }
}

pub(crate) fn message_page(title: &str, message: &str) -> Markup {
    card_page(
        title,
        html! {
            h1 { (title) }
            p { (message) }
            p { a href="/" { "Go to the console" } }
        },
    )
}

/// A time: UTC in the page, shown in the viewer's zone by the script, UTC on hover.
pub(crate) fn time(ms: i64) -> Markup {
    let Some(at) = DateTime::<Utc>::from_timestamp_millis(ms) else { return html! { "-" } };
    html! {
        time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            title=(at.format("%Y-%m-%d %H:%M:%S UTC")) {
            (at.format("%Y-%m-%d %H:%M:%S UTC"))
        }
    }
}

/// "3 min ago", always beside an absolute time.
pub(crate) fn ago(ms: i64, now: i64) -> String {
    let s = ((now - ms) / 1000).max(0);
    match s {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// 1234567 → "1,234,567".
pub(crate) fn thousands(n: u64) -> String {
    crate::alerts::notify::thousands(n.min(i64::MAX as u64) as i64)
}

/// A message from the domain (which starts in lower case, to be joined into others)
/// as a sentence on its own.
pub(crate) fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// "1 user", "1,234 users".
pub(crate) fn count(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{} {noun}s", thousands(n)) }
}

pub(crate) fn status_label(status: ConnectionStatus) -> &'static str {
    match status {
        ConnectionStatus::Initializing => "Initializing",
        ConnectionStatus::Monitoring => "Monitoring",
        ConnectionStatus::Error => "Error",
        ConnectionStatus::Paused => "Paused",
        ConnectionStatus::Deauthorized => "Deauthorized",
    }
}

/// The status word with its colour and a shape, the same everywhere.
pub(crate) fn status_badge(status: ConnectionStatus) -> Markup {
    html! {
        span class={ "badge status-" (status.as_str()) } data-status=(status.as_str()) {
            span.dot aria-hidden="true" {}
            (status_label(status))
        }
    }
}

pub(crate) fn source_label(source: ProblemSource) -> &'static str {
    match source {
        ProblemSource::ServiceAccount => "Service account",
        ProblemSource::Permissions => "Permissions",
        ProblemSource::Licence => "Event Monitoring licence",
        ProblemSource::EventManager => "Event Manager",
        ProblemSource::Token => "Authorization",
        ProblemSource::ApiLimits => "API limits",
        ProblemSource::Network => "Network",
        ProblemSource::EventStream => "Event stream",
        ProblemSource::Configuration => "Tripline configuration",
        ProblemSource::Storage => "Tripline database",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(123_349), "123,349");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }
}
