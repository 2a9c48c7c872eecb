//! Storage: one trait for everything Tripline keeps, so that the embedded SQLite store
//! and a PostgreSQL store behave the same and share one behavioural test suite.
//!
//! The rule every implementation keeps: a topic's replay checkpoint is written in the
//! same transaction as the events it covers, so a crash at any instant loses nothing
//! and applies nothing twice.

mod lease;
pub mod postgres;
mod rows;
pub mod secrets;
mod sql;
pub mod sqlite;
mod tally;

use sfwire::id::SfId;

use crate::access::{Account, ApiToken, AuditEntry, ConsoleSession, Role};
use crate::alerts::engine::Decision;
use crate::alerts::{
    Alert, AlertFilter, AlertNote, AlertUpdate, Channel, ChannelHealth, Delivery, Rule, RuleDraft, Target,
};
use crate::connection::{
    ConnectionRecord, ConnectionStatus, Gap, QuarantinedEvent, ScopeMode, StatusChange, StatusDetail,
};
use crate::events::FileEvent;
use crate::people::{LoginRecord, SalesforceUser, Session};
use crate::risk::{RiskSettings, Severity, WatchEntry, WatchKind};
use crate::search::{QueryError, SearchPage, SearchQuery};

pub type Result<T> = std::result::Result<T, StoreError>;

/// Where Tripline keeps its data, as `--database` / `TRIPLINE_DATABASE` names it: a
/// `postgres://` (or `postgresql://`) URL, else the path of an SQLite file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl std::str::FromStr for Database {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> std::result::Result<Database, Self::Err> {
        Ok(if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Database::Postgres(text.to_owned())
        } else {
            Database::Sqlite(text.into())
        })
    }
}

impl std::fmt::Display for Database {
    /// The path, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => match url::Url::parse(url) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    write!(f, "{u}")
                }
                Err(_) => f.write_str("a PostgreSQL URL that does not parse"),
            },
        }
    }
}

impl Database {
    /// Opens the store; an SQLite file must exist. A PostgreSQL database is brought
    /// up to date, its tokens sealed with `TRIPLINE_SECRET_KEY`; the server's
    /// certificate may be issued by the CA in the PEM file `TRIPLINE_POSTGRES_CA`.
    pub fn open(&self) -> Result<Box<dyn Store>> {
        Ok(match self {
            Database::Sqlite(path) => Box::new(sqlite::SqliteStore::open(path)?),
            Database::Postgres(url) => {
                let ca = Database::postgres_ca()?;
                Box::new(postgres::PostgresStore::connect_with_ca(url, secrets::SecretBox::from_env()?, ca.as_deref())?)
            }
        })
    }

    /// The private CA (PEM) a PostgreSQL server's certificate may be issued by: the
    /// file `TRIPLINE_POSTGRES_CA` names, if it does.
    pub fn postgres_ca() -> Result<Option<String>> {
        let Some(path) = std::env::var_os("TRIPLINE_POSTGRES_CA") else { return Ok(None) };
        std::fs::read_to_string(&path).map(Some).map_err(|e| {
            StoreError::Database(format!("TRIPLINE_POSTGRES_CA {}: {e}", std::path::Path::new(&path).display()).into())
        })
    }

    /// Opens the store, creating an SQLite file if there is none.
    pub fn create(&self) -> Result<Box<dyn Store>> {
        match self {
            Database::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::create(path)?)),
            Database::Postgres(_) => self.open(),
        }
    }
}

/// Why the store could not do what was asked, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, locking, a full disk): retrying later may work.
    #[error("the database failed")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// What is stored cannot be read back (an unknown word, JSON of another shape):
    /// never guessed at or overwritten.
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
    /// The secret key is missing, wrong or unusable.
    #[error("secrets: {0}")]
    Secrets(String),
    /// A uniqueness rule (a display name or token name already taken).
    #[error("{0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The search cannot run as asked.
    #[error(transparent)]
    InvalidQuery(#[from] QueryError),
    /// This node no longer holds the lease on the connection it writes for: another
    /// node took it over, and the write was refused (nothing of it was kept).
    #[error("{0}")]
    Fenced(String),
}

