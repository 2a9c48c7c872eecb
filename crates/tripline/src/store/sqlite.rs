//! The embedded store: SQLite in WAL mode, schema migrations by `user_version`.

mod alerts;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sfwire::id::SfId;

use super::lease::{self, Fences, LEASE_COLUMNS, NODE_COLUMNS};
use super::rows::{self, ACCOUNT_COLUMNS, CONNECTION_COLUMNS, Cells, EVENT_COLUMNS, SESSION_COLUMNS, TOKEN_COLUMNS};
use super::sql::{self, Dialect};
use super::tally::{COUNTED_COLUMNS, Counted, Tally};
use super::{
    Checkpoint, ConnectionActivity, Dashboard, HourCount, Lease, Node, Person, Ranked, ReportBatch, ReportOutcome,
    Result, SavedSearch, Store, StoreError,
};
use crate::access::{Account, ApiToken, AuditEntry, ConsoleSession, Role};
use crate::connection::{
    ConnectionRecord, ConnectionStatus, Gap, QuarantinedEvent, ScopeMode, StatusChange, StatusDetail,
};
use crate::events::{Evidence, FileEvent};
use crate::people::{LoginRecord, SalesforceUser, Session};
use crate::search::{SearchPage, SearchQuery};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_typed_status.sql"),
    include_str!("../../migrations/sqlite/0003_tokens_and_audit.sql"),
    include_str!("../../migrations/sqlite/0004_quarantine.sql"),
    include_str!("../../migrations/sqlite/0005_scope_scans_and_gap_windows.sql"),
    include_str!("../../migrations/sqlite/0006_console_accounts.sql"),
    include_str!("../../migrations/sqlite/0007_saved_searches.sql"),
    include_str!("../../migrations/sqlite/0008_dashboard_aggregates.sql"),
    include_str!("../../migrations/sqlite/0009_settings.sql"),
    include_str!("../../migrations/sqlite/0010_alerts.sql"),
    include_str!("../../migrations/sqlite/0011_alert_blocks_appended.sql"),
    include_str!("../../migrations/sqlite/0012_user_source_index.sql"),
    include_str!("../../migrations/sqlite/0013_user_sources.sql"),
    include_str!("../../migrations/sqlite/0014_file_event_key.sql"),
    include_str!("../../migrations/sqlite/0015_leases.sql"),
];

/// Finds a file event by its id (`?1`) through `file_events_key`, the index of the
/// id's first characters (migration 14).
const BY_ID: &str = "substr(id, 1, 8) = substr(?1, 1, 8) AND +id = ?1";

/// One writer connection, and a few read-only ones: in WAL mode readers see the last
/// commit and neither waits on the other, so searches never stall ingest, and
/// attribution reads while a commit runs.
pub struct SqliteStore {
    db: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
    secrets: super::secrets::SecretBox,
    fences: Fences,
}

/// Read-only connections per store.
const READERS: usize = 4;

/// The settings every connection shares.
fn tune(db: &Connection) -> Result<()> {
    // 16 MB of page cache: the default 2 MB sends most B-tree reads to the kernel,
    // and 64 MB was slower (every commit walks the whole cache; measured).
    db.pragma_update(None, "cache_size", -16_000)?;
    // Reads through a memory map need no system call per page (searches, exports).
    db.pragma_update(None, "mmap_size", 4_294_967_296_i64)?;
    db.busy_timeout(std::time::Duration::from_secs(10))?;
    // Room for every statement this store prepares: with rusqlite's default of 16, ingest
    // and the alert evaluator took turns evicting each other's statements on the writer.
    db.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::FromSqlConversionFailure(column, _, cause) => {
                StoreError::Corrupt(format!("column {column}: {cause}"))
            }
            other => StoreError::Database(Box::new(other)),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(format!("stored JSON: {e}"))
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl SqliteStore {
    /// Opens and migrates the database at `path`, which must exist: a mistyped path
    /// is an error naming where it looked, never a new empty database.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if !path.is_file() {
            let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
            return Err(StoreError::NotFound(format!("no Tripline database at {}", shown.display())));
        }
        SqliteStore::open_existing(path)
    }

    /// Creates the database at `path` if there is none (readable by its owner only; its
    /// WAL and shared-memory files take the same permissions), then opens it.
    pub fn create(path: &Path) -> Result<SqliteStore> {
        if !path.exists() {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(path) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::Database(Box::new(e))),
            }
        }
        SqliteStore::open_existing(path)
    }

    fn open_existing(path: &Path) -> Result<SqliteStore> {
        let mut db = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // WAL: readers see the last commit while a write is in progress (this store
        // still serialises its own calls on one connection). NORMAL: a commit survives a
        // process crash (what the exactly-once design needs); only power loss can
        // roll back the newest transactions, never tear them.
        // 8 KB pages for a new database (an existing one keeps its size): half the WAL
        // frames and write calls of 4 KB. Alternating runs on 2026-11-28: catch-up
        // 68-83k against 65-72k events/s at less CPU, search and CSV export no slower.
        db.pragma_update(None, "page_size", 8192)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        tune(&db)?;
        let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            return Err(StoreError::Corrupt(format!(
                "the database is at schema version {version}, newer than this Tripline ({})",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = db.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        // Checkpoint inline every 25,000 pages (100 MB): a background checkpointer never
        // caught up with catch-up ingest and let the WAL grow past 2.7 GB (measured).
        db.pragma_update(None, "wal_autocheckpoint", 25_000)?;
        let secrets = super::secrets::SecretBox::load(&super::secrets::key_file(path))?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                tune(&reader)?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<_>>()?;
        Ok(SqliteStore {
            db: Mutex::new(db),
            readers,
            next_reader: Default::default(),
            secrets,
            fences: Fences::default(),
        })
    }

    /// The writer (and reads that must see the writer's own transaction).
    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free read-only connection (or, when all are busy, the next in turn).
    fn reader(&self) -> MutexGuard<'_, Connection> {
        for reader in &self.readers {
            if let Ok(free) = reader.try_lock() {
                return free;
            }
        }
        let turn = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.readers.len();
        self.readers[turn].lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SqliteStore {
    /// Decrypts a stored connection's tokens.
    /// A change to one account, audited by its username, in one transaction.
    fn account_change(
        &self,
        account_id: i64,
        actor: &str,
        action: &str,
        change: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<usize>,
    ) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let username: String = tx
            .query_row("SELECT username FROM accounts WHERE id = ?1", [account_id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("account {account_id}")))?;
        change(&tx)?;
        audit(&tx, actor, action, &username)?;
        tx.commit()?;
        Ok(())
    }

    /// Refuses a write for `connection` in `tx` once this process's lease on it was
    /// taken over (nothing to check for a connection it never claimed).
    fn fence(&self, tx: &Transaction<'_>, connection: &str) -> Result<()> {
        if let Some(held) = self.fences.held(connection) {
            let stored = tx
                .prepare_cached("SELECT token FROM leases WHERE key = ?1")?
                .query_row([connection], |r| r.get(0))
                .optional()?;
            self.fences.check(connection, held, stored)?;
        }
        Ok(())
    }

    /// A write of `connection`'s ingest, in one transaction, fenced.
    fn ingest_write<T>(&self, connection: &str, write: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let value = write(&tx)?;
        self.fence(&tx, connection)?;
        tx.commit()?;
        Ok(value)
    }

    fn unseal(&self, mut record: ConnectionRecord) -> Result<ConnectionRecord> {
        record.refresh_token = self.secrets.open(&record.refresh_token)?;
        record.access_token = self.secrets.open(&record.access_token)?;
        Ok(record)
    }
}

/// Keeps unreadable events aside; the same event received again adds nothing.
fn keep_aside(tx: &Transaction<'_>, connection: &str, events: &[QuarantinedEvent]) -> Result<()> {
    for e in events {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO quarantine (connection_id, topic, key, received_at, reason, evidence)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![connection, e.topic, e.key, e.received_at, e.reason, e.evidence.to_string()])?;
    }
    Ok(())
}

fn save_checkpoint(tx: &Transaction<'_>, connection: &str, topic: &str, replay_id: &[u8]) -> Result<()> {
    tx.execute(
        "INSERT INTO checkpoints (connection_id, topic, replay_id, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (connection_id, topic) DO UPDATE SET replay_id = excluded.replay_id, updated_at = excluded.updated_at",
        params![connection, topic, replay_id, now_ms()],
    )?;
    Ok(())
}

fn bump(tx: &Transaction<'_>, connection: &str, name: &str, by: i64) -> Result<()> {
    if by != 0 {
        tx.execute(
            "INSERT INTO counters (connection_id, name, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (connection_id, name) DO UPDATE SET value = value + excluded.value",
            params![connection, name, by],
        )?;
    }
    Ok(())
}

/// Marks an event applied; false if it already was.
fn first_sighting(tx: &Transaction<'_>, connection: &str, event_identifier: &str) -> Result<bool> {
    let mut stmt =
        tx.prepare_cached("INSERT OR IGNORE INTO seen_events (connection_id, event_identifier) VALUES (?1, ?2)")?;
    Ok(stmt.execute(params![connection, event_identifier])? == 1)
}

fn audit(tx: &Transaction<'_>, actor: &str, action: &str, target: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO audit_log (at, actor, action, target) VALUES (?1, ?2, ?3, ?4)",
        params![now_ms(), actor, action, target],
    )?;
    Ok(())
}

