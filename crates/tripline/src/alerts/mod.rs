//! Alerts: rules that pick risky file events out of the stream, the alerts they raise
//! (grouped per rule and user while a suppression window is open), their triage, and
//! the channels that carry them to people. Types and pure rules here; `engine` is the
//! evaluator shared by live alerting and back-tests, `notify` renders and sends
//! messages; `alerting` (beside this module) keeps both going in a server.

pub mod engine;
pub mod notify;
pub mod output;
pub mod recommended;
pub mod template;

use serde::{Deserialize, Serialize};

use crate::events::{Destination, FileEvent};
use crate::named::named_enum;
use crate::risk::{RiskIndicator, Severity, WatchKind};

named_enum! {
    /// Where an alert stands in triage.
    pub enum AlertState ("alert state") {
        Open = "open",
        InProgress = "in-progress",
        TruePositive = "true-positive",
        Benign = "benign",
        FalsePositive = "false-positive",
    }
}

impl AlertState {
    /// Closed alerts grow no more: a new burst opens a new alert.
    pub fn is_closed(self) -> bool {
        matches!(self, AlertState::TruePositive | AlertState::Benign | AlertState::FalsePositive)
    }

    pub fn label(self) -> &'static str {
        match self {
            AlertState::Open => "Open",
            AlertState::InProgress => "In progress",
            AlertState::TruePositive => "Closed: true positive",
            AlertState::Benign => "Closed: benign",
            AlertState::FalsePositive => "Closed: false positive",
        }
    }
}

named_enum! {
    /// The report `Operation`s that are downloads.
    pub enum ExportOperation ("export operation") {
        Exported = "ReportExported",
        Asynchronous = "ReportExportedAsynchronously",
        ExcelConnector = "ReportExportedUsingExcelConnector",
    }
}

/// "More than `exports` exports, or at least `rows` rows, by one user within
/// `window_minutes`" (either or both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub window_minutes: u32,
    pub exports: Option<u32>,
    pub rows: Option<i64>,
}

/// What a file event must be for a rule to match it: every condition set must hold
/// (lists match when the event has any of their values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Conditions {
    pub min_severity: Option<Severity>,
    pub indicators: Vec<RiskIndicator>,
    pub min_rows: Option<i64>,
    /// A report name pattern: `*` for any text, any case.
    pub report_name: Option<String>,
    /// Queried objects (API names, any case).
    pub queried_objects: Vec<String>,
    /// `ExportFileFormat`s (CSV, Excel...), any case.
    pub export_formats: Vec<String>,
    pub operations: Vec<ExportOperation>,
    pub destination: Option<Destination>,
    pub watch_lists: Vec<WatchKind>,
    /// Only these usernames (any case), when given.
    pub include_users: Vec<String>,
    /// Never these usernames (any case).
    pub exclude_users: Vec<String>,
    /// Only these data connections (ids), when given.
    pub connections: Vec<String>,
    /// Counted per user over a window instead of one event at a time.
    pub threshold: Option<Threshold>,
}

/// A rule as an admin defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: i64,
    pub name: String,
    pub description: String,
    /// The severity of the alerts it raises.
    pub severity: Severity,
    pub enabled: bool,
    pub conditions: Conditions,
    /// Channel ids its new alerts are sent to.
    pub channels: Vec<i64>,
    /// Matches of one user within this many minutes of the alert's last event join
    /// that alert instead of raising another (0: every match is an alert).
    pub suppress_minutes: u32,
    /// It applies to file events stored after this one (`seq`): set when enabled.
    pub active_from_seq: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

/// The parts of a rule a person edits (through the console or the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDraft {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub severity: Severity,
    #[serde(default)]
    pub conditions: Conditions,
    #[serde(default)]
    pub channels: Vec<i64>,
    #[serde(default = "default_suppression")]
    pub suppress_minutes: u32,
}

fn default_suppression() -> u32 {
    60
}

/// Longest window or suppression a rule may have: 7 days.
pub const MAX_MINUTES: u32 = 7 * 24 * 60;

