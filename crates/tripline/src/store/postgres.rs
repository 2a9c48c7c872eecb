//! The shared store: PostgreSQL, for several orgs, long retention and several
//! Tripline nodes. The same behaviour as `sqlite`, tested by the same suite.
//!
//! File events take their `seq` under a transaction-wide advisory lock held until
//! commit, so `seq` order is commit order: readers that follow `seq` (the aggregator,
//! the alert evaluator, `--checkpoint`) never pass an event that commits later with a
//! smaller one.

mod alerts;
mod db;
pub mod import;
mod partitions;
pub mod private;
mod reports;

use sfwire::id::SfId;
use tokio_postgres::GenericClient;

use self::db::{Arg, Db, Pool, args, boxed, unique};
use super::lease::{self, Fences, LEASE_COLUMNS, NODE_COLUMNS};
use super::rows::{self, ACCOUNT_COLUMNS, CONNECTION_COLUMNS, Cells, EVENT_COLUMNS, SESSION_COLUMNS, TOKEN_COLUMNS};
use super::secrets::SecretBox;
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
use crate::events::FileEvent;
use crate::people::{LoginRecord, SalesforceUser, Session};
use crate::search::{SearchPage, SearchQuery};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_leases.sql"),
];

/// The database's clock in epoch milliseconds: leases are timed by the one clock all
/// nodes share.
const NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The advisory lock under which file events are numbered (see the module comment).
const FILE_EVENT_LOCK: i64 = 0x7472_6970_6c01;
/// The advisory lock under which the schema is migrated.
const MIGRATION_LOCK: i64 = 0x7472_6970_6c02;