/// What `Store::claim` is asked for: a connection's ingest, or a duty one node does
/// for all (`ALERTING`).
pub const ALERTING: &str = "duty:alerting";

/// One node's right to do a piece of work for a while: run a connection's ingest, or
/// a duty done once for all nodes. Each takeover raises `token`, the fencing token
/// every ingest write of the connection is checked against in its transaction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    pub key: String,
    pub node: String,
    pub token: i64,
    pub expires_at: i64,
    /// A node that does not hold the connection asked its holder to restart it (a
    /// new scope or authorization taken in its console).
    pub restart: bool,
}

/// A `tripline serve` process sharing the database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Node {
    /// Unique among the nodes (`--node-name`, by default the host name).
    pub name: String,
    /// This process's run of the node: a restarted node takes its leases back at once.
    pub incarnation: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// Where its console answers, as it was told.
    pub address: Option<String>,
}

/// Where a topic's stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// After this replay id.
    At(Vec<u8>),
    /// Restarted from EARLIEST at this time, before any replay id was stored: what
    /// the stream no longer retains since then must come from the stored object.
    RestartedAt(i64),
}

/// One export event (a chunk) ready to store. Chunks sharing `execution_id` become one
/// file event whose chunk count grows.
#[derive(Debug, Clone)]
pub struct ExportChunk {
    pub event_identifier: String,
    pub file_event: FileEvent,
}

/// The report events of one delivery.
#[derive(Debug, Default)]
pub struct ReportBatch {
    pub exports: Vec<ExportChunk>,
    /// Exports by users outside the scope: remembered (so replays are not counted
    /// again) and counted, not stored.
    pub out_of_scope: Vec<String>,
    /// Events that could not be read, kept aside.
    pub quarantined: Vec<QuarantinedEvent>,
}

/// What applying a report batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReportOutcome {
    pub new_file_events: usize,
    pub merged_chunks: usize,
    pub duplicates: usize,
    pub out_of_scope: usize,
    /// The new file events: their index in the batch's exports and the `seq` each got,
    /// in the batch's order.
    pub new_seqs: Vec<(usize, i64)>,
}

/// A connection's recent downloads, for Data Connections.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionActivity {
    pub events_since: u64,
    pub last_event_at: Option<i64>,
}

/// Downloads and rows in one hour.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct HourCount {
    pub hour: i64,
    pub corporate: u64,
    pub unmonitored: u64,
    pub rows: u64,
}

/// One line of a top-N list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ranked {
    /// The user id or report id (or report name) to search by.
    pub key: String,
    pub label: String,
    pub downloads: u64,
    pub rows: u64,
}

/// The dashboard's figures over a range of hours.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dashboard {
    /// Hours with downloads, oldest first.
    pub hours: Vec<HourCount>,
    pub top_users: Vec<Ranked>,
    pub top_reports: Vec<Ranked>,
    pub severities: Vec<(crate::risk::Severity, u64)>,
}

/// A person as the Users list shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Person {
    pub user_id: String,
    pub username: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    /// In the scope of some connection now.
    pub monitored: bool,
    pub downloads: u64,
    pub rows: u64,
    pub last_at: Option<i64>,
    pub worst: Option<crate::risk::Severity>,
}

/// A Forensic Search saved by name: the console's query string.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SavedSearch {
    pub id: i64,
    pub name: String,
    pub query: String,
    pub owner: String,
    pub created_at: i64,
}