impl RuleDraft {
    /// Everything wrong with the draft, worded for the person editing it.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let c = &self.conditions;
        if self.name.trim().is_empty() || self.name.len() > 120 {
            problems.push("a rule needs a name of at most 120 characters".into());
        }
        if self.description.len() > 2000 {
            problems.push("the description is at most 2,000 characters".into());
        }
        if self.severity == Severity::NoRisk {
            problems.push("an alert's severity is low, moderate, high or critical".into());
        }
        if self.suppress_minutes > MAX_MINUTES {
            problems.push(format!("suppression is at most {MAX_MINUTES} minutes (7 days)"));
        }
        if c.min_rows.is_some_and(|r| r < 0) {
            problems.push("rows cannot be negative".into());
        }
        if let Some(t) = &c.threshold {
            if t.window_minutes == 0 || t.window_minutes > MAX_MINUTES {
                problems.push(format!("the window is 1 to {MAX_MINUTES} minutes"));
            }
            if t.exports.is_none() && t.rows.is_none() {
                problems.push("a threshold counts exports, rows or both".into());
            }
            if t.rows.is_some_and(|r| r < 1) {
                problems.push("a rows threshold is at least 1".into());
            }
        }
        let unconditional = c.min_severity.is_none()
            && c.indicators.is_empty()
            && c.min_rows.is_none()
            && c.report_name.is_none()
            && c.queried_objects.is_empty()
            && c.export_formats.is_empty()
            && c.operations.is_empty()
            && c.destination.is_none()
            && c.watch_lists.is_empty()
            && c.include_users.is_empty()
            && c.threshold.is_none();
        if unconditional {
            problems.push("a rule needs at least one condition (otherwise every download is an alert)".into());
        }
        problems
    }
}

impl Conditions {
    /// Does one file event meet the per-event conditions (the threshold aside)?
    pub fn matches(&self, e: &FileEvent) -> bool {
        let username = e.username.as_deref().unwrap_or_default();
        let any_ci = |list: &[String], value: Option<&str>| {
            list.is_empty() || value.is_some_and(|v| list.iter().any(|x| x.eq_ignore_ascii_case(v)))
        };
        self.min_severity.is_none_or(|s| e.severity >= s)
            && (self.indicators.is_empty() || self.indicators.iter().any(|i| e.indicators.contains(i)))
            && self.min_rows.is_none_or(|r| e.rows >= r)
            && self.report_name.as_deref().is_none_or(|p| glob(p, e.report_name.as_deref().unwrap_or_default()))
            && (self.queried_objects.is_empty()
                || e.queried_entities.as_deref().is_some_and(|q| {
                    q.split(',').map(str::trim).any(|o| self.queried_objects.iter().any(|x| x.eq_ignore_ascii_case(o)))
                }))
            && any_ci(&self.export_formats, e.export_format.as_deref())
            && (self.operations.is_empty()
                || e.operation.as_deref().is_some_and(|op| self.operations.iter().any(|o| o.as_str() == op)))
            && self.destination.is_none_or(|d| e.destination == d)
            && (self.watch_lists.is_empty() || self.watch_lists.iter().any(|w| e.indicators.contains(&w.indicator())))
            && any_ci(&self.include_users, Some(username))
            && !self.exclude_users.iter().any(|x| x.eq_ignore_ascii_case(username))
            && (self.connections.is_empty() || self.connections.contains(&e.connection_id))
    }
}

impl Conditions {
    /// The conditions as a person reads them, one phrase each.
    pub fn describe(&self) -> Vec<String> {
        let list = |items: &[String]| items.join(", ");
        let mut out = Vec::new();
        if let Some(s) = self.min_severity {
            out.push(format!("Severity {} or higher", s.label().to_lowercase()));
        }
        if !self.indicators.is_empty() {
            let names: Vec<&str> = self.indicators.iter().map(|i| i.label()).collect();
            out.push(format!("Any of: {}", names.join(", ")));
        }
        if let Some(r) = self.min_rows {
            out.push(format!("At least {} rows", notify::thousands(r)));
        }
        if let Some(p) = &self.report_name {
            out.push(format!("Report name like \"{p}\""));
        }
        if !self.queried_objects.is_empty() {
            out.push(format!("Queries {}", list(&self.queried_objects)));
        }
        if !self.export_formats.is_empty() {
            out.push(format!("Format {}", list(&self.export_formats)));
        }
        if !self.operations.is_empty() {
            let ops: Vec<&str> = self.operations.iter().map(|o| o.as_str()).collect();
            out.push(format!("Operation {}", ops.join(", ")));
        }
        if let Some(d) = self.destination {
            out.push(match d {
                Destination::Unmonitored => "To an unmonitored device".to_owned(),
                Destination::Corporate => "From a corporate address".to_owned(),
            });
        }
        if !self.watch_lists.is_empty() {
            let lists: Vec<&str> = self.watch_lists.iter().map(|w| w.label()).collect();
            out.push(format!("On a watch list: {}", lists.join(", ")));
        }
        if !self.include_users.is_empty() {
            out.push(format!("Only {}", list(&self.include_users)));
        }
        if !self.exclude_users.is_empty() {
            out.push(format!("Except {}", list(&self.exclude_users)));
        }
        if !self.connections.is_empty() {
            out.push(format!("{} data connection(s) only", self.connections.len()));
        }
        if let Some(t) = &self.threshold {
            let mut parts = Vec::new();
            if let Some(k) = t.exports {
                parts.push(format!("more than {k} downloads"));
            }
            if let Some(r) = t.rows {
                parts.push(format!("{} rows or more", notify::thousands(r)));
            }
            out.push(format!("Per person: {} within {} min", parts.join(" or "), t.window_minutes));
        }
        out
    }
}