pub struct PostgresStore {
    pool: Pool,
    secrets: SecretBox,
    fences: Fences,
    partitions: partitions::Partitions,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host/db`, with
    /// `?sslmode=require` to insist on TLS) and brings its schema up to date; `secrets`
    /// seals tokens (every node must share the key).
    pub fn connect(url: &str, secrets: SecretBox) -> Result<PostgresStore> {
        PostgresStore::connect_with_ca(url, secrets, None)
    }

    /// `connect`, trusting a private CA's certificates (PEM) beside the public roots.
    pub fn connect_with_ca(url: &str, secrets: SecretBox, ca_pem: Option<&str>) -> Result<PostgresStore> {
        let store = PostgresStore {
            pool: Pool::new(url, ca_pem)?,
            secrets,
            fences: Fences::default(),
            partitions: Default::default(),
        };
        store.migrate()?;
        // This month's and the next month's partitions, made ahead of their events.
        let now = now_ms();
        let made = store.pool.write(|tx| {
            tx.one("SELECT pg_advisory_xact_lock($1)", &[&FILE_EVENT_LOCK])?;
            store.partitions.ensure(tx, [now, partitions::month_of(now).end])
        })?;
        store.partitions.known(made);
        Ok(store)
    }

    /// Applies the migrations this database has not had, one transaction each, while
    /// holding a lock, so that nodes starting together migrate once.
    fn migrate(&self) -> Result<()> {
        self.pool.write(|tx| {
            tx.one("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
            let version: Option<i64> = tx.opt("SELECT version FROM schema_version", &[])?.map(|r| r.get(0));
            let version = version.unwrap_or(0);
            let known = MIGRATIONS.len() as i64;
            if version > known {
                return Err(StoreError::Corrupt(format!(
                    "the database is at schema version {version}, newer than this Tripline ({known})"
                )));
            }
            for sql in &MIGRATIONS[version as usize..] {
                tx.batch(sql)?;
            }
            tx.exec("DELETE FROM schema_version", &[])?;
            tx.exec("INSERT INTO schema_version (version) VALUES ($1)", &[&known])?;
            Ok(())
        })
    }

    /// Refuses a write for `connection` once this process's lease on it was taken
    /// over. The lease row stays share-locked to the commit, so a takeover waits for
    /// this transaction rather than slipping in between the check and the commit.
    fn fence(&self, tx: &mut Tx<'_, '_>, connection: &str) -> Result<()> {
        if let Some(held) = self.fences.held(connection) {
            let stored = tx
                .opt("SELECT token FROM leases WHERE key = $1 FOR SHARE", &[&connection])?
                .map(|r| r.int(0))
                .transpose()?;
            self.fences.check(connection, held, stored)?;
        }
        Ok(())
    }

    fn unseal(&self, mut record: ConnectionRecord) -> Result<ConnectionRecord> {
        record.refresh_token = self.secrets.open(&record.refresh_token)?;
        record.access_token = self.secrets.open(&record.access_token)?;
        Ok(record)
    }

    /// A change to one account, audited by its username, in one transaction.
    fn account_change(
        &self,
        account_id: i64,
        actor: &str,
        action: &str,
        change: impl FnOnce(&mut Db<'_, tokio_postgres::Transaction<'_>>) -> Result<()>,
    ) -> Result<()> {
        self.pool.write(|tx| {
            let username: String = tx
                .opt("SELECT username FROM accounts WHERE id = $1", &[&account_id])?
                .ok_or_else(|| StoreError::NotFound(format!("account {account_id}")))?
                .get(0);
            change(tx)?;
            audit(tx, actor, action, &username)
        })
    }
}

/// An audit entry, in the transaction of the change it records.
fn audit<C: GenericClient + Sync>(tx: &mut Db<'_, C>, actor: &str, action: &str, target: &str) -> Result<()> {
    tx.exec(
        "INSERT INTO audit_log (at, actor, action, target) VALUES ($1, $2, $3, $4)",
        &[&now_ms(), &actor, &action, &target],
    )?;
    Ok(())
}

type Tx<'a, 'b> = Db<'a, tokio_postgres::Transaction<'b>>;

/// Keeps unreadable events aside; the same event received again adds nothing.
fn keep_aside(tx: &mut Tx<'_, '_>, connection: &str, events: &[QuarantinedEvent]) -> Result<()> {
    for e in events {
        tx.exec(
            "INSERT INTO quarantine (connection_id, topic, key, received_at, reason, evidence)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[&connection, &e.topic, &e.key, &e.received_at, &e.reason, &e.evidence.to_string()],
        )?;
    }
    Ok(())
}

fn save_checkpoint(tx: &mut Tx<'_, '_>, connection: &str, topic: &str, replay_id: &[u8]) -> Result<()> {
    tx.exec(
        "INSERT INTO checkpoints (connection_id, topic, replay_id, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (connection_id, topic) DO UPDATE SET replay_id = excluded.replay_id, updated_at = excluded.updated_at",
        &[&connection, &topic, &replay_id, &now_ms()],
    )?;
    Ok(())
}

/// Marks an event applied; false if it already was.
fn first_sighting(tx: &mut Tx<'_, '_>, connection: &str, event_identifier: &str) -> Result<bool> {
    Ok(tx.exec(
        "INSERT INTO seen_events (connection_id, event_identifier) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&connection, &event_identifier],
    )? == 1)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store for PostgresStore {
    fn create_connection(&self, c: &ConnectionRecord) -> Result<()> {
        let (refresh, access) = (self.secrets.seal(&c.refresh_token)?, self.secrets.seal(&c.access_token)?);
        let entries = serde_json::to_string(c.scope.entries())?;
        let cidrs = serde_json::to_string(&c.corporate_cidrs)?;
        let detail = c.status_detail.as_ref().map(serde_json::to_string).transpose()?;
        let values: [Arg<'_>; 16] = [
            &c.id,
            &c.display_name,
            &c.org_id.as_str(),
            &c.instance_url,
            &c.login_url,
            &c.scope.name(),
            &entries,
            &cidrs,
            &refresh,
            &access,
            &c.service_user_id.as_str(),
            &c.status.as_str(),
            &detail,
            &c.created_at,
            &c.scope_scanned_at,
            &c.reconciled_to,
        ];
        let placeholders = (1..=16).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        self.pool.write(|tx| {
            tx.try_exec(&format!("INSERT INTO connections ({CONNECTION_COLUMNS}) VALUES ({placeholders})"), &values)?
                .map_err(|e| unique(e, &format!("a connection named {:?}", c.display_name)))?;
            Ok(())
        })
    }

    fn connections(&self) -> Result<Vec<ConnectionRecord>> {
        let rows = self.pool.read(|db| {
            db.rows(&format!("SELECT {CONNECTION_COLUMNS} FROM connections ORDER BY created_at, id"), &[])
        })?;
        rows.iter().map(|r| self.unseal(rows::connection(r)?)).collect()
    }

    fn connection(&self, id: &str) -> Result<ConnectionRecord> {
        let row = self
            .pool
            .read(|db| db.opt(&format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = $1"), &[&id]))?
            .ok_or_else(|| StoreError::NotFound(format!("connection {id}")))?;
        self.unseal(rows::connection(&row)?)
    }

    fn set_tokens(&self, id: &str, access_token: &str, refresh_token: Option<&str>) -> Result<()> {
        let access = self.secrets.seal(access_token)?;
        let refresh = refresh_token.map(|t| self.secrets.seal(t)).transpose()?;
        self.pool.write(|tx| {
            tx.exec(
                "UPDATE connections SET access_token = $2, refresh_token = COALESCE($3, refresh_token) WHERE id = $1",
                &[&id, &access, &refresh],
            )?;
            Ok(())
        })
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
        self.pool.write(|tx| {
            let changed = tx.exec(
                "UPDATE connections SET refresh_token = $2, access_token = $3, instance_url = $4,
                 status = 'initializing', status_detail = NULL WHERE id = $1",
                &[&id, &refresh, &access, &instance_url],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("connection {id}")));
            }
            tx.exec(
                "INSERT INTO status_history (connection_id, at, status, detail, actor) VALUES ($1, $2, 'initializing', NULL, $3)",
                &[&id, &now_ms(), &actor],
            )?;
            audit(tx, actor, "connection.reauthorize", id)
        })
    }

    fn set_scope(&self, id: &str, scope: &ScopeMode, actor: &str) -> Result<()> {
        let entries = serde_json::to_string(scope.entries())?;
        self.pool.write(|tx| {
            let changed = tx.exec(
                "UPDATE connections SET scope_mode = $2, scope_entries = $3 WHERE id = $1",
                &[&id, &scope.name(), &entries],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("connection {id}")));
            }
            audit(tx, actor, &format!("connection.scope ({})", scope.name()), id)
        })
    }

    fn corporate_ranges(&self) -> Result<Option<Vec<String>>> {
        let text: Option<String> = self
            .pool
            .read(|db| db.opt("SELECT value FROM settings WHERE name = 'corporate_ranges'", &[]))?
            .map(|r| r.text(0))
            .transpose()?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    fn set_corporate_ranges(&self, ranges: &[String], actor: &str) -> Result<()> {
        let value = serde_json::to_string(ranges)?;
        self.pool.write(|tx| {
            tx.exec(
                "INSERT INTO settings (name, value) VALUES ('corporate_ranges', $1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&value],
            )?;
            tx.exec("UPDATE connections SET corporate_cidrs = $1", &[&value])?;
            audit(tx, actor, "settings.corporate-ranges", &ranges.join(" "))
        })
    }

    fn delete_connection(&self, id: &str, actor: &str) -> Result<()> {
        self.pool.write(|tx| {
            let name: String = tx
                .opt("SELECT display_name FROM connections WHERE id = $1", &[&id])?
                .ok_or_else(|| StoreError::NotFound(format!("connection {id}")))?
                .get(0);
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
                tx.exec(&format!("DELETE FROM {table} WHERE connection_id = $1"), &[&id])?;
            }
            tx.exec("DELETE FROM connections WHERE id = $1", &[&id])?;
            audit(tx, actor, "connection.remove", &format!("{id} ({name})"))
        })
    }

    fn set_status(&self, id: &str, status: ConnectionStatus, detail: Option<&StatusDetail>, actor: &str) -> Result<()> {
        let detail = detail.map(serde_json::to_string).transpose()?;
        let status = status.as_str();
        self.pool.write(|tx| {
            let changed = tx.exec(
                "UPDATE connections SET status = $2, status_detail = $3 WHERE id = $1",
                &[&id, &status, &detail],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("connection {id}")));
            }
            tx.exec(
                "INSERT INTO status_history (connection_id, at, status, detail, actor) VALUES ($1, $2, $3, $4, $5)",
                &[&id, &now_ms(), &status, &detail, &actor],
            )?;
            Ok(())
        })
    }

    fn status_history(&self, id: &str) -> Result<Vec<StatusChange>> {
        let rows = self.pool.read(|db| {
            db.rows("SELECT at, status, detail, actor FROM status_history WHERE connection_id = $1 ORDER BY id", &[&id])
        })?;
        rows.iter()
            .map(|r| {
                Ok(StatusChange { at: r.int(0)?, status: r.parsed(1)?, detail: r.json_opt(2)?, actor: r.text(3)? })
            })
            .collect()
    }

    fn checkpoint(&self, connection: &str, topic: &str) -> Result<Option<Checkpoint>> {
        let row = self.pool.read(|db| {
            db.opt(
                "SELECT replay_id, updated_at FROM checkpoints WHERE connection_id = $1 AND topic = $2",
                &[&connection, &topic],
            )
        })?;
        row.map(|r| {
            let replay: Vec<u8> = r.try_get(0)?;
            let at = r.int(1)?;
            Ok(if replay.is_empty() { Checkpoint::RestartedAt(at) } else { Checkpoint::At(replay) })
        })
        .transpose()
    }

    fn mark_restart(&self, connection: &str, topic: &str, since_ms: i64) -> Result<()> {
        self.pool.write(|tx| {
            tx.exec(
                "INSERT INTO checkpoints (connection_id, topic, replay_id, updated_at) VALUES ($1, $2, '\\x'::bytea, $3)
                 ON CONFLICT (connection_id, topic) DO UPDATE SET replay_id = '\\x'::bytea, updated_at = excluded.updated_at",
                &[&connection, &topic, &since_ms],
            )?;
            self.fence(tx, connection)?;
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
        self.pool.write(|tx| {
            keep_aside(tx, connection, quarantined)?;
            let mut applied = 0;
            for r in records {
                if !first_sighting(tx, connection, &r.event_identifier)? {
                    continue;
                }
                applied += 1;
                let s = &r.session;
                tx.exec(
                    "INSERT INTO login_history (connection_id, event_identifier, kind, user_id, username, source_ip, status, session_key, at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &connection,
                        &r.event_identifier,
                        &if r.logout { "logout" } else { "login" },
                        &s.user_id.as_str(),
                        &s.username,
                        &s.source_ip,
                        &r.status,
                        &s.session_key,
                        &s.login_at,
                    ],
                )?;
                if s.session_key.is_empty() {
                    continue;
                }
                if r.logout {
                    tx.exec(
                        "UPDATE sessions SET logout_at = $3 WHERE connection_id = $1 AND session_key = $2",
                        &[&connection, &s.session_key, &s.login_at],
                    )?;
                } else if r.success {
                    tx.exec(
                        "INSERT INTO sessions (connection_id, session_key, login_key, user_id, username, source_ip, browser, platform, city, country, login_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                         ON CONFLICT (connection_id, session_key) DO UPDATE SET login_key = excluded.login_key,
                             user_id = excluded.user_id, username = excluded.username, source_ip = excluded.source_ip,
                             browser = excluded.browser, platform = excluded.platform, city = excluded.city,
                             country = excluded.country, login_at = excluded.login_at, logout_at = NULL",
                        &[
                            &connection,
                            &s.session_key,
                            &s.login_key,
                            &s.user_id.as_str(),
                            &s.username,
                            &s.source_ip,
                            &s.browser,
                            &s.platform,
                            &s.city,
                            &s.country,
                            &s.login_at,
                        ],
                    )?;
                }
            }
            save_checkpoint(tx, connection, topic, checkpoint)?;
            self.fence(tx, connection)?;
            Ok(applied)
        })
    }

    fn apply_reports(
        &self,
        connection: &str,
        topic: &str,
        batch: &ReportBatch,
        checkpoint: Option<&[u8]>,
    ) -> Result<ReportOutcome> {
        self.pool
            .write(|tx| {
                let mut outcome = ReportOutcome::default();
                keep_aside(tx, connection, &batch.quarantined)?;
                for id in &batch.out_of_scope {
                    if first_sighting(tx, connection, id)? {
                        outcome.out_of_scope += 1;
                    }
                }
                if outcome.out_of_scope > 0 {
                    tx.exec(
                        "INSERT INTO counters (connection_id, name, value) VALUES ($1, 'out_of_scope_exports', $2)
                     ON CONFLICT (connection_id, name) DO UPDATE SET value = counters.value + excluded.value",
                        &[&connection, &(outcome.out_of_scope as i64)],
                    )?;
                }
                let mut made = Vec::new();
                if !batch.exports.is_empty() {
                    tx.one("SELECT pg_advisory_xact_lock($1)", &[&FILE_EVENT_LOCK])?;
                    made = self.partitions.ensure(tx, batch.exports.iter().map(|c| c.file_event.observed_at))?;
                    reports::store_exports(tx, &batch.exports, &mut outcome)?;
                }
                if let Some(checkpoint) = checkpoint {
                    save_checkpoint(tx, connection, topic, checkpoint)?;
                }
                self.fence(tx, connection)?;
                Ok((outcome, made))
            })
            .map(|(outcome, made)| {
                self.partitions.known(made);
                outcome
            })
    }

    fn session(&self, connection: &str, session_key: &str) -> Result<Option<Session>> {
        let row = self.pool.read(|db| {
            db.opt(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE connection_id = $1 AND session_key = $2"),
                &[&connection, &session_key],
            )
        })?;
        row.as_ref().map(rows::session).transpose()
    }

    fn sessions(&self, connection: &str, keys: &[String]) -> Result<std::collections::HashMap<String, Session>> {
        if keys.is_empty() {
            return Ok(Default::default());
        }
        let rows = self.pool.read(|db| {
            db.rows(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE connection_id = $1 AND session_key = ANY($2)"),
                &[&connection, &keys],
            )
        })?;
        rows.iter().map(|r| rows::session(r).map(|s| (s.session_key.clone(), s))).collect()
    }

    fn user_has_file_events(&self, connection: &str, user_id: &SfId) -> Result<bool> {
        self.pool.read(|db| {
            Ok(db
                .opt(
                    "SELECT 1 FROM file_events WHERE connection_id = $1 AND user_id = $2 LIMIT 1",
                    &[&connection, &user_id.as_str()],
                )?
                .is_some())
        })
    }

    fn user_has_exported_from(&self, connection: &str, user_id: &SfId, source_ip: &str) -> Result<bool> {
        self.pool.read(|db| {
            Ok(db
                .opt(
                    "SELECT 1 FROM user_sources WHERE connection_id = $1 AND user_id = $2 AND source_ip = $3",
                    &[&connection, &user_id.as_str(), &source_ip],
                )?
                .is_some())
        })
    }

    fn replace_scope(&self, connection: &str, users: &[SalesforceUser]) -> Result<()> {
        self.pool.write(|tx| {
            tx.exec("DELETE FROM scope_users WHERE connection_id = $1", &[&connection])?;
            tx.exec("UPDATE connections SET scope_scanned_at = $2 WHERE id = $1", &[&connection, &now_ms()])?;
            for u in users {
                tx.exec(
                    "INSERT INTO scope_users (connection_id, user_id, username, email, name) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (connection_id, user_id) DO UPDATE SET username = excluded.username,
                         email = excluded.email, name = excluded.name",
                    &[&connection, &u.user_id.as_str(), &u.username, &u.email, &u.name],
                )?;
            }
            self.fence(tx, connection)?;
            Ok(())
        })
    }

    fn scope(&self, connection: &str) -> Result<Vec<SalesforceUser>> {
        let rows = self.pool.read(|db| {
            db.rows(
                "SELECT user_id, username, email, name FROM scope_users WHERE connection_id = $1
                 ORDER BY username COLLATE \"C\"",
                &[&connection],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(SalesforceUser {
                    user_id: r.parsed(0)?,
                    username: r.text(1)?,
                    email: r.text_opt(2)?,
                    name: r.text_opt(3)?,
                })
            })
            .collect()
    }

    fn counter(&self, connection: &str, name: &str) -> Result<i64> {
        let row = self.pool.read(|db| {
            db.opt("SELECT value FROM counters WHERE connection_id = $1 AND name = $2", &[&connection, &name])
        })?;
        Ok(row.map(|r| r.int(0)).transpose()?.unwrap_or(0))
    }

    fn connection_activity(&self, connection: &str, since_ms: i64) -> Result<ConnectionActivity> {
        // From the aggregator's counts.
        let hour = since_ms.div_euclid(3_600_000) * 3_600_000;
        self.pool.read(|db| {
            let events_since = db
                .one(
                    "SELECT COALESCE(SUM(downloads), 0)::bigint FROM agg_hourly WHERE hour >= $1 AND connection_id = $2",
                    &[&hour, &connection],
                )?
                .int(0)?;
            let last_event_at = db
                .opt("SELECT last_at FROM agg_connections WHERE connection_id = $1", &[&connection])?
                .map(|r| r.int(0))
                .transpose()?;
            Ok(ConnectionActivity { events_since: count(events_since), last_event_at })
        })
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
        self.pool.write(|tx| {
            tx.exec(
                "INSERT INTO gaps (connection_id, topic, detected_at, from_ms, to_ms, reason, recovered)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (connection_id, topic, from_ms) DO UPDATE SET
                     to_ms = excluded.to_ms, reason = excluded.reason, recovered = excluded.recovered",
                &[&connection, &topic, &now_ms(), &from, &to, &reason, &recovered],
            )?;
            self.fence(tx, connection)?;
            Ok(())
        })
    }

    fn resolve_gaps(&self, connection: &str, topic: &str, from: i64, to: i64) -> Result<()> {
        self.pool.write(|tx| {
            tx.exec(
                "UPDATE gaps SET recovered = TRUE, reason = reason || '; re-read later from ReportEvent'
                 WHERE connection_id = $1 AND topic = $2 AND NOT recovered AND from_ms >= $3
                   AND COALESCE(to_ms, from_ms) <= $4",
                &[&connection, &topic, &from, &to],
            )?;
            self.fence(tx, connection)?;
            Ok(())
        })
    }

    fn set_reconciled_to(&self, connection: &str, to_ms: i64) -> Result<()> {
        self.pool.write(|tx| {
            tx.exec("UPDATE connections SET reconciled_to = $2 WHERE id = $1", &[&connection, &to_ms])?;
            self.fence(tx, connection)?;
            Ok(())
        })
    }

    fn gaps(&self, connection: &str) -> Result<Vec<Gap>> {
        let rows = self.pool.read(|db| {
            db.rows(
                "SELECT topic, detected_at, from_ms, to_ms, reason, recovered FROM gaps WHERE connection_id = $1 ORDER BY id",
                &[&connection],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(Gap {
                    topic: r.text(0)?,
                    detected_at: r.int(1)?,
                    from_ms: r.int(2)?,
                    to_ms: r.int_opt(3)?,
                    reason: r.text(4)?,
                    recovered: r.flag(5)?,
                })
            })
            .collect()
    }

    fn quarantine(&self, connection: &str, limit: usize) -> Result<(usize, Vec<QuarantinedEvent>)> {
        self.pool.read(|db| {
            let total = db.one("SELECT COUNT(*) FROM quarantine WHERE connection_id = $1", &[&connection])?.int(0)?;
            let newest = db
                .rows(
                    "SELECT topic, key, received_at, reason, evidence FROM quarantine WHERE connection_id = $1
                     ORDER BY received_at DESC LIMIT $2",
                    &[&connection, &(limit as i64)],
                )?
                .iter()
                .map(|r| {
                    Ok(QuarantinedEvent {
                        topic: r.text(0)?,
                        key: r.text(1)?,
                        received_at: r.int(2)?,
                        reason: r.text(3)?,
                        evidence: r.json(4)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((count(total) as usize, newest))
        })
    }

    fn add_api_token(&self, name: &str, token_hash: &str, expires_at: Option<i64>, actor: &str) -> Result<()> {
        self.pool.write(|tx| {
            let inserted = tx.exec(
                "INSERT INTO api_tokens (name, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &[&name, &token_hash, &now_ms(), &expires_at],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("an API token named {name:?} already exists")));
            }
            audit(tx, actor, "api-token.create", name)
        })
    }

    fn api_token(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let row = self.pool.read(|db| {
            db.opt(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1"), &[&token_hash])
        })?;
        row.as_ref().map(rows::token).transpose()
    }

    fn touch_api_token(&self, name: &str, at: i64) -> Result<()> {
        self.pool.write(|tx| {
            tx.exec("UPDATE api_tokens SET last_used_at = $2 WHERE name = $1", &[&name, &at])?;
            Ok(())
        })
    }

    fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = self
            .pool
            .read(|db| db.rows(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"), &[]))?;
        rows.iter().map(rows::token).collect()
    }

    fn revoke_api_token(&self, name: &str, actor: &str) -> Result<()> {
        self.pool.write(|tx| {
            let changed = tx.exec(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1",
                &[&name, &now_ms()],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("API token {name:?}")));
            }
            audit(tx, actor, "api-token.revoke", name)
        })
    }

    fn audit(&self, actor: &str, action: &str, target: &str) -> Result<()> {
        self.pool.write(|tx| audit(tx, actor, action, target))
    }

    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let rows = self.pool.read(|db| {
            db.rows(
                "SELECT at, actor, action, target FROM audit_log ORDER BY at DESC, id DESC LIMIT $1",
                &[&(limit as i64)],
            )
        })?;
        rows.iter()
            .map(|r| Ok(AuditEntry { at: r.int(0)?, actor: r.text(1)?, action: r.text(2)?, target: r.text(3)? }))
            .collect()
    }

    fn create_account(&self, username: &str, role: Role, password_hash: &str, actor: &str) -> Result<Account> {
        let created_at = now_ms();
        self.pool.write(|tx| {
            let id = tx
                .opt(
                    "INSERT INTO accounts (username, role, password_hash, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING RETURNING id",
                    &[&username, &role.as_str(), &password_hash, &created_at],
                )?
                .ok_or_else(|| StoreError::Conflict(format!("an account named {username:?} already exists")))?
                .int(0)?;
            audit(tx, actor, &format!("account.create ({})", role.as_str()), username)?;
            Ok(Account { id, username: username.to_owned(), role, created_at })
        })
    }

    fn accounts(&self) -> Result<Vec<Account>> {
        let rows = self
            .pool
            .read(|db| db.rows(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY lower(username), id"), &[]))?;
        rows.iter().map(rows::account).collect()
    }

    fn set_account_role(&self, account_id: i64, role: Role, actor: &str) -> Result<()> {
        self.account_change(account_id, actor, &format!("account.role ({})", role.as_str()), |tx| {
            tx.exec("UPDATE accounts SET role = $2 WHERE id = $1", &[&account_id, &role.as_str()])?;
            Ok(())
        })
    }

    fn set_account_password(&self, account_id: i64, password_hash: &str, actor: &str) -> Result<()> {
        self.account_change(account_id, actor, "account.password", |tx| {
            tx.exec("UPDATE accounts SET password_hash = $2 WHERE id = $1", &[&account_id, &password_hash])?;
            tx.exec("DELETE FROM console_sessions WHERE account_id = $1", &[&account_id])?;
            Ok(())
        })
    }

    fn delete_account(&self, account_id: i64, actor: &str) -> Result<()> {
        self.account_change(account_id, actor, "account.delete", |tx| {
            tx.exec("DELETE FROM console_sessions WHERE account_id = $1", &[&account_id])?;
            tx.exec("DELETE FROM accounts WHERE id = $1", &[&account_id])?;
            Ok(())
        })
    }

    fn account_credentials(&self, username: &str) -> Result<Option<(Account, String)>> {
        let row = self.pool.read(|db| {
            db.opt(
                &format!("SELECT {ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE lower(username) = lower($1)"),
                &[&username],
            )
        })?;
        row.map(|r| Ok((rows::account(&r)?, r.text(4)?))).transpose()
    }

    fn create_console_session(&self, token_hash: &str, account_id: i64, csrf: &str, expires_at: i64) -> Result<()> {
        let now = now_ms();
        self.pool.write(|tx| {
            // Expired sessions go as new ones come.
            tx.exec("DELETE FROM console_sessions WHERE expires_at <= $1", &[&now])?;
            tx.exec(
                "INSERT INTO console_sessions (token_hash, account_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                &[&token_hash, &account_id, &csrf, &now, &expires_at],
            )?;
            Ok(())
        })
    }

    fn console_session(&self, token_hash: &str, now_ms: i64) -> Result<Option<ConsoleSession>> {
        let row = self.pool.read(|db| {
            db.opt(
                &format!(
                    "SELECT {ACCOUNT_COLUMNS}, s.csrf, s.expires_at FROM console_sessions s
                     JOIN accounts ON accounts.id = s.account_id
                     WHERE s.token_hash = $1 AND s.expires_at > $2"
                ),
                &[&token_hash, &now_ms],
            )
        })?;
        row.map(|r| Ok(ConsoleSession { account: rows::account(&r)?, csrf: r.text(4)?, expires_at: r.int(5)? }))
            .transpose()
    }

    fn end_console_session(&self, token_hash: &str) -> Result<()> {
        self.pool.write(|tx| {
            tx.exec("DELETE FROM console_sessions WHERE token_hash = $1", &[&token_hash])?;
            Ok(())
        })
    }

    fn end_console_sessions(&self, account_id: i64) -> Result<usize> {
        self.pool
            .write(|tx| Ok(tx.exec("DELETE FROM console_sessions WHERE account_id = $1", &[&account_id])? as usize))
    }

    fn aggregate(&self, max_events: usize) -> Result<usize> {
        self.pool.write(|tx| {
            // One aggregator at a time, however many nodes run.
            let last = tx.one("SELECT last_seq FROM agg_position WHERE id = 1 FOR UPDATE", &[])?.int(0)?;
            let mut tally = Tally::default();
            let (mut n, mut top) = (0usize, last);
            for r in tx.rows(
                &format!("SELECT {COUNTED_COLUMNS} FROM file_events WHERE seq > $1 ORDER BY seq LIMIT $2"),
                &[&last, &(max_events as i64)],
            )? {
                tally.add(Counted {
                    observed_at: r.int(1)?,
                    connection_id: r.text(2)?,
                    destination: r.text(3)?,
                    severity: r.parsed(4)?,
                    rows: r.int(5)?,
                    user_id: r.text(6)?,
                    username: r.text_opt(7)?,
                    report_id: r.text_opt(8)?,
                    report_name: r.text_opt(9)?,
                });
                n += 1;
                top = r.int(0)?;
            }
            for ((hour, connection, destination, severity), sum) in &tally.hourly {
                tx.exec(
                    "INSERT INTO agg_hourly (hour, connection_id, destination, severity, downloads, rows) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (hour, connection_id, destination, severity) DO UPDATE SET
                         downloads = agg_hourly.downloads + excluded.downloads, rows = agg_hourly.rows + excluded.rows",
                    &[hour, connection, destination, severity, &sum.downloads, &sum.rows],
                )?;
            }
            for (table, sums) in [("agg_user_hourly", &tally.user_hours), ("agg_user_daily", &tally.user_days)] {
                let sql = format!(
                    "INSERT INTO {table} (hour, user_id, username, downloads, rows) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (hour, user_id) DO UPDATE SET downloads = {table}.downloads + excluded.downloads,
                     rows = {table}.rows + excluded.rows, username = COALESCE(excluded.username, {table}.username)"
                );
                for ((at, user), sum) in sums {
                    tx.exec(&sql, &[at, user, &sum.name, &sum.downloads, &sum.rows])?;
                }
            }
            for (table, sums) in [("agg_report_hourly", &tally.report_hours), ("agg_report_daily", &tally.report_days)] {
                let sql = format!(
                    "INSERT INTO {table} (hour, report, report_name, downloads, rows) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (hour, report) DO UPDATE SET downloads = {table}.downloads + excluded.downloads,
                     rows = {table}.rows + excluded.rows, report_name = COALESCE(excluded.report_name, {table}.report_name)"
                );
                for ((at, report), sum) in sums {
                    tx.exec(&sql, &[at, report, &sum.name, &sum.downloads, &sum.rows])?;
                }
            }
            for (user, sum) in &tally.users {
                tx.exec(
                    "INSERT INTO agg_users (user_id, username, downloads, rows, last_at, worst) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (user_id) DO UPDATE SET downloads = agg_users.downloads + excluded.downloads,
                     rows = agg_users.rows + excluded.rows, username = COALESCE(excluded.username, agg_users.username),
                     last_at = GREATEST(agg_users.last_at, excluded.last_at), worst = GREATEST(agg_users.worst, excluded.worst)",
                    &[user, &sum.name, &sum.downloads, &sum.rows, &sum.last_at, &sum.worst],
                )?;
            }
            for (connection, at) in &tally.connections {
                tx.exec(
                    "INSERT INTO agg_connections (connection_id, last_at) VALUES ($1, $2)
                     ON CONFLICT (connection_id) DO UPDATE SET last_at = GREATEST(agg_connections.last_at, excluded.last_at)",
                    &[connection, at],
                )?;
            }
            if n > 0 {
                tx.exec("UPDATE agg_position SET last_seq = $1 WHERE id = 1", &[&top])?;
            }
            Ok(n)
        })
    }

    fn dashboard(&self, from_hour: i64, to_hour: i64, top: usize) -> Result<Dashboard> {
        self.pool.read(|db| {
            let mut hours: Vec<HourCount> = Vec::new();
            for r in db.rows(
                "SELECT hour, destination, SUM(downloads)::bigint, SUM(rows)::bigint FROM agg_hourly
                 WHERE hour >= $1 AND hour < $2 GROUP BY hour, destination ORDER BY hour",
                &[&from_hour, &to_hour],
            )? {
                let hour = r.int(0)?;
                if hours.last().is_none_or(|h| h.hour != hour) {
                    hours.push(HourCount { hour, ..HourCount::default() });
                }
                let entry = hours.last_mut().expect("pushed");
                let downloads = count(r.int(2)?);
                match r.parsed::<crate::events::Destination>(1)? {
                    crate::events::Destination::Corporate => entry.corporate += downloads,
                    crate::events::Destination::Unmonitored => entry.unmonitored += downloads,
                }
                entry.rows += count(r.int(3)?);
            }
            let mut severities = db
                .rows(
                    "SELECT severity, SUM(downloads)::bigint FROM agg_hourly WHERE hour >= $1 AND hour < $2 GROUP BY severity",
                    &[&from_hour, &to_hour],
                )?
                .iter()
                .map(|r| Ok((r.parsed::<crate::risk::Severity>(0)?, count(r.int(1)?))))
                .collect::<Result<Vec<_>>>()?;
            severities.sort();
            let mut ranked = |sql: &str| -> Result<Vec<Ranked>> {
                db.rows(sql, &[&from_hour, &to_hour, &(top as i64)])?
                    .iter()
                    .map(|r| {
                        let key = r.text(0)?;
                        Ok(Ranked {
                            label: r.text_opt(1)?.unwrap_or_else(|| key.clone()),
                            key,
                            downloads: count(r.int(2)?),
                            rows: count(r.int(3)?),
                        })
                    })
                    .collect()
            };
            // Whole days come from the daily tables (30 times fewer rows to add up).
            let whole_days = from_hour % 86_400_000 == 0 && to_hour % 86_400_000 == 0;
            let (users, reports) =
                if whole_days { ("agg_user_daily", "agg_report_daily") } else { ("agg_user_hourly", "agg_report_hourly") };
            let top_users = ranked(&format!(
                "SELECT user_id, MAX(username), SUM(downloads)::bigint AS d, SUM(rows)::bigint FROM {users}
                 WHERE hour >= $1 AND hour < $2 GROUP BY user_id ORDER BY d DESC, user_id COLLATE \"C\" LIMIT $3"
            ))?;
            let top_reports = ranked(&format!(
                "SELECT report, MAX(report_name), SUM(downloads)::bigint AS d, SUM(rows)::bigint FROM {reports}
                 WHERE hour >= $1 AND hour < $2 GROUP BY report ORDER BY d DESC, report COLLATE \"C\" LIMIT $3"
            ))?;
            Ok(Dashboard { hours, top_users, top_reports, severities })
        })
    }

    fn people(&self) -> Result<Vec<Person>> {
        let rows = self.pool.read(|db| {
            db.rows(
                "SELECT u.user_id, COALESCE(s.username, a.username) AS shown, s.email, s.name, s.user_id IS NOT NULL,
                        a.downloads, a.rows, a.last_at, a.worst
                 FROM (SELECT user_id FROM scope_users UNION SELECT user_id FROM agg_users) u
                 LEFT JOIN (SELECT user_id, MAX(username) AS username, MAX(email) AS email, MAX(name) AS name
                            FROM scope_users GROUP BY user_id) s ON s.user_id = u.user_id
                 LEFT JOIN agg_users a ON a.user_id = u.user_id
                 ORDER BY a.last_at IS NULL, a.last_at DESC, shown COLLATE \"C\"",
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                let worst = r.int_opt(8)?;
                Ok(Person {
                    user_id: r.text(0)?,
                    username: r.text_opt(1)?,
                    email: r.text_opt(2)?,
                    name: r.text_opt(3)?,
                    monitored: r.flag(4)?,
                    downloads: count(r.int_opt(5)?.unwrap_or(0)),
                    rows: count(r.int_opt(6)?.unwrap_or(0)),
                    last_at: r.int_opt(7)?,
                    worst: worst.and_then(|w| crate::risk::Severity::ALL.get(w as usize).copied()),
                })
            })
            .collect()
    }

    fn person_hours(&self, user_id: &str, from_hour: i64, to_hour: i64) -> Result<Vec<(i64, u64, u64)>> {
        let rows = self.pool.read(|db| {
            db.rows(
                "SELECT hour, downloads, rows FROM agg_user_hourly WHERE user_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour",
                &[&user_id, &from_hour, &to_hour],
            )
        })?;
        rows.iter().map(|r| Ok((r.int(0)?, count(r.int(1)?), count(r.int(2)?)))).collect()
    }

    fn person_sessions(&self, user_id: &str, limit: usize) -> Result<Vec<Session>> {
        let rows = self.pool.read(|db| {
            db.rows(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 ORDER BY login_at DESC LIMIT $2"),
                &[&user_id, &(limit as i64)],
            )
        })?;
        rows.iter().map(rows::session).collect()
    }

    fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        let (sql, params) = sql::search(Dialect::Postgres, query, EVENT_COLUMNS, now_ms())?;
        let values = boxed(&params);
        let rows = self.pool.read(|db| db.rows_once(&sql, &args(&values)))?;
        let mut events = rows.iter().map(rows::event).collect::<Result<Vec<_>>>()?;
        let next = sql::next_cursor(query, &mut events);
        Ok(SearchPage { events, next })
    }

    fn count(&self, query: &SearchQuery, cap: u64) -> Result<u64> {
        let (sql, params) = sql::count(Dialect::Postgres, query, cap, now_ms())?;
        let values = boxed(&params);
        let rows = self.pool.read(|db| db.rows_once(&sql, &args(&values)))?;
        Ok(count(rows.first().map(|r| r.int(0)).transpose()?.unwrap_or(0)))
    }

    fn file_event(&self, id: &str) -> Result<Option<FileEvent>> {
        let row =
            self.pool.read(|db| db.opt(&format!("SELECT {EVENT_COLUMNS} FROM file_events WHERE id = $1"), &[&id]))?;
        row.as_ref().map(rows::event).transpose()
    }

    fn save_search(&self, name: &str, query: &str, owner: &str) -> Result<()> {
        self.pool.write(|tx| {
            let inserted = tx.exec(
                "INSERT INTO saved_searches (name, query, owner, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&name, &query, &owner, &now_ms()],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("a saved search named {name:?} already exists")));
            }
            audit(tx, owner, "search.save", name)
        })
    }

    fn saved_searches(&self) -> Result<Vec<SavedSearch>> {
        let rows = self.pool.read(|db| {
            db.rows("SELECT id, name, query, owner, created_at FROM saved_searches ORDER BY lower(name), id", &[])
        })?;
        rows.iter()
            .map(|r| {
                Ok(SavedSearch {
                    id: r.int(0)?,
                    name: r.text(1)?,
                    query: r.text(2)?,
                    owner: r.text(3)?,
                    created_at: r.int(4)?,
                })
            })
            .collect()
    }

    fn delete_saved_search(&self, id: i64) -> Result<()> {
        self.pool.write(|tx| {
            if tx.exec("DELETE FROM saved_searches WHERE id = $1", &[&id])? == 0 {
                return Err(StoreError::NotFound(format!("saved search {id}")));
            }
            Ok(())
        })
    }

    fn search_checkpoint(&self, name: &str) -> Result<i64> {
        let row = self.pool.read(|db| db.opt("SELECT last_seq FROM search_checkpoints WHERE name = $1", &[&name]))?;
        Ok(row.map(|r| r.int(0)).transpose()?.unwrap_or(0))
    }

    fn set_search_checkpoint(&self, name: &str, last_seq: i64) -> Result<()> {
        self.pool.write(|tx| {
            tx.exec(
                "INSERT INTO search_checkpoints (name, last_seq) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET last_seq = GREATEST(search_checkpoints.last_seq, excluded.last_seq)",
                &[&name, &last_seq],
            )?;
            Ok(())
        })
    }

    fn retention(&self) -> Result<Option<u32>> {
        let row = self.pool.read(|db| db.opt("SELECT value FROM settings WHERE name = 'retention_days'", &[]))?;
        Ok(row.map(|r| r.json::<Option<u32>>(0)).transpose()?.flatten())
    }

    fn set_retention(&self, days: Option<u32>, actor: &str) -> Result<()> {
        let value = serde_json::to_string(&days)?;
        self.pool.write(|tx| {
            tx.exec(
                "INSERT INTO settings (name, value) VALUES ('retention_days', $1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&value],
            )?;
            let shown = days.map_or_else(|| "for ever".to_owned(), |d| format!("{d} days"));
            audit(tx, actor, "settings.retention", &shown)
        })
    }

    fn remove_before(&self, before_ms: i64) -> Result<u64> {
        let gone: Vec<partitions::Month> = self
            .pool
            .read(|db| {
                db.rows(
                    "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = 'file_events'::regclass",
                    &[],
                )
            })?
            .iter()
            .filter_map(|r| partitions::month_named(&r.get::<_, String>(0)))
            .filter(|m| m.end <= before_ms)
            .collect();
        let Some(until) = gone.iter().map(|m| m.end).max() else { return Ok(0) };
        let removed = self.pool.write(|tx| {
            tx.one("SELECT pg_advisory_xact_lock($1)", &[&FILE_EVENT_LOCK])?;
            let mut removed = 0;
            for m in &gone {
                removed += tx.one(&format!("SELECT COUNT(*) FROM {}", m.name), &[])?.int(0)?;
                tx.batch(&format!("DROP TABLE IF EXISTS {}", m.name))?;
            }
            for table in ["agg_hourly", "agg_user_hourly", "agg_report_hourly", "agg_user_daily", "agg_report_daily"] {
                tx.exec(&format!("DELETE FROM {table} WHERE hour < $1"), &[&until])?;
            }
            Ok(removed)
        })?;
        for m in &gone {
            self.partitions.forget(m);
        }
        Ok(count(removed))
    }

    fn heartbeat(&self, node: &Node) -> Result<()> {
        self.pool.write(|tx| {
            tx.exec(
                &format!(
                    "INSERT INTO nodes ({NODE_COLUMNS}) VALUES ($1, $2, $3, {NOW}, $4)
                     ON CONFLICT (name) DO UPDATE SET incarnation = excluded.incarnation, started_at = excluded.started_at,
                         heartbeat_at = excluded.heartbeat_at, address = excluded.address"
                ),
                &[&node.name, &node.incarnation, &node.started_at, &node.address],
            )?;
            Ok(())
        })
    }

    fn nodes(&self) -> Result<Vec<Node>> {
        let rows = self
            .pool
            .read(|db| db.rows(&format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY heartbeat_at DESC, name"), &[]))?;
        rows.iter().map(lease::node).collect()
    }

    fn leases(&self) -> Result<Vec<Lease>> {
        let rows = self.pool.read(|db| db.rows(&format!("SELECT {LEASE_COLUMNS} FROM leases ORDER BY key"), &[]))?;
        rows.iter().map(lease::lease).collect()
    }

    fn claim(&self, key: &str, node: &Node, ttl_ms: i64) -> Result<Option<Lease>> {
        let sql = lease::CLAIM.replace("{now}", NOW);
        let claimed = self.pool.write(|tx| {
            // A lease share-locked by a writer that stopped mid-transaction is not
            // waited for: the claim is tried again at the next turn.
            tx.batch("SET LOCAL lock_timeout = '2s'")?;
            tx.opt(&sql, &[&key, &node.name, &node.incarnation, &ttl_ms])?.as_ref().map(lease::lease).transpose()
        })?;
        if let Some(lease) = &claimed {
            self.fences.claimed(lease);
        }
        Ok(claimed)
    }

    fn release(&self, key: &str, node: &Node) -> Result<()> {
        self.pool.write(|tx| {
            tx.exec(lease::RELEASE, &[&key, &node.name, &node.incarnation])?;
            Ok(())
        })?;
        self.fences.released(key);
        Ok(())
    }

    fn request_restart(&self, key: &str, requested: bool) -> Result<()> {
        self.pool.write(|tx| {
            tx.exec("UPDATE leases SET restart = $2 WHERE key = $1", &[&key, &requested])?;
            Ok(())
        })
    }
}