/// Everything Tripline keeps.
pub trait Store: AlertStore + Send + Sync {
    fn create_connection(&self, connection: &ConnectionRecord) -> Result<()>;
    fn connections(&self) -> Result<Vec<ConnectionRecord>>;
    fn connection(&self, id: &str) -> Result<ConnectionRecord>;
    /// A refreshed session's token, and the refresh token when Salesforce rotated it.
    fn set_tokens(&self, id: &str, access_token: &str, refresh_token: Option<&str>) -> Result<()>;
    /// New tokens from a fresh authorization of the same org: the connection starts
    /// Initializing again, its history and checkpoints kept (audited).
    fn reauthorize(
        &self,
        id: &str,
        refresh_token: &str,
        access_token: &str,
        instance_url: &str,
        actor: &str,
    ) -> Result<()>;
    /// A new scope (audited); the next scan applies it.
    fn set_scope(&self, id: &str, scope: &ScopeMode, actor: &str) -> Result<()>;
    /// The corporate IP ranges set in the console, if they were.
    fn corporate_ranges(&self) -> Result<Option<Vec<String>>>;
    /// Sets the corporate IP ranges for every connection, now and added later (audited).
    fn set_corporate_ranges(&self, ranges: &[String], actor: &str) -> Result<()>;
    /// Removes a connection and what only it used (checkpoints, sessions, scope, gaps,
    /// events kept aside, history); its stored downloads stay searchable (audited).
    fn delete_connection(&self, id: &str, actor: &str) -> Result<()>;
    /// Changes the status and appends to the history (when, what, who).
    fn set_status(&self, id: &str, status: ConnectionStatus, detail: Option<&StatusDetail>, actor: &str) -> Result<()>;
    fn status_history(&self, id: &str) -> Result<Vec<StatusChange>>;

    fn checkpoint(&self, connection: &str, topic: &str) -> Result<Option<Checkpoint>>;
    /// Records that the topic restarts from EARLIEST with no replay id yet (a new
    /// connection, or after the replay id was lost), as of `since_ms`.
    fn mark_restart(&self, connection: &str, topic: &str, since_ms: i64) -> Result<()>;
    /// Applies login or logout events (and keeps aside those that could not be read)
    /// and moves the checkpoint, in one transaction.
    fn apply_logins(
        &self,
        connection: &str,
        topic: &str,
        records: &[LoginRecord],
        quarantined: &[QuarantinedEvent],
        checkpoint: &[u8],
    ) -> Result<usize>;
    /// Applies report events and moves the checkpoint (if given: a backfill has
    /// none), in one transaction.
    fn apply_reports(
        &self,
        connection: &str,
        topic: &str,
        batch: &ReportBatch,
        checkpoint: Option<&[u8]>,
    ) -> Result<ReportOutcome>;

    fn session(&self, connection: &str, session_key: &str) -> Result<Option<Session>>;
    /// The stored sessions among `keys`, by key.
    fn sessions(&self, connection: &str, keys: &[String]) -> Result<std::collections::HashMap<String, Session>> {
        let mut found = std::collections::HashMap::new();
        for key in keys {
            if let Some(s) = self.session(connection, key)? {
                found.insert(key.clone(), s);
            }
        }
        Ok(found)
    }
    /// Has this user any stored export (for the "first export" indicator)?
    fn user_has_file_events(&self, connection: &str, user_id: &SfId) -> Result<bool>;
    /// Has this user a stored export from this source IP (for "new source IP")?
    fn user_has_exported_from(&self, connection: &str, user_id: &SfId, source_ip: &str) -> Result<bool>;
    /// Makes `users` the connection's monitored users, scanned now.
    fn replace_scope(&self, connection: &str, users: &[SalesforceUser]) -> Result<()>;
    fn scope(&self, connection: &str) -> Result<Vec<SalesforceUser>>;
    fn counter(&self, connection: &str, name: &str) -> Result<i64>;
    /// How many file events the connection stored observed from the hour of
    /// `since_ms` on, and when its newest one was observed (as the aggregator has
    /// counted them: within about a second).
    fn connection_activity(&self, connection: &str, since_ms: i64) -> Result<ConnectionActivity>;
    /// Records a window the stream lost, from `from` (to `to`, or still open);
    /// `recovered` when the stored object filled it. One window is one gap: recording
    /// the same start again updates it.
    fn record_gap(
        &self,
        connection: &str,
        topic: &str,
        from: i64,
        to: Option<i64>,
        reason: &str,
        recovered: bool,
    ) -> Result<()>;
    /// Marks the unrecovered gaps within [from, to] recovered (their window was re-read).
    fn resolve_gaps(&self, connection: &str, topic: &str, from: i64, to: i64) -> Result<()>;
    fn set_reconciled_to(&self, connection: &str, to_ms: i64) -> Result<()>;
    fn gaps(&self, connection: &str) -> Result<Vec<Gap>>;
    /// How many events are kept aside, and the newest `limit` of them.
    fn quarantine(&self, connection: &str, limit: usize) -> Result<(usize, Vec<QuarantinedEvent>)>;