/// `*` matches any text; everything else itself, in any case.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.to_lowercase(), text.to_lowercase());
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// An alert: a rule's matches of one user, grouped while the suppression window is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Creation order (assigned by the store): `--checkpoint` and API paging follow it.
    pub seq: i64,
    pub id: String,
    pub rule_id: i64,
    pub rule_name: String,
    pub severity: Severity,
    pub connection_id: String,
    pub user_id: String,
    pub username: Option<String>,
    pub state: AlertState,
    pub assignee: Option<String>,
    /// The first and last contributing exports (observed).
    pub first_at: i64,
    pub last_at: i64,
    pub events: i64,
    pub rows: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A note on an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertNote {
    pub at: i64,
    pub author: String,
    pub text: String,
}

/// A change a person makes to an alert (each field given changes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertUpdate {
    pub state: Option<AlertState>,
    /// `Some("")` unassigns.
    pub assignee: Option<String>,
    pub note: Option<String>,
}

named_enum! {
    /// The order of an alert list.
    #[derive(Default)]
    pub enum AlertOrder ("order") {
        #[default]
        Newest = "newest",
        Oldest = "oldest",
        /// Most severe first, newest first among equals.
        Severity = "severity",
    }
}

impl AlertOrder {
    pub fn label(self) -> &'static str {
        match self {
            AlertOrder::Newest => "Newest first",
            AlertOrder::Oldest => "Oldest first",
            AlertOrder::Severity => "Most severe first",
        }
    }
}

/// Which alerts a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub states: Vec<AlertState>,
    pub min_severity: Option<Severity>,
    pub rule_id: Option<i64>,
    pub user: Option<String>,
    pub order: AlertOrder,
    /// Only alerts created after this one (`seq`), oldest first: the CLI's
    /// `--checkpoint` and API paging.
    pub after_seq: Option<i64>,
    pub limit: usize,
    pub offset: usize,
}

named_enum! {
    /// What a webhook's body looks like.
    pub enum WebhookBody ("webhook body") {
        /// Tripline's JSON document.
        Json = "json",
        /// `{"text": ...}` for a Slack incoming webhook.
        Slack = "slack",
        /// A message with an Adaptive Card for a Microsoft Teams workflow.
        Teams = "teams",
    }
}

named_enum! {
    pub enum SmtpSecurity ("SMTP security") {
        /// STARTTLS on a plain connection (port 587).
        StartTls = "starttls",
        /// TLS from the start (port 465).
        Tls = "tls",
        /// No encryption (a relay on the same host only).
        Plain = "none",
    }
}

named_enum! {
    pub enum SyslogTransport ("syslog transport") {
        Udp = "udp",
        Tcp = "tcp",
        Tls = "tls",
    }
}

named_enum! {
    pub enum SyslogFormat ("syslog format") {
        /// RFC 5424 with structured data.
        Rfc5424 = "rfc5424",
        /// ArcSight Common Event Format inside an RFC 5424 message.
        Cef = "cef",
    }
}