impl Store for SqliteStore {
    fn create_connection(&self, c: &ConnectionRecord) -> Result<()> {
        let db = self.db();
        let taken: bool = db
            .query_row("SELECT 1 FROM connections WHERE display_name = ?1 COLLATE NOCASE", [&c.display_name], |_| {
                Ok(true)
            })
            .optional()?
            .unwrap_or(false);
        if taken {
            return Err(StoreError::Conflict(format!("a connection named {:?} already exists", c.display_name)));
        }
        db.execute(
            &format!("INSERT INTO connections ({CONNECTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
            params![
                c.id,
                c.display_name,
                c.org_id.as_str(),
                c.instance_url,
                c.login_url,
                c.scope.name(),
                serde_json::to_string(c.scope.entries())?,
                serde_json::to_string(&c.corporate_cidrs)?,
                self.secrets.seal(&c.refresh_token)?,
                self.secrets.seal(&c.access_token)?,
                c.service_user_id.as_str(),
                c.status.as_str(),
                c.status_detail.as_ref().map(serde_json::to_string).transpose()?,
                c.created_at,
                c.scope_scanned_at,
                c.reconciled_to,
            ],
        )?;
        Ok(())
    }

    fn connections(&self) -> Result<Vec<ConnectionRecord>> {
        let db = self.reader();
        let mut stmt = db.prepare(&format!("SELECT {CONNECTION_COLUMNS} FROM connections ORDER BY created_at"))?;
        let rows = stmt.query_map([], |r| rows::connection(r))?.collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(|r| self.unseal(r)).collect()
    }

    fn connection(&self, id: &str) -> Result<ConnectionRecord> {
        let db = self.reader();
        let record = db
            .query_row(&format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = ?1"), [id], |r| {
                rows::connection(r)
            })
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("connection {id}")))?;
        self.unseal(record)
    }

    fn set_tokens(&self, id: &str, access_token: &str, refresh_token: Option<&str>) -> Result<()> {
        let access = self.secrets.seal(access_token)?;
        let refresh = refresh_token.map(|t| self.secrets.seal(t)).transpose()?;
        self.db().execute(
            "UPDATE connections SET access_token = ?2, refresh_token = COALESCE(?3, refresh_token) WHERE id = ?1",
            params![id, access, refresh],
        )?;
        Ok(())
    }

    fn reauthorize(
        &self,
        id: &str,
        refresh_token: &str,
        access_token: &str,
        instance_url: &str,
        actor: &str,
    ) -> Result<()> {
        let (refresh, access) = (self.secrets.seal(refresh_token)?, self.secrets.seal(access_token)?);
        let mut db = self.db();
        let tx = db.transaction()?;
        let changed = tx.execute(
            "UPDATE connections SET refresh_token = ?2, access_token = ?3, instance_url = ?4, status = 'initializing',
             status_detail = NULL WHERE id = ?1",
            params![id, refresh, access, instance_url],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("connection {id}")));
        }
        tx.execute(
            "INSERT INTO status_history (connection_id, at, status, detail, actor) VALUES (?1, ?2, 'initializing', NULL, ?3)",
            params![id, now_ms(), actor],
        )?;
        audit(&tx, actor, "connection.reauthorize", id)?;
        tx.commit()?;
        Ok(())
    }

    fn set_scope(&self, id: &str, scope: &ScopeMode, actor: &str) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let changed = tx.execute(
            "UPDATE connections SET scope_mode = ?2, scope_entries = ?3 WHERE id = ?1",
            params![id, scope.name(), serde_json::to_string(scope.entries())?],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("connection {id}")));
        }
        audit(&tx, actor, &format!("connection.scope ({})", scope.name()), id)?;
        tx.commit()?;
        Ok(())
    }

    fn corporate_ranges(&self) -> Result<Option<Vec<String>>> {
        let text: Option<String> = self
            .reader()
            .query_row("SELECT value FROM settings WHERE name = 'corporate_ranges'", [], |r| r.get(0))
            .optional()?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    fn set_corporate_ranges(&self, ranges: &[String], actor: &str) -> Result<()> {
        let value = serde_json::to_string(ranges)?;
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT INTO settings (name, value) VALUES ('corporate_ranges', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [&value],
        )?;
        tx.execute("UPDATE connections SET corporate_cidrs = ?1", [&value])?;
        audit(&tx, actor, "settings.corporate-ranges", &ranges.join(" "))?;
        tx.commit()?;
        Ok(())
    }

    fn delete_connection(&self, id: &str, actor: &str) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let name: String = tx
            .query_row("SELECT display_name FROM connections WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("connection {id}")))?;
        for table in [
            "checkpoints",
            "seen_events",
            "sessions",
            "login_history",
            "scope_users",
            "counters",
            "gaps",
            "quarantine",
            "status_history",
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE connection_id = ?1"), [id])?;
        }
        tx.execute("DELETE FROM connections WHERE id = ?1", [id])?;
        audit(&tx, actor, "connection.remove", &format!("{id} ({name})"))?;
        tx.commit()?;
        Ok(())
    }

    fn set_status(&self, id: &str, status: ConnectionStatus, detail: Option<&StatusDetail>, actor: &str) -> Result<()> {
        let detail = detail.map(serde_json::to_string).transpose()?;
        let status = status.as_str();
        let mut db = self.db();
        let tx = db.transaction()?;
        let changed = tx.execute(
            "UPDATE connections SET status = ?2, status_detail = ?3 WHERE id = ?1",
            params![id, status, detail],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("connection {id}")));
        }
        tx.execute(
            "INSERT INTO status_history (connection_id, at, status, detail, actor) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, now_ms(), status, detail, actor],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn status_history(&self, id: &str) -> Result<Vec<StatusChange>> {
        let db = self.reader();
        let mut stmt =
            db.prepare("SELECT at, status, detail, actor FROM status_history WHERE connection_id = ?1 ORDER BY rowid")?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(StatusChange { at: r.get(0)?, status: r.parsed(1)?, detail: r.json_opt(2)?, actor: r.get(3)? })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn checkpoint(&self, connection: &str, topic: &str) -> Result<Option<Checkpoint>> {
        let row: Option<(Vec<u8>, i64)> = self
            .reader()
            .query_row(
                "SELECT replay_id, updated_at FROM checkpoints WHERE connection_id = ?1 AND topic = ?2",
                params![connection, topic],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.map(|(replay, at)| if replay.is_empty() { Checkpoint::RestartedAt(at) } else { Checkpoint::At(replay) }))
    }

    fn mark_restart(&self, connection: &str, topic: &str, since_ms: i64) -> Result<()> {
        self.ingest_write(connection, |tx| {
            tx.execute(
                "INSERT INTO checkpoints (connection_id, topic, replay_id, updated_at) VALUES (?1, ?2, x'', ?3)
                 ON CONFLICT (connection_id, topic) DO UPDATE SET replay_id = x'', updated_at = excluded.updated_at",
                params![connection, topic, since_ms],
            )?;
            Ok(())
        })
    }

    fn apply_logins(
        &self,
        connection: &str,
        topic: &str,
        records: &[LoginRecord],
        quarantined: &[QuarantinedEvent],
        checkpoint: &[u8],
    ) -> Result<usize> {
        let mut db = self.db();
        let tx = db.transaction()?;
        keep_aside(&tx, connection, quarantined)?;
        let mut applied = 0;
        for r in records {
            if !first_sighting(&tx, connection, &r.event_identifier)? {
                continue;
            }
            applied += 1;
            let s = &r.session;
            tx.prepare_cached(
                "INSERT INTO login_history (connection_id, event_identifier, kind, user_id, username, source_ip, status, session_key, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                connection,
                r.event_identifier,
                if r.logout { "logout" } else { "login" },
                s.user_id.as_str(),
                s.username,
                s.source_ip,
                r.status,
                s.session_key,
                s.login_at
            ])?;
            if s.session_key.is_empty() {
                continue;
            }
            if r.logout {
                tx.prepare_cached("UPDATE sessions SET logout_at = ?3 WHERE connection_id = ?1 AND session_key = ?2")?
                    .execute(params![connection, s.session_key, s.login_at])?;
            } else if r.success {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO sessions (connection_id, session_key, login_key, user_id, username, source_ip, browser, platform, city, country, login_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?
                .execute(params![
                    connection,
                    s.session_key,
                    s.login_key,
                    s.user_id.as_str(),
                    s.username,
                    s.source_ip,
                    s.browser,
                    s.platform,
                    s.city,
                    s.country,
                    s.login_at
                ])?;
            }
        }
        save_checkpoint(&tx, connection, topic, checkpoint)?;
        self.fence(&tx, connection)?;
        tx.commit()?;
        Ok(applied)
    }

    fn apply_reports(
        &self,
        connection: &str,
        topic: &str,
        batch: &ReportBatch,
        checkpoint: Option<&[u8]>,
    ) -> Result<ReportOutcome> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let mut outcome = ReportOutcome::default();
        keep_aside(&tx, connection, &batch.quarantined)?;
        for id in &batch.out_of_scope {
            if first_sighting(&tx, connection, id)? {
                outcome.out_of_scope += 1;
            }
        }
        bump(&tx, connection, "out_of_scope_exports", outcome.out_of_scope as i64)?;
        let mut users = std::collections::HashSet::new();
        let mut sources = std::collections::HashSet::new();
        let insert = format!(
            "INSERT INTO file_events ({}) VALUES ({})",
            &EVENT_COLUMNS[5..],
            (1..=34).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
        );
        let find = format!("SELECT seq, raw FROM file_events WHERE {BY_ID}");
        for (index, chunk) in batch.exports.iter().enumerate() {
            let e = &chunk.file_event;
            // The file event's id derives from the export's ExecutionIdentifier, so the
            // other chunks of an export (and replays of any chunk) find it by id. This
            // check is what keeps ids unique (the table has no constraint: migration 14).
            let stored: Option<(i64, String)> =
                tx.prepare_cached(&find)?.query_row(params![e.id], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
            if let Some((seq, raw)) = stored {
                let mut all: Vec<Evidence> = serde_json::from_str(&raw)?;
                let seen = all.iter().any(|r| r.event_identifier().as_deref() == Some(&chunk.event_identifier));
                if seen {
                    outcome.duplicates += 1;
                    continue;
                }
                // Another chunk of an export we have: count it, keep its evidence.
                all.extend(e.raw.iter().cloned());
                tx.prepare_cached(
                    "UPDATE file_events SET chunk_count = chunk_count + 1, rows = MAX(rows, ?2), raw = ?3 WHERE seq = ?1",
                )?
                .execute(params![seq, e.rows, serde_json::to_string(&all)?])?;
                outcome.merged_chunks += 1;
                continue;
            }
            tx.prepare_cached(&insert)?.execute(params![
                e.id,
                e.connection_id,
                e.observed_at,
                e.ingested_at,
                e.attribution.as_str(),
                e.user_id.as_str(),
                e.username,
                e.email,
                e.user_name,
                e.report_id,
                e.report_name,
                e.report_description,
                e.report_type.map(|t| t.as_str()),
                e.report_format,
                e.export_format,
                e.operation,
                e.rows,
                e.columns,
                e.column_count,
                e.queried_entities,
                e.execution_id,
                e.chunk_count,
                e.file_name,
                e.source_ip,
                e.browser,
                e.platform,
                e.city,
                e.country,
                e.session_key,
                e.destination.as_str(),
                e.risk_score,
                e.severity.as_str(),
                serde_json::to_string(&e.indicators)?,
                serde_json::to_string(&e.raw)?,
            ])?;
            outcome.new_file_events += 1;
            outcome.new_seqs.push((index, tx.last_insert_rowid()));
            if let Some(ip) = e.source_ip.as_deref()
                && sources.insert((e.user_id.as_str(), ip))
            {
                tx.prepare_cached(
                    "INSERT INTO user_sources (connection_id, user_id, source_ip) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                )?
                .execute(params![e.connection_id, e.user_id.as_str(), ip])?;
            }
            if !users.insert(e.user_id.as_str()) {
                continue; // known from this batch already
            }
            tx.prepare_cached(
                "INSERT INTO known_users (user_id, username, email, name) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id) DO UPDATE SET username = excluded.username, email = excluded.email, name = excluded.name
                 WHERE username IS NOT excluded.username OR email IS NOT excluded.email OR name IS NOT excluded.name",
            )?
            .execute(params![e.user_id.as_str(), e.username, e.email, e.user_name])?;
        }
        if let Some(checkpoint) = checkpoint {
            save_checkpoint(&tx, connection, topic, checkpoint)?;
        }
        self.fence(&tx, connection)?;
        tx.commit()?;
        Ok(outcome)
    }

    fn session(&self, connection: &str, session_key: &str) -> Result<Option<Session>> {
        let db = self.reader();
        let mut stmt = db.prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE connection_id = ?1 AND session_key = ?2"
        ))?;
        Ok(stmt.query_row(params![connection, session_key], |r| rows::session(r)).optional()?)
    }

    fn user_has_file_events(&self, connection: &str, user_id: &SfId) -> Result<bool> {
        let db = self.reader();
        let mut stmt =
            db.prepare_cached("SELECT 1 FROM file_events WHERE connection_id = ?1 AND user_id = ?2 LIMIT 1")?;
        Ok(stmt.exists(params![connection, user_id.as_str()])?)
    }

    fn user_has_exported_from(&self, connection: &str, user_id: &SfId, source_ip: &str) -> Result<bool> {
        let db = self.reader();
        let mut stmt = db.prepare_cached(
            "SELECT 1 FROM user_sources WHERE connection_id = ?1 AND user_id = ?2 AND source_ip = ?3",
        )?;
        Ok(stmt.exists(params![connection, user_id.as_str(), source_ip])?)
    }

    fn replace_scope(&self, connection: &str, users: &[SalesforceUser]) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute("DELETE FROM scope_users WHERE connection_id = ?1", [connection])?;
        tx.execute("UPDATE connections SET scope_scanned_at = ?2 WHERE id = ?1", params![connection, now_ms()])?;
        for u in users {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO scope_users (connection_id, user_id, username, email, name) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![connection, u.user_id.as_str(), u.username, u.email, u.name])?;
        }
        self.fence(&tx, connection)?;
        tx.commit()?;
        Ok(())
    }

    fn scope(&self, connection: &str) -> Result<Vec<SalesforceUser>> {
        let db = self.reader();
        let mut stmt = db.prepare(
            "SELECT user_id, username, email, name FROM scope_users WHERE connection_id = ?1 ORDER BY username",
        )?;
        let rows = stmt
            .query_map([connection], |r| {
                Ok(SalesforceUser { user_id: r.parsed(0)?, username: r.get(1)?, email: r.get(2)?, name: r.get(3)? })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn counter(&self, connection: &str, name: &str) -> Result<i64> {
        Ok(self
            .reader()
            .query_row(
                "SELECT value FROM counters WHERE connection_id = ?1 AND name = ?2",
                params![connection, name],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    fn connection_activity(&self, connection: &str, since_ms: i64) -> Result<ConnectionActivity> {
        // From the aggregator's counts (no index on file_events for this).
        let db = self.reader();
        let hour = since_ms.div_euclid(3_600_000) * 3_600_000;
        let events_since: i64 = db
            .prepare_cached("SELECT IFNULL(SUM(downloads), 0) FROM agg_hourly WHERE hour >= ?1 AND connection_id = ?2")?
            .query_row(params![hour, connection], |r| r.get(0))?;
        let last_event_at = db
            .prepare_cached("SELECT last_at FROM agg_connections WHERE connection_id = ?1")?
            .query_row([connection], |r| r.get(0))
            .optional()?;
        Ok(ConnectionActivity { events_since: events_since as u64, last_event_at })
    }

    fn record_gap(
        &self,
        connection: &str,
        topic: &str,
        from: i64,
        to: Option<i64>,
        reason: &str,
        recovered: bool,
    ) -> Result<()> {
        self.ingest_write(connection, |tx| {
            tx.execute(
                "INSERT INTO gaps (connection_id, topic, detected_at, from_ms, to_ms, reason, recovered) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (connection_id, topic, from_ms) DO UPDATE SET
                     to_ms = excluded.to_ms, reason = excluded.reason, recovered = excluded.recovered",
                params![connection, topic, now_ms(), from, to, reason, recovered],
            )?;
            Ok(())
        })
    }

    fn resolve_gaps(&self, connection: &str, topic: &str, from: i64, to: i64) -> Result<()> {
        self.ingest_write(connection, |tx| {
            tx.execute(
                "UPDATE gaps SET recovered = 1, reason = reason || '; re-read later from ReportEvent'
                 WHERE connection_id = ?1 AND topic = ?2 AND recovered = 0 AND from_ms >= ?3 AND IFNULL(to_ms, from_ms) <= ?4",
                params![connection, topic, from, to],
            )?;
            Ok(())
        })
    }

    fn set_reconciled_to(&self, connection: &str, to_ms: i64) -> Result<()> {
        self.ingest_write(connection, |tx| {
            tx.execute("UPDATE connections SET reconciled_to = ?2 WHERE id = ?1", params![connection, to_ms])?;
            Ok(())
        })
    }

    fn gaps(&self, connection: &str) -> Result<Vec<Gap>> {
        let db = self.reader();
        let mut stmt = db.prepare(
            "SELECT topic, detected_at, from_ms, to_ms, reason, recovered FROM gaps WHERE connection_id = ?1 ORDER BY rowid",
        )?;
        let rows = stmt
            .query_map([connection], |r| {
                Ok(Gap {
                    topic: r.get(0)?,
                    detected_at: r.get(1)?,
                    from_ms: r.get(2)?,
                    to_ms: r.get(3)?,
                    reason: r.get(4)?,
                    recovered: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn quarantine(&self, connection: &str, limit: usize) -> Result<(usize, Vec<QuarantinedEvent>)> {
        let db = self.reader();
        let count: i64 =
            db.query_row("SELECT COUNT(*) FROM quarantine WHERE connection_id = ?1", [connection], |r| r.get(0))?;
        let mut stmt = db.prepare(
            "SELECT topic, key, received_at, reason, evidence FROM quarantine WHERE connection_id = ?1
             ORDER BY received_at DESC LIMIT ?2",
        )?;
        let newest = stmt
            .query_map(params![connection, limit as i64], |r| {
                Ok(QuarantinedEvent {
                    topic: r.get(0)?,
                    key: r.get(1)?,
                    received_at: r.get(2)?,
                    reason: r.get(3)?,
                    evidence: r.json(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((count as usize, newest))
    }

    fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        let (sql, params) = sql::search(Dialect::Sqlite, query, EVENT_COLUMNS, now_ms())?;
        let db = self.reader();
        let mut stmt = db.prepare_cached(&sql)?;
        let mut events = stmt
            .query_map(rusqlite::params_from_iter(params.iter()), |r| rows::event(r))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let next = sql::next_cursor(query, &mut events);
        Ok(SearchPage { events, next })
    }

    fn aggregate(&self, max_events: usize) -> Result<usize> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let last: i64 = tx.query_row("SELECT last_seq FROM agg_position WHERE id = 1", [], |r| r.get(0))?;
        let mut tally = Tally::default();
        let (mut n, mut top) = (0usize, last);
        {
            let mut read = tx.prepare_cached(&format!(
                "SELECT {COUNTED_COLUMNS} FROM file_events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?;
            let mut rows = read.query(params![last, max_events as i64])?;
            while let Some(r) = rows.next()? {
                tally.add(Counted {
                    observed_at: r.get(1)?,
                    connection_id: r.get(2)?,
                    destination: r.get(3)?,
                    severity: r.parsed(4)?,
                    rows: r.get(5)?,
                    user_id: r.get(6)?,
                    username: r.get(7)?,
                    report_id: r.get(8)?,
                    report_name: r.get(9)?,
                });
                n += 1;
                top = r.get(0)?;
            }
        }
        let Tally { hourly, user_hours, user_days, report_hours, report_days, users, connections } = &tally;
        for ((hour, connection, destination, severity), sum) in hourly {
            tx.prepare_cached(
                "INSERT INTO agg_hourly (hour, connection_id, destination, severity, downloads, rows) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT DO UPDATE SET downloads = downloads + excluded.downloads, rows = rows + excluded.rows",
            )?
            .execute(params![hour, connection, destination, severity, sum.downloads, sum.rows])?;
        }
        for (table, sums) in [("agg_user_hourly", user_hours), ("agg_user_daily", user_days)] {
            let mut upsert = tx.prepare_cached(&format!(
                "INSERT INTO {table} (hour, user_id, username, downloads, rows) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT DO UPDATE SET downloads = downloads + excluded.downloads, rows = rows + excluded.rows,
                 username = COALESCE(excluded.username, username)"
            ))?;
            for ((at, user), sum) in sums {
                upsert.execute(params![at, user, sum.name, sum.downloads, sum.rows])?;
            }
        }
        for (table, sums) in [("agg_report_hourly", report_hours), ("agg_report_daily", report_days)] {
            let mut upsert = tx.prepare_cached(&format!(
                "INSERT INTO {table} (hour, report, report_name, downloads, rows) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT DO UPDATE SET downloads = downloads + excluded.downloads, rows = rows + excluded.rows,
                 report_name = COALESCE(excluded.report_name, report_name)"
            ))?;
            for ((at, report), sum) in sums {
                upsert.execute(params![at, report, sum.name, sum.downloads, sum.rows])?;
            }
        }
        for (user, sum) in users {
            tx.prepare_cached(
                "INSERT INTO agg_users (user_id, username, downloads, rows, last_at, worst) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT DO UPDATE SET downloads = downloads + excluded.downloads, rows = rows + excluded.rows,
                 username = COALESCE(excluded.username, username), last_at = MAX(last_at, excluded.last_at),
                 worst = MAX(worst, excluded.worst)",
            )?
            .execute(params![user, sum.name, sum.downloads, sum.rows, sum.last_at, sum.worst])?;
        }
        for (connection, at) in connections {
            tx.prepare_cached(
                "INSERT INTO agg_connections (connection_id, last_at) VALUES (?1, ?2)
                 ON CONFLICT DO UPDATE SET last_at = MAX(last_at, excluded.last_at)",
            )?
            .execute(params![connection, at])?;
        }
        if n > 0 {
            tx.execute("UPDATE agg_position SET last_seq = ?1 WHERE id = 1", [top])?;
        }
        tx.commit()?;
        Ok(n)
    }

    fn dashboard(&self, from_hour: i64, to_hour: i64, top: usize) -> Result<Dashboard> {
        let db = self.reader();
        let mut hours: Vec<HourCount> = Vec::new();
        let mut stmt = db.prepare_cached(
            "SELECT hour, destination, SUM(downloads), SUM(rows) FROM agg_hourly
             WHERE hour >= ?1 AND hour < ?2 GROUP BY hour, destination ORDER BY hour",
        )?;
        let mut rows = stmt.query(params![from_hour, to_hour])?;
        while let Some(r) = rows.next()? {
            let hour: i64 = r.get(0)?;
            if hours.last().is_none_or(|h| h.hour != hour) {
                hours.push(HourCount { hour, ..HourCount::default() });
            }
            let entry = hours.last_mut().expect("pushed");
            let downloads = r.get::<_, i64>(2)? as u64;
            match r.parsed::<crate::events::Destination>(1)? {
                crate::events::Destination::Corporate => entry.corporate += downloads,
                crate::events::Destination::Unmonitored => entry.unmonitored += downloads,
            }
            entry.rows += r.get::<_, i64>(3)? as u64;
        }
        drop(rows);
        let mut severities = Vec::new();
        let mut stmt = db.prepare_cached(
            "SELECT severity, SUM(downloads) FROM agg_hourly WHERE hour >= ?1 AND hour < ?2 GROUP BY severity",
        )?;
        let mut rows = stmt.query(params![from_hour, to_hour])?;
        while let Some(r) = rows.next()? {
            severities.push((r.parsed::<crate::risk::Severity>(0)?, r.get::<_, i64>(1)? as u64));
        }
        drop(rows);
        severities.sort();
        let ranked = |sql: &str| -> Result<Vec<Ranked>> {
            let mut stmt = db.prepare_cached(sql)?;
            let list = stmt
                .query_map(params![from_hour, to_hour, top as i64], |r| {
                    let key: String = r.get(0)?;
                    Ok(Ranked {
                        label: r.get::<_, Option<String>>(1)?.unwrap_or_else(|| key.clone()),
                        key,
                        downloads: r.get::<_, i64>(2)? as u64,
                        rows: r.get::<_, i64>(3)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(list)
        };
        // Whole days come from the daily tables (30 times fewer rows to add up).
        let whole_days = from_hour % 86_400_000 == 0 && to_hour % 86_400_000 == 0;
        let (users, reports) =
            if whole_days { ("agg_user_daily", "agg_report_daily") } else { ("agg_user_hourly", "agg_report_hourly") };
        let top_users = ranked(&format!(
            "SELECT user_id, MAX(username), SUM(downloads) AS d, SUM(rows) FROM {users}
             WHERE hour >= ?1 AND hour < ?2 GROUP BY user_id ORDER BY d DESC, user_id LIMIT ?3"
        ))?;
        let top_reports = ranked(&format!(
            "SELECT report, MAX(report_name), SUM(downloads) AS d, SUM(rows) FROM {reports}
             WHERE hour >= ?1 AND hour < ?2 GROUP BY report ORDER BY d DESC, report LIMIT ?3"
        ))?;
        Ok(Dashboard { hours, top_users, top_reports, severities })
    }

    fn people(&self) -> Result<Vec<Person>> {
        let db = self.reader();
        let mut stmt = db.prepare_cached(
            "SELECT u.user_id, COALESCE(s.username, a.username), s.email, s.name, s.user_id IS NOT NULL,
                    a.downloads, a.rows, a.last_at, a.worst
             FROM (SELECT user_id FROM scope_users UNION SELECT user_id FROM agg_users) u
             LEFT JOIN (SELECT user_id, MAX(username) AS username, MAX(email) AS email, MAX(name) AS name
                        FROM scope_users GROUP BY user_id) s ON s.user_id = u.user_id
             LEFT JOIN agg_users a ON a.user_id = u.user_id
             ORDER BY a.last_at IS NULL, a.last_at DESC, 2",
        )?;
        let people = stmt
            .query_map([], |r| {
                let worst: Option<i64> = r.get(8)?;
                Ok(Person {
                    user_id: r.get(0)?,
                    username: r.get(1)?,
                    email: r.get(2)?,
                    name: r.get(3)?,
                    monitored: r.get(4)?,
                    downloads: r.get::<_, Option<i64>>(5)?.unwrap_or(0) as u64,
                    rows: r.get::<_, Option<i64>>(6)?.unwrap_or(0) as u64,
                    last_at: r.get(7)?,
                    worst: worst.and_then(|w| crate::risk::Severity::ALL.get(w as usize).copied()),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(people)
    }

    fn person_hours(&self, user_id: &str, from_hour: i64, to_hour: i64) -> Result<Vec<(i64, u64, u64)>> {
        let db = self.reader();
        let mut stmt = db.prepare_cached(
            "SELECT hour, downloads, rows FROM agg_user_hourly WHERE user_id = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour",
        )?;
        let hours = stmt
            .query_map(params![user_id, from_hour, to_hour], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(hours)
    }

    fn person_sessions(&self, user_id: &str, limit: usize) -> Result<Vec<Session>> {
        let db = self.reader();
        let mut stmt = db.prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = ?1 ORDER BY login_at DESC LIMIT ?2"
        ))?;
        let sessions = stmt
            .query_map(params![user_id, limit as i64], |r| rows::session(r))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(sessions)
    }

    fn count(&self, query: &SearchQuery, cap: u64) -> Result<u64> {
        let (sql, params) = sql::count(Dialect::Sqlite, query, cap, now_ms())?;
        let db = self.reader();
        let n: i64 = db.prepare_cached(&sql)?.query_row(rusqlite::params_from_iter(params.iter()), |r| r.get(0))?;
        Ok(n as u64)
    }

    fn file_event(&self, id: &str) -> Result<Option<FileEvent>> {
        Ok(self
            .reader()
            .query_row(&format!("SELECT {EVENT_COLUMNS} FROM file_events WHERE {BY_ID}"), [id], |r| rows::event(r))
            .optional()?)
    }

    fn save_search(&self, name: &str, query: &str, owner: &str) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO saved_searches (name, query, owner, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, query, owner, now_ms()],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("a saved search named {name:?} already exists")));
        }
        audit(&tx, owner, "search.save", name)?;
        tx.commit()?;
        Ok(())
    }

    fn saved_searches(&self) -> Result<Vec<SavedSearch>> {
        let db = self.reader();
        let mut stmt = db.prepare("SELECT id, name, query, owner, created_at FROM saved_searches ORDER BY name")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SavedSearch {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    query: r.get(2)?,
                    owner: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn delete_saved_search(&self, id: i64) -> Result<()> {
        if self.db().execute("DELETE FROM saved_searches WHERE id = ?1", [id])? == 0 {
            return Err(StoreError::NotFound(format!("saved search {id}")));
        }
        Ok(())
    }

    fn add_api_token(&self, name: &str, token_hash: &str, expires_at: Option<i64>, actor: &str) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO api_tokens (name, token_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, token_hash, now_ms(), expires_at],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("an API token named {name:?} already exists")));
        }
        audit(&tx, actor, "api-token.create", name)?;
        tx.commit()?;
        Ok(())
    }

    fn api_token(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        Ok(self
            .reader()
            .query_row(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?1"), [token_hash], |r| {
                rows::token(r)
            })
            .optional()?)
    }

    fn touch_api_token(&self, name: &str, at: i64) -> Result<()> {
        self.db().execute("UPDATE api_tokens SET last_used_at = ?2 WHERE name = ?1", params![name, at])?;
        Ok(())
    }

    fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let db = self.reader();
        let mut stmt = db.prepare(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, rowid"))?;
        let rows = stmt.query_map([], |r| rows::token(r))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn revoke_api_token(&self, name: &str, actor: &str) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let changed = tx.execute(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE name = ?1",
            params![name, now_ms()],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("API token {name:?}")));
        }
        audit(&tx, actor, "api-token.revoke", name)?;
        tx.commit()?;
        Ok(())
    }

    fn audit(&self, actor: &str, action: &str, target: &str) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        audit(&tx, actor, action, target)?;
        tx.commit()?;
        Ok(())
    }

    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let db = self.reader();
        let mut stmt =
            db.prepare("SELECT at, actor, action, target FROM audit_log ORDER BY at DESC, rowid DESC LIMIT ?1")?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(AuditEntry { at: r.get(0)?, actor: r.get(1)?, action: r.get(2)?, target: r.get(3)? })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn create_account(&self, username: &str, role: Role, password_hash: &str, actor: &str) -> Result<Account> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let created_at = now_ms();
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO accounts (username, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![username, role.as_str(), password_hash, created_at],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("an account named {username:?} already exists")));
        }
        let account = Account { id: tx.last_insert_rowid(), username: username.to_owned(), role, created_at };
        audit(&tx, actor, &format!("account.create ({})", role.as_str()), username)?;
        tx.commit()?;
        Ok(account)
    }

    fn accounts(&self) -> Result<Vec<Account>> {
        let db = self.reader();
        let mut stmt = db.prepare(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY username"))?;
        let rows = stmt.query_map([], |r| rows::account(r))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn set_account_role(&self, account_id: i64, role: Role, actor: &str) -> Result<()> {
        self.account_change(account_id, actor, &format!("account.role ({})", role.as_str()), |tx| {
            tx.execute("UPDATE accounts SET role = ?2 WHERE id = ?1", params![account_id, role.as_str()])
        })
    }

    fn set_account_password(&self, account_id: i64, password_hash: &str, actor: &str) -> Result<()> {
        self.account_change(account_id, actor, "account.password", |tx| {
            tx.execute("UPDATE accounts SET password_hash = ?2 WHERE id = ?1", params![account_id, password_hash])?;
            tx.execute("DELETE FROM console_sessions WHERE account_id = ?1", [account_id])
        })
    }

    fn delete_account(&self, account_id: i64, actor: &str) -> Result<()> {
        self.account_change(account_id, actor, "account.delete", |tx| {
            tx.execute("DELETE FROM console_sessions WHERE account_id = ?1", [account_id])?;
            tx.execute("DELETE FROM accounts WHERE id = ?1", [account_id])
        })
    }

    fn account_credentials(&self, username: &str) -> Result<Option<(Account, String)>> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE username = ?1"),
                [username],
                |r| Ok((rows::account(r)?, r.get(4)?)),
            )
            .optional()?)
    }

    fn create_console_session(&self, token_hash: &str, account_id: i64, csrf: &str, expires_at: i64) -> Result<()> {
        let db = self.db();
        let now = now_ms();
        // Expired sessions go as new ones come.
        db.execute("DELETE FROM console_sessions WHERE expires_at <= ?1", [now])?;
        db.execute(
            "INSERT INTO console_sessions (token_hash, account_id, csrf, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![token_hash, account_id, csrf, now, expires_at],
        )?;
        Ok(())
    }

    fn console_session(&self, token_hash: &str, now_ms: i64) -> Result<Option<ConsoleSession>> {
        Ok(self
            .reader()
            .query_row(
                &format!(
                    "SELECT {ACCOUNT_COLUMNS}, s.csrf, s.expires_at FROM console_sessions s
                     JOIN accounts ON accounts.id = s.account_id
                     WHERE s.token_hash = ?1 AND s.expires_at > ?2"
                ),
                params![token_hash, now_ms],
                |r| Ok(ConsoleSession { account: rows::account(r)?, csrf: r.get(4)?, expires_at: r.get(5)? }),
            )
            .optional()?)
    }

    fn end_console_session(&self, token_hash: &str) -> Result<()> {
        self.db().execute("DELETE FROM console_sessions WHERE token_hash = ?1", [token_hash])?;
        Ok(())
    }

    fn end_console_sessions(&self, account_id: i64) -> Result<usize> {
        Ok(self.db().execute("DELETE FROM console_sessions WHERE account_id = ?1", [account_id])?)
    }

    fn search_checkpoint(&self, name: &str) -> Result<i64> {
        Ok(self
            .reader()
            .query_row("SELECT last_seq FROM search_checkpoints WHERE name = ?1", [name], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    fn set_search_checkpoint(&self, name: &str, last_seq: i64) -> Result<()> {
        self.db().execute(
            "INSERT INTO search_checkpoints (name, last_seq) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)",
            params![name, last_seq],
        )?;
        Ok(())
    }

    fn retention(&self) -> Result<Option<u32>> {
        let text: Option<String> = self
            .reader()
            .query_row("SELECT value FROM settings WHERE name = 'retention_days'", [], |r| r.get(0))
            .optional()?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?.flatten())
    }

    fn set_retention(&self, days: Option<u32>, actor: &str) -> Result<()> {
        let value = serde_json::to_string(&days)?;
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT INTO settings (name, value) VALUES ('retention_days', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [&value],
        )?;
        let shown = days.map_or_else(|| "for ever".to_owned(), |d| format!("{d} days"));
        audit(&tx, actor, "settings.retention", &shown)?;
        tx.commit()?;
        Ok(())
    }

    fn remove_before(&self, before_ms: i64) -> Result<u64> {
        const BATCH: i64 = 10_000;
        let mut db = self.db();
        let tx = db.transaction()?;
        let removed = tx.execute(
            "DELETE FROM file_events WHERE seq IN
                 (SELECT seq FROM file_events WHERE observed_at < ?1 ORDER BY observed_at LIMIT ?2)",
            params![before_ms, BATCH],
        )?;
        if (removed as i64) < BATCH {
            let (hour, day) =
                (before_ms.div_euclid(3_600_000) * 3_600_000, before_ms.div_euclid(86_400_000) * 86_400_000);
            for table in ["agg_hourly", "agg_user_hourly", "agg_report_hourly"] {
                tx.execute(&format!("DELETE FROM {table} WHERE hour < ?1"), [hour])?;
            }
            for table in ["agg_user_daily", "agg_report_daily"] {
                tx.execute(&format!("DELETE FROM {table} WHERE hour < ?1"), [day])?;
            }
        }
        tx.commit()?;
        Ok(removed as u64)
    }

    fn heartbeat(&self, node: &Node) -> Result<()> {
        self.db().execute(
            &format!(
                "INSERT INTO nodes ({NODE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET incarnation = excluded.incarnation, started_at = excluded.started_at,
                     heartbeat_at = excluded.heartbeat_at, address = excluded.address"
            ),
            params![node.name, node.incarnation, node.started_at, now_ms(), node.address],
        )?;
        Ok(())
    }

    fn nodes(&self) -> Result<Vec<Node>> {
        let db = self.reader();
        let mut stmt = db.prepare(&format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY heartbeat_at DESC, name"))?;
        let rows = stmt.query_map([], |r| lease::node(r))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn leases(&self) -> Result<Vec<Lease>> {
        let db = self.reader();
        let mut stmt = db.prepare(&format!("SELECT {LEASE_COLUMNS} FROM leases ORDER BY key"))?;
        let rows = stmt.query_map([], |r| lease::lease(r))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn claim(&self, key: &str, node: &Node, ttl_ms: i64) -> Result<Option<Lease>> {
        let sql = lease::CLAIM.replace('$', "?").replace("{now}", "?5");
        let claimed = self
            .db()
            .prepare_cached(&sql)?
            .query_row(params![key, node.name, node.incarnation, ttl_ms, now_ms()], |r| lease::lease(r))
            .optional()?;
        if let Some(lease) = &claimed {
            self.fences.claimed(lease);
        }
        Ok(claimed)
    }

    fn release(&self, key: &str, node: &Node) -> Result<()> {
        self.db().execute(&lease::RELEASE.replace('$', "?"), params![key, node.name, node.incarnation])?;
        self.fences.released(key);
        Ok(())
    }

    fn request_restart(&self, key: &str, requested: bool) -> Result<()> {
        self.db().execute("UPDATE leases SET restart = ?2 WHERE key = ?1", params![key, requested])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::search::{Field, Filter, Sort};
    use crate::store::ExportChunk;

    /// The lookup that keeps file event ids unique is a search of the key index, not a
    /// scan (SQLite 3.40 rewrites `substr(id, ...)` through a plain `id = ?` and scans;
    /// the unary plus in `BY_ID` keeps it from doing so).
    #[test]
    fn a_file_event_is_found_by_id_through_the_key_index() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::create(&dir.path().join("t.db")).expect("store");
        let plan: String = store
            .db()
            .query_row(&format!("EXPLAIN QUERY PLAN SELECT seq FROM file_events WHERE {BY_ID}"), ["x"], |r| r.get(3))
            .expect("plan");
        assert!(plan.starts_with("SEARCH file_events USING INDEX file_events_key"), "{plan}");
    }

    /// Text that is often absent, empty or repeated, as real columns are.
    fn text() -> impl Strategy<Value = Option<String>> {
        prop_oneof![Just(None), Just(Some(String::new())), "[a-c|]{0,2}".prop_map(Some)]
    }

    fn event() -> impl Strategy<Value = (Option<String>, Option<String>, Option<String>, i64, i64)> {
        (text(), text(), text(), 0i64..4, 0i64..4)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48)
        ))]

        /// Every field the API offers for sorting, either way, pages through each
        /// result exactly once, in order.
        #[test]
        fn paging_by_any_field_visits_each_result_once_in_order(
            events in prop::collection::vec(event(), 0..40),
            field in prop::sample::select(Field::ALL.iter().copied().filter(|f| f.is_sortable()).collect::<Vec<_>>()),
            descending: bool,
            page_size in 1usize..6,
        ) {
            let dir = tempfile::tempdir().expect("dir");
            let store = SqliteStore::create(&dir.path().join("t.db")).expect("store");
            let exports = events
                .iter()
                .enumerate()
                .map(|(i, (name, email, source_ip, at, rows))| {
                    let mut e = FileEvent::sample();
                    e.id = format!("fe-{i}");
                    e.username = name.clone();
                    e.report_name = name.clone();
                    e.email = email.clone();
                    e.source_ip = source_ip.clone();
                    e.operation = email.clone();
                    e.observed_at = *at;
                    e.rows = *rows;
                    e.risk_score = *rows % 2;
                    e.raw = vec![Evidence::of(&serde_json::json!({ "EventIdentifier": format!("ev-{i}") }))];
                    ExportChunk { event_identifier: format!("ev-{i}"), file_event: e }
                })
                .collect();
            let batch = ReportBatch { exports, ..ReportBatch::default() };
            store.apply_reports("c", "/event/ReportEventStream", &batch, Some(b"r")).expect("apply");
            let mut query = SearchQuery {
                from_ms: 0,
                to_ms: 10,
                filter: Filter::All(Vec::new()),
                sort: Sort { field, descending },
                page_size,
                after: None,
                after_seq: None,
            };
            let mut seen = Vec::new();
            for _ in 0..=events.len() + 1 {
                let page = store.search(&query).expect("page");
                seen.extend(page.events);
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => break,
                }
            }
            let mut seqs: Vec<i64> = seen.iter().map(|e| e.seq).collect();
            prop_assert_eq!(seqs.len(), events.len(), "every result once, and the paging ended");
            seqs.sort_unstable();
            seqs.dedup();
            prop_assert_eq!(seqs.len(), events.len(), "no result twice");
            let key = |e: &FileEvent| {
                let v = field.cursor_value(e);
                (if field.is_numeric() { v.parse::<i64>().expect("number") } else { 0 }, v, e.seq)
            };
            for pair in seen.windows(2) {
                let (a, b) = (key(&pair[0]), key(&pair[1]));
                let ordered = if field.is_numeric() { (a.0, a.2) < (b.0, b.2) } else { (&a.1, a.2) < (&b.1, b.2) };
                prop_assert!(ordered != descending, "{a:?} then {b:?}, descending {descending}");
            }
        }
    }
}