    /// Stores an API token's hash under a unique name (audited).
    fn add_api_token(&self, name: &str, token_hash: &str, expires_at: Option<i64>, actor: &str) -> Result<()>;
    /// The token with this hash, if any (valid or not: the caller decides).
    fn api_token(&self, token_hash: &str) -> Result<Option<ApiToken>>;
    /// Records that a token was used now.
    fn touch_api_token(&self, name: &str, at: i64) -> Result<()>;
    fn api_tokens(&self) -> Result<Vec<ApiToken>>;
    /// Revokes a token for good (audited); NotFound when no token has this name.
    fn revoke_api_token(&self, name: &str, actor: &str) -> Result<()>;
    /// Records a change in the audit log.
    fn audit(&self, actor: &str, action: &str, target: &str) -> Result<()>;
    /// The newest `limit` audit entries, newest first.
    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>>;

    /// Adds a console account (audited); Conflict when the username is taken (in any case).
    fn create_account(&self, username: &str, role: Role, password_hash: &str, actor: &str) -> Result<Account>;
    fn accounts(&self) -> Result<Vec<Account>>;
    /// Changes an account's role (audited).
    fn set_account_role(&self, account_id: i64, role: Role, actor: &str) -> Result<()>;
    /// Replaces an account's password hash and ends its sessions (audited).
    fn set_account_password(&self, account_id: i64, password_hash: &str, actor: &str) -> Result<()>;
    /// Removes an account and its sessions (audited).
    fn delete_account(&self, account_id: i64, actor: &str) -> Result<()>;
    /// The account with this username (in any case) and its password hash.
    fn account_credentials(&self, username: &str) -> Result<Option<(Account, String)>>;
    /// Starts a console session for the account.
    fn create_console_session(&self, token_hash: &str, account_id: i64, csrf: &str, expires_at: i64) -> Result<()>;
    /// The session with this hash, if it has not expired.
    fn console_session(&self, token_hash: &str, now_ms: i64) -> Result<Option<ConsoleSession>>;
    fn end_console_session(&self, token_hash: &str) -> Result<()>;
    /// Ends every session of the account (sign out everywhere); how many there were.
    fn end_console_sessions(&self, account_id: i64) -> Result<usize>;

    /// Adds up to `max_events` file events stored since the last call to the hourly
    /// dashboard counts, in one transaction with its position; how many it added.
    fn aggregate(&self, max_events: usize) -> Result<usize>;
    /// The dashboard's figures for the hours from `from_hour` (inclusive) to `to_hour`
    /// (exclusive), epoch ms of hour starts.
    fn dashboard(&self, from_hour: i64, to_hour: i64, top: usize) -> Result<Dashboard>;

    /// Everyone monitored or who ever downloaded, with their downloads of all time,
    /// most recently active first.
    fn people(&self) -> Result<Vec<Person>>;
    /// A person's downloads per hour in `[from_hour, to_hour)`: (hour, downloads, rows).
    fn person_hours(&self, user_id: &str, from_hour: i64, to_hour: i64) -> Result<Vec<(i64, u64, u64)>>;
    /// A person's newest `limit` sessions (from login events), newest first.
    fn person_sessions(&self, user_id: &str, limit: usize) -> Result<Vec<Session>>;