/// Where a channel sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Target {
    Webhook {
        url: String,
        /// The HMAC-SHA256 signing secret.
        secret: String,
        body: WebhookBody,
    },
    Email {
        host: String,
        port: u16,
        security: SmtpSecurity,
        username: Option<String>,
        password: Option<String>,
        from: String,
        to: Vec<String>,
        /// A private CA (PEM) to trust besides the public ones.
        ca_pem: Option<String>,
    },
    Syslog {
        host: String,
        port: u16,
        transport: SyslogTransport,
        format: SyslogFormat,
        /// A private CA (PEM) to trust besides the public ones (TLS).
        ca_pem: Option<String>,
    },
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Webhook { .. } => "webhook",
            Target::Email { .. } => "email",
            Target::Syslog { .. } => "syslog",
        }
    }

    /// Where it sends, without secrets: for lists.
    pub fn summary(&self) -> String {
        match self {
            Target::Webhook { url, body, .. } => format!("{url} ({body})"),
            Target::Email { host, port, to, .. } => format!("{} via {host}:{port}", to.join(", ")),
            Target::Syslog { host, port, transport, format, .. } => {
                format!("{host}:{port} over {transport} ({format})")
            }
        }
    }

    /// Everything wrong with the target, worded for the admin.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self {
            Target::Webhook { url, secret, .. } => {
                match url::Url::parse(url) {
                    Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => {}
                    _ => problems.push("the webhook URL must be an http(s) URL".into()),
                }
                if secret.len() < 16 {
                    problems.push("the signing secret is at least 16 characters".into());
                }
            }
            Target::Email { host, from, to, port, ca_pem, .. } => {
                check_pem(ca_pem, &mut problems);
                if host.trim().is_empty() || *port == 0 {
                    problems.push("the SMTP server needs a host and a port".into());
                }
                if !from.contains('@') {
                    problems.push("the sender is an email address".into());
                }
                if to.is_empty() || to.iter().any(|t| !t.contains('@')) {
                    problems.push("the recipients are one or more email addresses".into());
                }
            }
            Target::Syslog { host, port, ca_pem, .. } => {
                check_pem(ca_pem, &mut problems);
                if host.trim().is_empty() || *port == 0 {
                    problems.push("the syslog receiver needs a host and a port".into());
                }
            }
        }
        problems
    }
}

/// A CA certificate given as PEM must hold one.
fn check_pem(pem: &Option<String>, problems: &mut Vec<String>) {
    use rustls_pki_types::pem::PemObject;
    if let Some(pem) = pem
        && rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).next().is_none_or(|c| c.is_err())
    {
        problems.push("the CA certificate is not a PEM certificate".into());
    }
}

/// A notification channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: i64,
    pub name: String,
    pub target: Target,
    pub enabled: bool,
}

/// How a channel's deliveries are going.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelHealth {
    pub pending: u64,
    pub failed: u64,
    pub delivered: u64,
    pub last_delivered_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
}

/// One message of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub alert_id: String,
    pub channel_id: i64,
    pub attempts: u32,
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        assert!(glob("*pipeline*", "Q3 Pipeline by rep"));
        assert!(glob("Q3*", "q3 anything"));
        assert!(glob("*report", "Big Report"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXcYYb"));
        assert!(glob("exact", "EXACT"));
        assert!(!glob("exact", "exactly"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn conditions_all_must_hold() {
        let mut e = FileEvent::sample();
        e.rows = 500;
        e.username = Some("Ann@Example.com".into());
        e.queried_entities = Some("Opportunity, Account".into());
        e.operation = Some("ReportExported".into());
        let mut c = Conditions { min_rows: Some(100), queried_objects: vec!["account".into()], ..Default::default() };
        assert!(c.matches(&e));
        c.exclude_users = vec!["ann@example.com".into()];
        assert!(!c.matches(&e));
        c.exclude_users.clear();
        c.operations = vec![ExportOperation::ExcelConnector];
        assert!(!c.matches(&e));
        c.operations = vec![ExportOperation::Exported];
        c.min_severity = Some(Severity::High);
        assert!(!c.matches(&e));
    }

    #[test]
    fn drafts_are_checked() {
        let draft = RuleDraft {
            name: " ".into(),
            description: String::new(),
            severity: Severity::NoRisk,
            conditions: Conditions {
                threshold: Some(Threshold { window_minutes: 0, exports: None, rows: None }),
                ..Default::default()
            },
            channels: vec![],
            suppress_minutes: 60,
        };
        assert_eq!(draft.problems().len(), 4, "{:?}", draft.problems());
        let unknown = serde_json::json!({"name": "x", "severity": "high", "conditions": {"rowz": 1}});
        assert!(serde_json::from_value::<RuleDraft>(unknown).is_err());
    }
}
