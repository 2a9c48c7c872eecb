//! A data connection as the product names it: its stored record, its status and the
//! problems behind an Error, its status history, the gaps its streams lost, and the
//! scope of users it monitors. Types only: the connector fills them in, the store
//! keeps them, the API and CLI show them.

use serde::{Deserialize, Serialize};
use sfwire::id::SfId;

use crate::named::{UnknownName, named_enum};

named_enum! {
    /// Where a connection stands. Initializing, Monitoring and Error are set by the
    /// connector; Paused and Deauthorized by a person.
    pub enum ConnectionStatus ("connection status") {
        /// Authorized; the first scope scan and health checks have not finished.
        Initializing = "initializing",
        Monitoring = "monitoring",
        /// Something a person must fix; [`StatusDetail::problems`] says what.
        Error = "error",
        /// Not monitored until resumed.
        Paused = "paused",
        /// Its Salesforce tokens were revoked: a new authorization is needed.
        Deauthorized = "deauthorized",
    }
}

impl ConnectionStatus {
    /// Set by a person: the connector's health checks leave it alone.
    pub fn is_held(self) -> bool {
        matches!(self, ConnectionStatus::Paused | ConnectionStatus::Deauthorized)
    }
}

named_enum! {
    /// Where a problem comes from: what the detail panel names as the error's source.
    pub enum ProblemSource ("problem source") {
        ServiceAccount = "service-account",
        Permissions = "permissions",
        Licence = "licence",
        EventManager = "event-manager",
        Token = "token",
        ApiLimits = "api-limits",
        Network = "network",
        /// Events the stream lost and the stored object could not give back.
        EventStream = "event-stream",
        /// This server's own settings (an origin not allowed, a bad corporate range).
        Configuration = "configuration",
        /// Tripline's own database.
        Storage = "storage",
    }
}

named_enum! {
    pub enum ProblemSeverity ("problem severity") {
        /// Monitoring is impaired: the connection is in Error.
        Error = "error",
        /// Monitoring works, something is degraded (e.g. backfill unavailable).
        Warning = "warning",
    }
}

/// One thing wrong with a connection, with what a Salesforce admin can do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    pub severity: ProblemSeverity,
    pub source: ProblemSource,
    pub message: String,
}

impl Problem {
    pub fn error(source: ProblemSource, message: impl Into<String>) -> Problem {
        Problem { severity: ProblemSeverity::Error, source, message: message.into() }
    }

    pub fn warning(source: ProblemSource, message: impl Into<String>) -> Problem {
        Problem { severity: ProblemSeverity::Warning, source, message: message.into() }
    }
}

/// Why a connection has its status, and since when (epoch ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusDetail {
    pub problems: Vec<Problem>,
    pub since: i64,
}

impl StatusDetail {
    /// The status a set of problems means: Error when any of them is an error.
    pub fn status(problems: &[Problem]) -> ConnectionStatus {
        if problems.iter().any(|p| p.severity == ProblemSeverity::Error) {
            ConnectionStatus::Error
        } else {
            ConnectionStatus::Monitoring
        }
    }
}

/// One entry of a connection's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub at: i64,
    pub status: ConnectionStatus,
    pub detail: Option<StatusDetail>,
    /// Who or what made the change ("health check", "cli (alice)", ...).
    pub actor: String,
}

/// A window of events a stream lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub topic: String,
    pub detected_at: i64,
    pub from_ms: i64,
    /// `None` while the window is still open (e.g. streaming is still off).
    pub to_ms: Option<i64>,
    pub reason: String,
    /// The stored `ReportEvent` object gave the window's exports back.
    pub recovered: bool,
}

/// An event that arrived but could not be read: kept aside with the reason, never
/// dropped, and shown on its connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantinedEvent {
    pub topic: String,
    /// A digest of what was received: the same event received again is not kept twice.
    pub key: String,
    pub received_at: i64,
    pub reason: String,
    /// The fields as received, or the undecodable payload (base64) and its schema id.
    pub evidence: serde_json::Value,
}

/// Who a connection monitors (always only among holders of Export Reports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "entries")]
pub enum ScopeMode {
    All,
    /// Usernames or emails.
    Users(Vec<String>),
    /// Group names, developer names or ids.
    Groups(Vec<String>),
}

impl ScopeMode {
    /// The stored form (`all`, `users`, `groups` and the entries) read back; any other
    /// mode is refused, never taken for All.
    pub(crate) fn from_parts(mode: &str, entries: &[String]) -> Result<ScopeMode, UnknownName> {
        match mode {
            "all" => Ok(ScopeMode::All),
            "users" => Ok(ScopeMode::Users(entries.to_vec())),
            "groups" => Ok(ScopeMode::Groups(entries.to_vec())),
            other => Err(UnknownName {
                what: "scope mode",
                value: other.to_owned(),
                expected: vec!["all", "users", "groups"],
            }),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ScopeMode::All => "all",
            ScopeMode::Users(_) => "users",
            ScopeMode::Groups(_) => "groups",
        }
    }

    /// What the uploaded CSV named (nothing for All).
    pub fn entries(&self) -> &[String] {
        match self {
            ScopeMode::All => &[],
            ScopeMode::Users(e) | ScopeMode::Groups(e) => e,
        }
    }
}

/// A data connection as stored.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRecord {
    pub id: String,
    pub display_name: String,
    pub org_id: SfId,
    pub instance_url: String,
    pub login_url: String,
    pub scope: ScopeMode,
    pub corporate_cidrs: Vec<String>,
    #[serde(skip_serializing)]
    pub refresh_token: String,
    #[serde(skip_serializing)]
    pub access_token: String,
    pub service_user_id: SfId,
    pub status: ConnectionStatus,
    pub status_detail: Option<StatusDetail>,
    pub created_at: i64,
    /// When the monitored users were last scanned; `None` until a first scan succeeds.
    pub scope_scanned_at: Option<i64>,
    /// Exports up to here were compared with the stored `ReportEvent` object.
    pub reconciled_to: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_unknown_words_are_refused() {
        for &s in ConnectionStatus::ALL {
            assert_eq!(s.as_str().parse::<ConnectionStatus>(), Ok(s));
            assert_eq!(serde_json::to_value(s).expect("json"), serde_json::json!(s.as_str()));
        }
        assert!("Monitoring".parse::<ConnectionStatus>().is_err());
    }

    #[test]
    fn an_unknown_scope_mode_is_an_error_not_all() {
        assert_eq!(ScopeMode::from_parts("all", &[]), Ok(ScopeMode::All));
        let err = ScopeMode::from_parts("user", &["a@b.c".into()]).expect_err("refused");
        assert!(err.to_string().contains("\"user\""), "{err}");
    }

    #[test]
    fn status_detail_refuses_other_shapes() {
        let old = r#"{"kind":"error","source":"network","message":"x"}"#;
        assert!(serde_json::from_str::<StatusDetail>(old).is_err());
        let detail = StatusDetail { problems: vec![Problem::warning(ProblemSource::Licence, "m")], since: 5 };
        let text = serde_json::to_string(&detail).expect("json");
        assert_eq!(serde_json::from_str::<StatusDetail>(&text).expect("back"), detail);
        assert_eq!(StatusDetail::status(&detail.problems), ConnectionStatus::Monitoring);
    }
}