    fn search(&self, query: &SearchQuery) -> Result<SearchPage>;
    /// How many events match the query's time range and filter (its sort and paging
    /// aside), counted up to `cap`: a count at the cap means "at least".
    fn count(&self, query: &SearchQuery, cap: u64) -> Result<u64>;
    fn file_event(&self, id: &str) -> Result<Option<FileEvent>>;
    /// Saves a search under a unique name (in any case); Conflict when taken.
    fn save_search(&self, name: &str, query: &str, owner: &str) -> Result<()>;
    fn saved_searches(&self) -> Result<Vec<SavedSearch>>;
    fn delete_saved_search(&self, id: i64) -> Result<()>;
    fn search_checkpoint(&self, name: &str) -> Result<i64>;
    fn set_search_checkpoint(&self, name: &str, last_seq: i64) -> Result<()>;

    /// How many days stored downloads are kept (`None`: for ever).
    fn retention(&self) -> Result<Option<u32>>;
    /// Sets how long downloads are kept (audited); applied within the hour.
    fn set_retention(&self, days: Option<u32>, actor: &str) -> Result<()>;
    /// Removes stored downloads observed before `before_ms`, and the dashboard counts
    /// of their hours: SQLite a batch per call, PostgreSQL whole months (a month goes
    /// once all of it is older). How many downloads were removed (0: none left).
    fn remove_before(&self, before_ms: i64) -> Result<u64>;

    /// Records that `node` is alive now (its row created at its first beat).
    fn heartbeat(&self, node: &Node) -> Result<()>;
    /// Every node that has beaten, most recent first.
    fn nodes(&self) -> Result<Vec<Node>>;
    /// Every lease, held or expired.
    fn leases(&self) -> Result<Vec<Lease>>;
    /// Takes the lease on `key` for `ttl_ms`, or keeps it: renewed (same token) when
    /// this incarnation of `node` holds it; taken over (token raised) when it is free,
    /// expired, or held by an earlier incarnation of the same node. `None` while
    /// another node holds it. Once claimed, this store refuses the connection's ingest
    /// writes unless the lease still has the token it was claimed with.
    fn claim(&self, key: &str, node: &Node, ttl_ms: i64) -> Result<Option<Lease>>;
    /// Gives a lease up (its work stopped), so another node may take it at once.
    fn release(&self, key: &str, node: &Node) -> Result<()>;
    /// Asks (or, done, stops asking) the holder of `key` to restart its work.
    fn request_restart(&self, key: &str, requested: bool) -> Result<()>;
}

/// What a rule's alert that had been closed became when a new match came (closed
/// alerts do not grow: the match opened a new alert in their place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reopened {
    pub closed: String,
    pub new: String,
    pub last_at: i64,
}

/// How a delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Failed; tried again at `retry_at`, or given up when `None`.
    Failed {
        error: String,
        retry_at: Option<i64>,
    },
}

/// Risk settings, watch lists, rules, alerts and their notifications.
pub trait AlertStore {
    /// The risk settings in force (the defaults until an admin saves some).
    fn risk_settings(&self) -> Result<RiskSettings>;
    /// Saves risk settings (audited); they apply to exports stored from now on.
    fn set_risk_settings(&self, settings: &RiskSettings, actor: &str) -> Result<()>;
    fn watchlist(&self) -> Result<Vec<WatchEntry>>;
    /// Adds entries, or updates the departure date and note of those already listed
    /// (audited); how many were new.
    fn add_watch_entries(&self, entries: &[WatchEntry], actor: &str) -> Result<usize>;
    fn remove_watch_entry(&self, kind: WatchKind, username: &str, actor: &str) -> Result<()>;

