//! Stored rows read back as domain values, once for every database: each store reads
//! its driver's rows through `Cells`, and the mappers below build the values.
//!
//! A column that holds a word of a closed list, a Salesforce id or JSON is checked as
//! it is read: anything else is corrupt data, reported, never replaced by a default.

use serde::de::DeserializeOwned;

use crate::access::{Account, ApiToken};
use crate::alerts::{Alert, Rule, RuleDraft};
use crate::connection::{ConnectionRecord, ScopeMode};
use crate::events::FileEvent;
use crate::people::Session;
use crate::risk::Severity;

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// One row of a result, as a driver gives it.
pub(super) trait Cells {
    type Error;
    fn int(&self, i: usize) -> Result<i64, Self::Error>;
    fn int_opt(&self, i: usize) -> Result<Option<i64>, Self::Error>;
    fn text(&self, i: usize) -> Result<String, Self::Error>;
    fn text_opt(&self, i: usize) -> Result<Option<String>, Self::Error>;
    fn flag(&self, i: usize) -> Result<bool, Self::Error>;
    /// Column `i` holds what cannot be read as asked.
    fn corrupt(i: usize, cause: Cause) -> Self::Error;

    /// A text column read as a value of a closed list (a status, a severity, an id...).
    fn parsed<T>(&self, i: usize) -> Result<T, Self::Error>
    where
        T: std::str::FromStr,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        self.text(i)?.parse().map_err(|e| Self::corrupt(i, Box::new(e)))
    }

    fn parsed_opt<T>(&self, i: usize) -> Result<Option<T>, Self::Error>
    where
        T: std::str::FromStr,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        self.text_opt(i)?.map(|t| t.parse().map_err(|e| Self::corrupt(i, Box::new(e)))).transpose()
    }

    /// A JSON text column read as `T`.
    fn json<T: DeserializeOwned>(&self, i: usize) -> Result<T, Self::Error> {
        serde_json::from_str(&self.text(i)?).map_err(|e| Self::corrupt(i, Box::new(e)))
    }

    fn json_opt<T: DeserializeOwned>(&self, i: usize) -> Result<Option<T>, Self::Error> {
        self.text_opt(i)?.map(|t| serde_json::from_str(&t).map_err(|e| Self::corrupt(i, Box::new(e)))).transpose()
    }
}

pub(super) const EVENT_COLUMNS: &str = "seq, id, connection_id, observed_at, ingested_at, attribution, user_id, username, email, user_name, \
    report_id, report_name, report_description, report_type, report_format, export_format, operation, rows, columns, \
    column_count, queried_entities, execution_id, chunk_count, file_name, source_ip, browser, platform, city, country, \
    session_key, destination, risk_score, severity, indicators, raw";

/// The file event columns with the raw evidence left out (pages of alerts).
pub(super) static SLIM_COLUMNS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| EVENT_COLUMNS.replace(", raw", ", '[]'"));

/// Only what rules look at (the rest empty): evaluation and back-tests read millions
/// of events, and each column read costs.
pub(super) static RULE_COLUMNS_OF_EVENTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    const READ: [&str; 15] = [
        "seq",
        "id",
        "connection_id",
        "observed_at",
        "attribution",
        "user_id",
        "username",
        "report_name",
        "export_format",
        "operation",
        "rows",
        "queried_entities",
        "destination",
        "severity",
        "indicators",
    ];
    EVENT_COLUMNS
        .split(", ")
        .map(|c| match c {
            c if READ.contains(&c) => c.to_owned(),
            "raw" => "'[]'".to_owned(),
            // Typed, as PostgreSQL reads an untyped 0 as a 4-byte integer.
            "ingested_at" | "chunk_count" | "risk_score" => "CAST(0 AS BIGINT)".to_owned(),
            "column_count" => "CAST(NULL AS BIGINT)".to_owned(),
            "file_name" => "''".to_owned(),
            _ => "NULL".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
});

/// A row of `EVENT_COLUMNS` (or the slimmer lists above).
pub(super) fn event<R: Cells>(r: &R) -> Result<FileEvent, R::Error> {
    Ok(FileEvent {
        seq: r.int(0)?,
        id: r.text(1)?,
        connection_id: r.text(2)?,
        observed_at: r.int(3)?,
        ingested_at: r.int(4)?,
        attribution: r.parsed(5)?,
        user_id: r.parsed(6)?,
        username: r.text_opt(7)?,
        email: r.text_opt(8)?,
        user_name: r.text_opt(9)?,
        report_id: r.text_opt(10)?,
        report_name: r.text_opt(11)?,
        report_description: r.text_opt(12)?,
        report_type: r.parsed_opt(13)?,
        report_format: r.text_opt(14)?,
        export_format: r.text_opt(15)?,
        operation: r.text_opt(16)?,
        rows: r.int(17)?,
        columns: r.text_opt(18)?,
        column_count: r.int_opt(19)?,
        queried_entities: r.text_opt(20)?,
        execution_id: r.text_opt(21)?,
        chunk_count: r.int(22)?,
        file_name: r.text(23)?,
        source_ip: r.text_opt(24)?,
        browser: r.text_opt(25)?,
        platform: r.text_opt(26)?,
        city: r.text_opt(27)?,
        country: r.text_opt(28)?,
        session_key: r.text_opt(29)?,
        destination: r.parsed(30)?,
        risk_score: r.int(31)?,
        severity: r.parsed(32)?,
        indicators: r.json(33)?,
        raw: r.json(34)?,
    })
}

