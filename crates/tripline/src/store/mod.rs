//! Storage: one trait for everything Tripline keeps, so that the embedded SQLite store
//! and a PostgreSQL store behave the same and share one behavioural test suite.
//!
//! The rule every implementation keeps: a topic's replay checkpoint is written in the
//! same transaction as the events it covers, so a crash at any instant loses nothing
//! and applies nothing twice.

pub mod secrets;
pub mod sqlite;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::search::{SearchPage, SearchQuery};

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(String),
    #[error("{0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
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

/// A data connection as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub id: String,
    pub display_name: String,
    pub org_id: String,
    pub instance_url: String,
    pub login_url: String,
    pub scope_mode: String,
    pub scope_entries: Vec<String>,
    pub corporate_cidrs: Vec<String>,
    #[serde(skip_serializing)]
    pub refresh_token: String,
    #[serde(skip_serializing)]
    pub access_token: String,
    pub service_user_id: String,
    pub status: String,
    pub status_detail: Option<Value>,
    pub created_at: i64,
}

/// One entry of a connection's status history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusChange {
    pub at: i64,
    pub status: String,
    pub detail: Option<Value>,
    pub actor: String,
}

/// A Salesforce user as Tripline knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub user_id: String,
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// A UI session learned from a login event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionInfo {
    pub session_key: String,
    pub login_key: Option<String>,
    pub user_id: String,
    pub username: Option<String>,
    pub source_ip: Option<String>,
    pub browser: Option<String>,
    pub platform: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub login_at: i64,
}

/// A login or logout event.
#[derive(Debug, Clone)]
pub struct LoginRecord {
    pub event_identifier: String,
    pub logout: bool,
    pub success: bool,
    pub status: Option<String>,
    pub session: SessionInfo,
}

/// One export event (a chunk) ready to store. Chunks sharing `execution_id` become one
/// file event whose chunk count grows.
#[derive(Debug, Clone)]
pub struct ExportChunk {
    pub event_identifier: String,
    pub file_event: FileEventRow,
}

/// The report events of one delivery.
#[derive(Debug, Default)]
pub struct ReportBatch {
    pub exports: Vec<ExportChunk>,
    /// Exports by users outside the scope: remembered (so replays are not counted
    /// again) and counted, not stored.
    pub out_of_scope: Vec<String>,
    pub users_looked_up: Vec<UserInfo>,
}

/// What applying a report batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReportOutcome {
    pub new_file_events: usize,
    pub merged_chunks: usize,
    pub duplicates: usize,
    pub out_of_scope: usize,
}

/// A stored file event, flat as in the database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileEventRow {
    pub seq: i64,
    pub id: String,
    pub connection_id: String,
    pub observed_at: i64,
    pub ingested_at: i64,
    pub attribution: String,
    pub user_id: String,
    pub username: Option<String>,
    pub email: Option<String>,
    pub user_name: Option<String>,
    pub report_id: Option<String>,
    pub report_name: Option<String>,
    pub report_description: Option<String>,
    pub report_type: Option<String>,
    pub report_format: Option<String>,
    pub export_format: Option<String>,
    pub operation: Option<String>,
    pub rows: i64,
    pub columns: Option<String>,
    pub column_count: Option<i64>,
    pub queried_entities: Option<String>,
    pub execution_id: Option<String>,
    pub chunk_count: i64,
    pub file_name: String,
    pub source_ip: Option<String>,
    pub browser: Option<String>,
    pub platform: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub session_key: Option<String>,
    pub destination: String,
    pub risk_score: i64,
    pub severity: String,
    pub indicators: Vec<String>,
    /// The Salesforce events (one per chunk), kept for evidence.
    pub raw: Vec<Value>,
}

/// Everything Tripline keeps.
pub trait Store: Send + Sync {
    fn create_connection(&self, connection: &ConnectionRecord) -> Result<()>;
    fn connections(&self) -> Result<Vec<ConnectionRecord>>;
    fn connection(&self, id: &str) -> Result<ConnectionRecord>;
    fn set_access_token(&self, id: &str, access_token: &str) -> Result<()>;
    /// Changes the status and appends to the history (when, what, who).
    fn set_status(&self, id: &str, status: &str, detail: Option<&Value>, actor: &str) -> Result<()>;
    fn status_history(&self, id: &str) -> Result<Vec<StatusChange>>;

    fn checkpoint(&self, connection: &str, topic: &str) -> Result<Option<Checkpoint>>;
    /// Records that the topic restarts from EARLIEST with no replay id yet (a new
    /// connection, or after the replay id was lost), as of `since_ms`.
    fn mark_restart(&self, connection: &str, topic: &str, since_ms: i64) -> Result<()>;
    /// Applies login or logout events and moves the checkpoint, in one transaction.
    fn apply_logins(&self, connection: &str, topic: &str, records: &[LoginRecord], checkpoint: &[u8]) -> Result<usize>;
    /// Applies report events and moves the checkpoint (if given: a backfill has
    /// none), in one transaction.
    fn apply_reports(
        &self,
        connection: &str,
        topic: &str,
        batch: &ReportBatch,
        checkpoint: Option<&[u8]>,
    ) -> Result<ReportOutcome>;

    fn session(&self, connection: &str, session_key: &str) -> Result<Option<SessionInfo>>;
    /// Has this user any stored export (for the "first export" indicator)?
    fn user_has_file_events(&self, connection: &str, user_id: &str) -> Result<bool>;
    fn cached_user(&self, connection: &str, user_id: &str) -> Result<Option<UserInfo>>;
    fn replace_scope(&self, connection: &str, users: &[UserInfo]) -> Result<()>;
    fn scope(&self, connection: &str) -> Result<Vec<UserInfo>>;
    fn counter(&self, connection: &str, name: &str) -> Result<i64>;
    /// Records a window the stream lost; `recovered` when the stored object filled it.
    fn record_gap(
        &self,
        connection: &str,
        topic: &str,
        window: (Option<i64>, Option<i64>),
        reason: &str,
        recovered: bool,
    ) -> Result<()>;
    fn gaps(&self, connection: &str) -> Result<Vec<Value>>;

    /// Stores an API token's hash under a unique name.
    fn add_api_token(&self, name: &str, token_hash: &str) -> Result<()>;
    /// The name of the token with this hash, if any.
    fn api_token_name(&self, token_hash: &str) -> Result<Option<String>>;

    fn search(&self, query: &SearchQuery) -> Result<SearchPage>;
    fn search_checkpoint(&self, name: &str) -> Result<i64>;
    fn set_search_checkpoint(&self, name: &str, last_seq: i64) -> Result<()>;
}