    fn rules(&self) -> Result<Vec<Rule>>;
    fn rule(&self, id: i64) -> Result<Rule>;
    /// Adds a rule, disabled (audited); Conflict when the name is taken.
    fn create_rule(&self, draft: &RuleDraft, actor: &str) -> Result<Rule>;
    /// Changes a rule (audited); an enabled rule applies as changed to events stored
    /// from now on.
    fn update_rule(&self, id: i64, draft: &RuleDraft, actor: &str) -> Result<Rule>;
    /// Enables a rule (for events stored from now on) or disables it (audited).
    fn set_rule_enabled(&self, id: i64, enabled: bool, actor: &str) -> Result<Rule>;
    /// Removes a rule (audited); its alerts stay.
    fn delete_rule(&self, id: i64, actor: &str) -> Result<()>;

    /// Up to `limit` file events stored after `after_seq`, in that order, with what
    /// rules look at only (no raw evidence, no session details).
    fn events_after(&self, after_seq: i64, limit: usize) -> Result<Vec<FileEvent>>;
    /// Up to `limit` file events observed in `[from_ms, to_ms)` and stored after
    /// `after_seq`, in the order they were stored, with what rules look at only.
    fn events_between(&self, from_ms: i64, to_ms: i64, after_seq: i64, limit: usize) -> Result<Vec<FileEvent>>;
    /// The last file event the alert evaluator has evaluated.
    fn alert_position(&self) -> Result<i64>;
    /// Applies the evaluator's decisions and moves its position, in one transaction;
    /// each new alert's notifications join the outbox in it. A growth of an alert
    /// closed meanwhile opens a new alert instead (returned).
    fn apply_alerts(&self, position: i64, decisions: &[Decision]) -> Result<Vec<Reopened>>;
    /// Alerts not closed whose last event is at or after `since_ms`.
    fn open_alerts(&self, since_ms: i64) -> Result<Vec<Alert>>;
    /// A page of alerts, and how many match in all.
    fn alerts(&self, filter: &AlertFilter) -> Result<(Vec<Alert>, u64)>;
    fn alert(&self, id: &str) -> Result<Option<(Alert, Vec<AlertNote>)>>;
    /// The file events behind an alert, oldest first (at most `limit`), without raw.
    fn alert_events(&self, id: &str, limit: usize) -> Result<Vec<FileEvent>>;
    /// Triage: state, assignee, a note (audited).
    fn update_alert(&self, id: &str, update: &AlertUpdate, actor: &str) -> Result<Alert>;
    /// High and critical file events observed in `[from_ms, to_ms)` that no alert
    /// holds, newest first (at most `limit`), and how many there are.
    fn uncovered(&self, from_ms: i64, to_ms: i64, limit: usize) -> Result<(Vec<FileEvent>, u64)>;
    /// Alerts created in `[from_ms, to_ms)` by severity: (severity, all, not closed).
    fn alert_counts(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(Severity, u64, u64)>>;

    /// The message templates (the defaults until an admin saves some).
    fn message_templates(&self) -> Result<crate::alerts::template::Templates>;
    /// Saves the message templates (audited).
    fn set_message_templates(&self, templates: &crate::alerts::template::Templates, actor: &str) -> Result<()>;

    fn channels(&self) -> Result<Vec<Channel>>;
    fn channel(&self, id: i64) -> Result<Channel>;
    /// Adds (`id` None) or replaces a channel (audited); Conflict when the name is taken.
    fn save_channel(&self, id: Option<i64>, name: &str, target: &Target, enabled: bool, actor: &str)
    -> Result<Channel>;
    /// Removes a channel and its undelivered messages (audited).
    fn delete_channel(&self, id: i64, actor: &str) -> Result<()>;
    /// How each channel's deliveries are going, by channel id.
    fn channel_health(&self) -> Result<std::collections::HashMap<i64, ChannelHealth>>;
    /// Messages due at `now_ms`, oldest first.
    fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<Delivery>>;
    /// When the next undelivered message is due, if any.
    fn next_delivery_at(&self) -> Result<Option<i64>>;
    fn record_attempt(&self, delivery_id: i64, attempt: &Attempt) -> Result<()>;
}