pub(super) const CONNECTION_COLUMNS: &str = "id, display_name, org_id, instance_url, login_url, scope_mode, scope_entries, \
    corporate_cidrs, refresh_token, access_token, service_user_id, status, status_detail, created_at, scope_scanned_at, \
    reconciled_to";

/// A row of `CONNECTION_COLUMNS`, its tokens still sealed.
pub(super) fn connection<R: Cells>(r: &R) -> Result<ConnectionRecord, R::Error> {
    let mode = r.text(5)?;
    let entries: Vec<String> = r.json(6)?;
    let scope = ScopeMode::from_parts(&mode, &entries).map_err(|e| R::corrupt(5, Box::new(e)))?;
    Ok(ConnectionRecord {
        id: r.text(0)?,
        display_name: r.text(1)?,
        org_id: r.parsed(2)?,
        instance_url: r.text(3)?,
        login_url: r.text(4)?,
        scope,
        corporate_cidrs: r.json(7)?,
        refresh_token: r.text(8)?,
        access_token: r.text(9)?,
        service_user_id: r.parsed(10)?,
        status: r.parsed(11)?,
        status_detail: r.json_opt(12)?,
        created_at: r.int(13)?,
        scope_scanned_at: r.int_opt(14)?,
        reconciled_to: r.int_opt(15)?,
    })
}

pub(super) const TOKEN_COLUMNS: &str = "name, created_at, last_used_at, expires_at, revoked_at";

pub(super) fn token<R: Cells>(r: &R) -> Result<ApiToken, R::Error> {
    Ok(ApiToken {
        name: r.text(0)?,
        created_at: r.int(1)?,
        last_used_at: r.int_opt(2)?,
        expires_at: r.int_opt(3)?,
        revoked_at: r.int_opt(4)?,
    })
}

pub(super) const SESSION_COLUMNS: &str =
    "session_key, login_key, user_id, username, source_ip, browser, platform, city, country, login_at";

pub(super) fn session<R: Cells>(r: &R) -> Result<Session, R::Error> {
    Ok(Session {
        session_key: r.text(0)?,
        login_key: r.text_opt(1)?,
        user_id: r.parsed(2)?,
        username: r.text_opt(3)?,
        source_ip: r.text_opt(4)?,
        browser: r.text_opt(5)?,
        platform: r.text_opt(6)?,
        city: r.text_opt(7)?,
        country: r.text_opt(8)?,
        login_at: r.int(9)?,
    })
}

pub(super) const ACCOUNT_COLUMNS: &str = "accounts.id, accounts.username, accounts.role, accounts.created_at";

pub(super) fn account<R: Cells>(r: &R) -> Result<Account, R::Error> {
    Ok(Account { id: r.int(0)?, username: r.text(1)?, role: r.parsed(2)?, created_at: r.int(3)? })
}

/// The columns of a rule's stored definition.
#[derive(serde::Serialize, serde::Deserialize)]
struct Definition {
    description: String,
    severity: Severity,
    conditions: crate::alerts::Conditions,
    channels: Vec<i64>,
    suppress_minutes: u32,
}

pub(super) const RULE_COLUMNS: &str = "id, name, definition, enabled, active_from_seq, updated_at, updated_by";

pub(super) fn rule<R: Cells>(r: &R) -> Result<Rule, R::Error> {
    let d: Definition = r.json(2)?;
    Ok(Rule {
        id: r.int(0)?,
        name: r.text(1)?,
        description: d.description,
        severity: d.severity,
        enabled: r.flag(3)?,
        conditions: d.conditions,
        channels: d.channels,
        suppress_minutes: d.suppress_minutes,
        active_from_seq: r.int(4)?,
        updated_at: r.int(5)?,
        updated_by: r.text(6)?,
    })
}

/// A rule's definition column.
pub(super) fn definition(draft: &RuleDraft) -> serde_json::Result<String> {
    serde_json::to_string(&Definition {
        description: draft.description.clone(),
        severity: draft.severity,
        conditions: draft.conditions.clone(),
        channels: draft.channels.clone(),
        suppress_minutes: draft.suppress_minutes,
    })
}

pub(super) const ALERT_COLUMNS: &str = "id, rule_id, rule_name, severity, connection_id, user_id, username, state, assignee, \
    first_at, last_at, events, rows, created_at, updated_at, ord";

pub(super) fn alert<R: Cells>(r: &R) -> Result<Alert, R::Error> {
    Ok(Alert {
        id: r.text(0)?,
        rule_id: r.int(1)?,
        rule_name: r.text(2)?,
        severity: r.parsed(3)?,
        connection_id: r.text(4)?,
        user_id: r.text(5)?,
        username: r.text_opt(6)?,
        state: r.parsed(7)?,
        assignee: r.text_opt(8)?,
        first_at: r.int(9)?,
        last_at: r.int(10)?,
        events: r.int(11)?,
        rows: r.int(12)?,
        created_at: r.int(13)?,
        updated_at: r.int(14)?,
        seq: r.int(15)?,
    })
}

impl Cells for rusqlite::Row<'_> {
    type Error = rusqlite::Error;
    fn int(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }
    fn int_opt(&self, i: usize) -> rusqlite::Result<Option<i64>> {
        self.get(i)
    }
    fn text(&self, i: usize) -> rusqlite::Result<String> {
        self.get(i)
    }
    fn text_opt(&self, i: usize) -> rusqlite::Result<Option<String>> {
        self.get(i)
    }
    fn flag(&self, i: usize) -> rusqlite::Result<bool> {
        self.get(i)
    }
    fn corrupt(i: usize, cause: Cause) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, cause)
    }
}
