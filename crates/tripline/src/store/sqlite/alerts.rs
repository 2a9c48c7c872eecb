//! The embedded store's half for alerting: risk settings, watch lists, rules, alerts,
//! channels and the notification outbox.

use std::collections::HashMap;

use rusqlite::types::Value as Sql;
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{SqliteStore, audit, now_ms};
use crate::alerts::engine::{Contribution, Decision};
use crate::alerts::template::Templates;
use crate::alerts::{
    Alert, AlertFilter, AlertNote, AlertOrder, AlertUpdate, Channel, ChannelHealth, Delivery, Rule, RuleDraft, Target,
};
use crate::events::FileEvent;
use crate::risk::{RiskSettings, Severity, WatchEntry, WatchKind};
use crate::store::rows::{self, ALERT_COLUMNS, Cells, RULE_COLUMNS, RULE_COLUMNS_OF_EVENTS, SLIM_COLUMNS};
use crate::store::{AlertStore, Attempt, Reopened, Result, StoreError};

fn max_seq(tx: &Transaction<'_>) -> Result<i64> {
    Ok(tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM file_events", [], |r| r.get(0))?)
}

fn unique(e: rusqlite::Error, what: &str) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::Conflict(format!("{what} already exists"))
        }
        other => other.into(),
    }
}

/// Records the high and critical events some alert now holds (each once).
fn covered(tx: &Transaction<'_>, decisions: &[Decision]) -> Result<()> {
    let contributions = decisions.iter().flat_map(|d| match d {
        Decision::Open(a) => a.events.as_slice(),
        Decision::Grow { event, .. } => std::slice::from_ref(event),
    });
    let risky: std::collections::BTreeSet<i64> =
        contributions.filter(|c| c.severity >= Severity::High).map(|c| c.seq).collect();
    let risky: Vec<i64> = risky.into_iter().collect();
    for part in risky.chunks(100) {
        let sql =
            format!("INSERT OR IGNORE INTO alerted_events (event_seq) VALUES {}", vec!["(?)"; part.len()].join(", "));
        tx.prepare_cached(&sql)?.execute(rusqlite::params_from_iter(part))?;
    }
    Ok(())
}

/// Adds events to an alert and its counts: one row for them all, keyed by the first,
/// so the same contribution written again (which the evaluator's position, moving in
/// the same transaction, rules out) would change nothing.
fn contribute(tx: &Transaction<'_>, alert: i64, events: &[Contribution], now: i64) -> Result<()> {
    let Some(head) = events.first() else { return Ok(()) };
    let seqs = serde_json::to_string(&events.iter().map(|c| c.seq).collect::<Vec<_>>())?;
    let added = tx
        .prepare_cached("INSERT OR IGNORE INTO alert_event_blocks (alert, first_seq, seqs) VALUES (?1, ?2, ?3)")?
        .execute(params![alert, head.seq, seqs])?;
    if added == 0 {
        return Ok(());
    }
    let rows: i64 = events.iter().map(|c| c.rows).sum();
    let first = events.iter().map(|c| c.at).min().unwrap_or_default();
    let last = events.iter().map(|c| c.at).max().unwrap_or_default();
    tx.prepare_cached(
        "UPDATE alerts SET events = events + ?2, rows = rows + ?3, first_at = MIN(first_at, ?4),
         last_at = MAX(last_at, ?5), updated_at = ?6 WHERE ord = ?1",
    )?
    .execute(params![alert, events.len() as i64, rows, first, last, now])?;
    Ok(())
}

impl SqliteStore {
    fn sealed_target(&self, target: &Target) -> Result<String> {
        self.secrets.seal(&serde_json::to_string(target)?)
    }

    fn channel_from_row(&self, r: &Row<'_>) -> rusqlite::Result<(i64, String, String, bool)> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    }

    fn open_channel(&self, (id, name, sealed, enabled): (i64, String, String, bool)) -> Result<Channel> {
        let target: Target = serde_json::from_str(&self.secrets.open(&sealed)?)?;
        Ok(Channel { id, name, target, enabled })
    }
}

impl AlertStore for SqliteStore {
    fn risk_settings(&self) -> Result<RiskSettings> {
        let text: Option<String> =
            self.reader().query_row("SELECT value FROM settings WHERE name = 'risk'", [], |r| r.get(0)).optional()?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?.unwrap_or_default())
    }

    fn set_risk_settings(&self, settings: &RiskSettings, actor: &str) -> Result<()> {
        let value = serde_json::to_string(settings)?;
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT INTO settings (name, value) VALUES ('risk', ?1) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [&value],
        )?;
        audit(&tx, actor, "settings.risk", "risk settings")?;
        tx.commit()?;
        Ok(())
    }

    fn watchlist(&self) -> Result<Vec<WatchEntry>> {
        let db = self.reader();
        let mut stmt = db.prepare(
            "SELECT kind, username, departure, note, added_at, added_by FROM watchlist ORDER BY kind, username",
        )?;
        let entries = stmt
            .query_map([], |r| {
                let departure: Option<String> = r.get(2)?;
                Ok(WatchEntry {
                    kind: r.parsed(0)?,
                    username: r.get(1)?,
                    departure: departure.and_then(|d| d.parse().ok()),
                    note: r.get(3)?,
                    added_at: r.get(4)?,
                    added_by: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(entries)
    }

    fn add_watch_entries(&self, entries: &[WatchEntry], actor: &str) -> Result<usize> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let mut added = 0;
        for e in entries {
            let known = tx
                .prepare_cached("SELECT 1 FROM watchlist WHERE kind = ?1 AND username = ?2")?
                .exists(params![e.kind.as_str(), e.username.to_lowercase()])?;
            tx.prepare_cached(
                "INSERT INTO watchlist (kind, username, departure, note, added_at, added_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (kind, username) DO UPDATE SET departure = excluded.departure, note = excluded.note",
            )?
            .execute(params![
                e.kind.as_str(),
                e.username.to_lowercase(),
                e.departure.map(|d| d.to_string()),
                e.note,
                e.added_at,
                e.added_by
            ])?;
            if !known {
                added += 1;
                audit(&tx, actor, &format!("watchlist.add ({})", e.kind), &e.username.to_lowercase())?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    fn remove_watch_entry(&self, kind: WatchKind, username: &str, actor: &str) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let n = tx.execute(
            "DELETE FROM watchlist WHERE kind = ?1 AND username = ?2",
            params![kind.as_str(), username.to_lowercase()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("{username} on the {kind} list")));
        }
        audit(&tx, actor, &format!("watchlist.remove ({kind})"), username)?;
        tx.commit()?;
        Ok(())
    }

    fn rules(&self) -> Result<Vec<Rule>> {
        let db = self.reader();
        let mut stmt = db.prepare(&format!("SELECT {RULE_COLUMNS} FROM rules ORDER BY name COLLATE NOCASE"))?;
        let rules = stmt.query_map([], |r| rows::rule(r))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rules)
    }

    fn rule(&self, id: i64) -> Result<Rule> {
        self.reader()
            .query_row(&format!("SELECT {RULE_COLUMNS} FROM rules WHERE id = ?1"), [id], |r| rows::rule(r))
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("rule {id}")))
    }

    fn create_rule(&self, draft: &RuleDraft, actor: &str) -> Result<Rule> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT INTO rules (name, definition, enabled, active_from_seq, updated_at, updated_by)
             VALUES (?1, ?2, 0, 0, ?3, ?4)",
            params![draft.name.trim(), rows::definition(draft)?, now_ms(), actor],
        )
        .map_err(|e| unique(e, &format!("a rule named {:?}", draft.name.trim())))?;
        let id = tx.last_insert_rowid();
        audit(&tx, actor, "rule.create", draft.name.trim())?;
        let rule = tx.query_row(&format!("SELECT {RULE_COLUMNS} FROM rules WHERE id = ?1"), [id], |r| rows::rule(r))?;
        tx.commit()?;
        Ok(rule)
    }

    fn update_rule(&self, id: i64, draft: &RuleDraft, actor: &str) -> Result<Rule> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let from = max_seq(&tx)?;
        let n = tx
            .execute(
                "UPDATE rules SET name = ?2, definition = ?3, updated_at = ?4, updated_by = ?5,
                 active_from_seq = CASE WHEN enabled THEN ?6 ELSE active_from_seq END WHERE id = ?1",
                params![id, draft.name.trim(), rows::definition(draft)?, now_ms(), actor, from],
            )
            .map_err(|e| unique(e, &format!("a rule named {:?}", draft.name.trim())))?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("rule {id}")));
        }
        audit(&tx, actor, "rule.update", draft.name.trim())?;
        let rule = tx.query_row(&format!("SELECT {RULE_COLUMNS} FROM rules WHERE id = ?1"), [id], |r| rows::rule(r))?;
        tx.commit()?;
        Ok(rule)
    }

    fn set_rule_enabled(&self, id: i64, enabled: bool, actor: &str) -> Result<Rule> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let from = max_seq(&tx)?;
        let n = tx.execute(
            "UPDATE rules SET enabled = ?2, updated_at = ?3, updated_by = ?4,
             active_from_seq = CASE WHEN ?2 AND NOT enabled THEN ?5 ELSE active_from_seq END WHERE id = ?1",
            params![id, enabled, now_ms(), actor, from],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("rule {id}")));
        }
        let rule = tx.query_row(&format!("SELECT {RULE_COLUMNS} FROM rules WHERE id = ?1"), [id], |r| rows::rule(r))?;
        audit(&tx, actor, if enabled { "rule.enable" } else { "rule.disable" }, &rule.name)?;
        tx.commit()?;
        Ok(rule)
    }

    fn delete_rule(&self, id: i64, actor: &str) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let name: String = tx
            .query_row("SELECT name FROM rules WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("rule {id}")))?;
        tx.execute("DELETE FROM rules WHERE id = ?1", [id])?;
        audit(&tx, actor, "rule.delete", &name)?;
        tx.commit()?;
        Ok(())
    }

    fn events_after(&self, after_seq: i64, limit: usize) -> Result<Vec<FileEvent>> {
        let db = self.reader();
        let mut stmt = db.prepare_cached(&format!(
            "SELECT {} FROM file_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            *RULE_COLUMNS_OF_EVENTS
        ))?;
        let events = stmt
            .query_map(params![after_seq, limit as i64], |r| rows::event(r))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(events)
    }

    fn events_between(&self, from_ms: i64, to_ms: i64, after_seq: i64, limit: usize) -> Result<Vec<FileEvent>> {
        let db = self.reader();
        let mut stmt = db.prepare_cached(&format!(
            "SELECT {} FROM file_events WHERE seq > ?3 AND observed_at >= ?1 AND observed_at < ?2 ORDER BY seq LIMIT ?4",
            *RULE_COLUMNS_OF_EVENTS
        ))?;
        let events = stmt
            .query_map(params![from_ms, to_ms, after_seq, limit as i64], |r| rows::event(r))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(events)
    }

    fn alert_position(&self) -> Result<i64> {
        Ok(self.reader().query_row("SELECT last_seq FROM alert_position WHERE id = 1", [], |r| r.get(0))?)
    }

    fn apply_alerts(&self, position: i64, decisions: &[Decision]) -> Result<Vec<Reopened>> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let now = now_ms();
        let mut reopened = Vec::new();
        // Growths grouped by alert (each group after the alert's opening, which comes
        // first in the decisions): one state check and one update per alert.
        let mut grows: Vec<(&str, Vec<Contribution>)> = Vec::new();
        let mut group: HashMap<&str, usize> = HashMap::new();
        for decision in decisions {
            match decision {
                Decision::Open(a) => {
                    let (first, last) = (
                        a.events.iter().map(|c| c.at).min().unwrap_or_default(),
                        a.events.iter().map(|c| c.at).max().unwrap_or_default(),
                    );
                    let inserted = tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO alerts (id, rule_id, rule_name, severity, connection_id, user_id,
                             username, state, first_at, last_at, events, rows, created_at, updated_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', ?8, ?9, 0, 0, ?10, ?10)",
                        )?
                        .execute(params![
                            a.id,
                            a.rule_id,
                            a.rule_name,
                            a.severity.as_str(),
                            a.connection_id,
                            a.user_id,
                            a.username,
                            first,
                            last,
                            now
                        ])?;
                    if inserted == 0 {
                        continue; // evaluated before (a replay): raised once
                    }
                    contribute(&tx, tx.last_insert_rowid(), &a.events, now)?;
                    for channel in &a.channels {
                        tx.prepare_cached(
                            "INSERT OR IGNORE INTO deliveries (alert_id, channel_id, created_at, next_at)
                             SELECT ?1, id, ?2, ?2 FROM channels WHERE id = ?3 AND enabled",
                        )?
                        .execute(params![a.id, now, channel])?;
                    }
                }
                Decision::Grow { alert_id, event } => {
                    let at = *group.entry(alert_id).or_insert_with(|| {
                        grows.push((alert_id, Vec::new()));
                        grows.len() - 1
                    });
                    grows[at].1.push(*event);
                }
            }
        }
        for (alert_id, events) in grows {
            let found: Option<(i64, String)> = tx
                .prepare_cached("SELECT ord, state FROM alerts WHERE id = ?1")?
                .query_row([alert_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((ord, state)) = found else { continue };
            let closed = state.parse::<crate::alerts::AlertState>().is_ok_and(crate::alerts::AlertState::is_closed);
            if !closed {
                contribute(&tx, ord, &events, now)?;
                continue;
            }
            // Closed by a person meanwhile: these matches start a new alert like it.
            let (rule_id, connection, user): (i64, String, String) =
                tx.query_row("SELECT rule_id, connection_id, user_id FROM alerts WHERE ord = ?1", [ord], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            let event_id: String =
                tx.query_row("SELECT id FROM file_events WHERE seq = ?1", [events[0].seq], |r| r.get(0))?;
            let new = crate::alerts::engine::alert_id(rule_id, &connection, &user, &event_id);
            tx.execute(
                "INSERT OR IGNORE INTO alerts (id, rule_id, rule_name, severity, connection_id, user_id, username,
                 state, first_at, last_at, events, rows, created_at, updated_at)
                 SELECT ?2, rule_id, rule_name, severity, connection_id, user_id, username, 'open', ?3, ?3, 0, 0, ?4, ?4
                 FROM alerts WHERE ord = ?1",
                params![ord, new, events[0].at, now],
            )?;
            let new_ord: i64 = tx.query_row("SELECT ord FROM alerts WHERE id = ?1", [&new], |r| r.get(0))?;
            contribute(&tx, new_ord, &events, now)?;
            tx.execute(
                "INSERT OR IGNORE INTO deliveries (alert_id, channel_id, created_at, next_at)
                 SELECT ?2, channel_id, ?3, ?3 FROM deliveries WHERE alert_id = ?1",
                params![alert_id, new, now],
            )?;
            let last_at = events.iter().map(|c| c.at).max().unwrap_or_default();
            reopened.push(Reopened { closed: alert_id.to_owned(), new, last_at });
        }
        covered(&tx, decisions)?;
        tx.execute("UPDATE alert_position SET last_seq = MAX(last_seq, ?1) WHERE id = 1", [position])?;
        tx.commit()?;
        Ok(reopened)
    }

    fn open_alerts(&self, since_ms: i64) -> Result<Vec<Alert>> {
        let db = self.reader();
        let mut stmt = db.prepare(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE state IN ('open', 'in-progress') AND last_at >= ?1"
        ))?;
        let alerts = stmt.query_map([since_ms], |r| rows::alert(r))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(alerts)
    }

    fn alerts(&self, filter: &AlertFilter) -> Result<(Vec<Alert>, u64)> {
        let mut clauses = vec!["1 = 1".to_owned()];
        let mut params: Vec<Sql> = Vec::new();
        let bind = |params: &mut Vec<Sql>, v: Sql| {
            params.push(v);
            format!("?{}", params.len())
        };
        if !filter.states.is_empty() {
            let list: Vec<String> =
                filter.states.iter().map(|s| bind(&mut params, Sql::Text(s.as_str().to_owned()))).collect();
            clauses.push(format!("state IN ({})", list.join(", ")));
        }
        if let Some(min) = filter.min_severity {
            let list: Vec<String> = Severity::ALL
                .iter()
                .filter(|s| **s >= min)
                .map(|s| bind(&mut params, Sql::Text(s.as_str().to_owned())))
                .collect();
            clauses.push(format!("severity IN ({})", list.join(", ")));
        }
        if let Some(rule) = filter.rule_id {
            clauses.push(format!("rule_id = {}", bind(&mut params, Sql::Integer(rule))));
        }
        if let Some(user) = &filter.user {
            let p = bind(&mut params, Sql::Text(user.to_lowercase()));
            clauses.push(format!("(lower(username) = {p} OR user_id = {p})"));
        }
        if let Some(after) = filter.after_seq {
            clauses.push(format!("ord > {}", bind(&mut params, Sql::Integer(after))));
        }
        let db = self.reader();
        let where_ = clauses.join(" AND ");
        let total: i64 = db.query_row(
            &format!("SELECT COUNT(*) FROM alerts WHERE {where_}"),
            rusqlite::params_from_iter(params.iter()),
            |r| r.get(0),
        )?;
        let order = match filter.order {
            _ if filter.after_seq.is_some() => "ord ASC".to_owned(),
            AlertOrder::Newest => "ord DESC".to_owned(),
            AlertOrder::Oldest => "ord ASC".to_owned(),
            AlertOrder::Severity => {
                let rank: Vec<String> =
                    Severity::ALL.iter().enumerate().map(|(i, s)| format!("WHEN '{}' THEN {i}", s.as_str())).collect();
                format!("CASE severity {} END DESC, ord DESC", rank.join(" "))
            }
        };
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE {where_} ORDER BY {order} LIMIT {} OFFSET {}",
            filter.limit.max(1),
            filter.offset
        );
        let alerts = db
            .prepare(&sql)?
            .query_map(rusqlite::params_from_iter(params.iter()), |r| rows::alert(r))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((alerts, total as u64))
    }

    fn alert(&self, id: &str) -> Result<Option<(Alert, Vec<AlertNote>)>> {
        let db = self.reader();
        let Some(alert) = db
            .query_row(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"), [id], |r| rows::alert(r))
            .optional()?
        else {
            return Ok(None);
        };
        let notes = db
            .prepare("SELECT at, author, text FROM alert_notes WHERE alert_id = ?1 ORDER BY at, rowid")?
            .query_map([id], |r| Ok(AlertNote { at: r.get(0)?, author: r.get(1)?, text: r.get(2)? }))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Some((alert, notes)))
    }

    fn alert_events(&self, id: &str, limit: usize) -> Result<Vec<FileEvent>> {
        let db = self.reader();
        let mut stmt = db.prepare(&format!(
            "SELECT {} FROM file_events WHERE seq IN ({}) ORDER BY observed_at, seq LIMIT ?2",
            *SLIM_COLUMNS,
            crate::store::sql::Dialect::Sqlite.alert_seqs("?1")
        ))?;
        let events =
            stmt.query_map(params![id, limit as i64], |r| rows::event(r))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(events)
    }

    fn update_alert(&self, id: &str, update: &AlertUpdate, actor: &str) -> Result<Alert> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let now = now_ms();
        let exists = tx.prepare_cached("SELECT 1 FROM alerts WHERE id = ?1")?.exists([id])?;
        if !exists {
            return Err(StoreError::NotFound(format!("alert {id}")));
        }
        if let Some(state) = update.state {
            tx.execute(
                "UPDATE alerts SET state = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, state.as_str(), now],
            )?;
            audit(&tx, actor, &format!("alert.state ({state})"), id)?;
        }
        if let Some(assignee) = &update.assignee {
            let assignee = Some(assignee.trim()).filter(|a| !a.is_empty());
            tx.execute("UPDATE alerts SET assignee = ?2, updated_at = ?3 WHERE id = ?1", params![id, assignee, now])?;
            audit(&tx, actor, &format!("alert.assign ({})", assignee.unwrap_or("nobody")), id)?;
        }
        if let Some(note) = update.note.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            tx.execute(
                "INSERT INTO alert_notes (alert_id, at, author, text) VALUES (?1, ?2, ?3, ?4)",
                params![id, now, actor, note],
            )?;
            tx.execute("UPDATE alerts SET updated_at = ?2 WHERE id = ?1", params![id, now])?;
            audit(&tx, actor, "alert.note", id)?;
        }
        let alert =
            tx.query_row(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"), [id], |r| rows::alert(r))?;
        tx.commit()?;
        Ok(alert)
    }

    fn uncovered(&self, from_ms: i64, to_ms: i64, limit: usize) -> Result<(Vec<FileEvent>, u64)> {
        let db = self.reader();
        let filter = "observed_at >= ?1 AND observed_at < ?2 AND severity IN ('high', 'critical')
                      AND NOT EXISTS (SELECT 1 FROM alerted_events a WHERE a.event_seq = file_events.seq)";
        let total: i64 =
            db.query_row(&format!("SELECT COUNT(*) FROM file_events WHERE {filter}"), params![from_ms, to_ms], |r| {
                r.get(0)
            })?;
        let mut stmt = db.prepare(&format!(
            "SELECT {} FROM file_events WHERE {filter} ORDER BY observed_at DESC LIMIT ?3",
            *SLIM_COLUMNS
        ))?;
        let events = stmt
            .query_map(params![from_ms, to_ms, limit as i64], |r| rows::event(r))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((events, total as u64))
    }

    fn alert_counts(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(Severity, u64, u64)>> {
        let db = self.reader();
        let mut stmt = db.prepare(
            "SELECT severity, COUNT(*), SUM(state IN ('open', 'in-progress')) FROM alerts
             WHERE created_at >= ?1 AND created_at < ?2 GROUP BY severity",
        )?;
        let mut counts = stmt
            .query_map(params![from_ms, to_ms], |r| {
                Ok((r.parsed::<Severity>(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        counts.sort_by_key(|c| std::cmp::Reverse(c.0));
        Ok(counts)
    }

    fn message_templates(&self) -> Result<Templates> {
        let text: Option<String> = self
            .reader()
            .query_row("SELECT value FROM settings WHERE name = 'templates'", [], |r| r.get(0))
            .optional()?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?.unwrap_or_default())
    }

    fn set_message_templates(&self, templates: &Templates, actor: &str) -> Result<()> {
        let value = serde_json::to_string(templates)?;
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT INTO settings (name, value) VALUES ('templates', ?1) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [&value],
        )?;
        audit(&tx, actor, "settings.templates", "message templates")?;
        tx.commit()?;
        Ok(())
    }

    fn channels(&self) -> Result<Vec<Channel>> {
        let rows = {
            let db = self.reader();
            let mut stmt = db.prepare("SELECT id, name, target, enabled FROM channels ORDER BY name COLLATE NOCASE")?;
            stmt.query_map([], |r| self.channel_from_row(r))?.collect::<rusqlite::Result<Vec<_>>>()?
        };
        rows.into_iter().map(|row| self.open_channel(row)).collect()
    }

    fn channel(&self, id: i64) -> Result<Channel> {
        let row = self
            .reader()
            .query_row("SELECT id, name, target, enabled FROM channels WHERE id = ?1", [id], |r| {
                self.channel_from_row(r)
            })
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("channel {id}")))?;
        self.open_channel(row)
    }

    fn save_channel(
        &self,
        id: Option<i64>,
        name: &str,
        target: &Target,
        enabled: bool,
        actor: &str,
    ) -> Result<Channel> {
        let sealed = self.sealed_target(target)?;
        let mut db = self.db();
        let tx = db.transaction()?;
        let what = format!("a channel named {:?}", name.trim());
        let id = match id {
            None => {
                tx.execute(
                    "INSERT INTO channels (name, kind, target, enabled, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![name.trim(), target.kind(), sealed, enabled, now_ms()],
                )
                .map_err(|e| unique(e, &what))?;
                audit(&tx, actor, &format!("channel.create ({})", target.kind()), name.trim())?;
                tx.last_insert_rowid()
            }
            Some(id) => {
                let n = tx
                    .execute(
                        "UPDATE channels SET name = ?2, kind = ?3, target = ?4, enabled = ?5 WHERE id = ?1",
                        params![id, name.trim(), target.kind(), sealed, enabled],
                    )
                    .map_err(|e| unique(e, &what))?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("channel {id}")));
                }
                audit(&tx, actor, "channel.update", name.trim())?;
                id
            }
        };
        tx.commit()?;
        Ok(Channel { id, name: name.trim().to_owned(), target: target.clone(), enabled })
    }

    fn delete_channel(&self, id: i64, actor: &str) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let name: String = tx
            .query_row("SELECT name FROM channels WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("channel {id}")))?;
        tx.execute("DELETE FROM deliveries WHERE channel_id = ?1 AND delivered_at IS NULL", [id])?;
        tx.execute("DELETE FROM channels WHERE id = ?1", [id])?;
        audit(&tx, actor, "channel.delete", &name)?;
        tx.commit()?;
        Ok(())
    }

    fn channel_health(&self) -> Result<HashMap<i64, ChannelHealth>> {
        let db = self.reader();
        let mut stmt = db.prepare(
            "SELECT channel_id,
                    SUM(delivered_at IS NULL AND failed_at IS NULL), SUM(failed_at IS NOT NULL),
                    SUM(delivered_at IS NOT NULL), MAX(delivered_at), MAX(last_error_at)
             FROM deliveries GROUP BY channel_id",
        )?;
        let mut health: HashMap<i64, ChannelHealth> = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    ChannelHealth {
                        pending: r.get::<_, i64>(1)? as u64,
                        failed: r.get::<_, i64>(2)? as u64,
                        delivered: r.get::<_, i64>(3)? as u64,
                        last_delivered_at: r.get(4)?,
                        last_error: None,
                        last_error_at: r.get(5)?,
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (id, h) in &mut health {
            if let Some(at) = h.last_error_at {
                h.last_error = db
                    .query_row(
                        "SELECT last_error FROM deliveries WHERE channel_id = ?1 AND last_error_at = ?2 LIMIT 1",
                        params![id, at],
                        |r| r.get(0),
                    )
                    .optional()?
                    .flatten();
            }
        }
        Ok(health)
    }

    fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<Delivery>> {
        let db = self.reader();
        let mut stmt = db.prepare_cached(
            "SELECT id, alert_id, channel_id, attempts, created_at FROM deliveries
             WHERE delivered_at IS NULL AND failed_at IS NULL AND next_at <= ?1 ORDER BY next_at, id LIMIT ?2",
        )?;
        let due = stmt
            .query_map(params![now_ms, limit as i64], |r| {
                Ok(Delivery {
                    id: r.get(0)?,
                    alert_id: r.get(1)?,
                    channel_id: r.get(2)?,
                    attempts: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(due)
    }

    fn next_delivery_at(&self) -> Result<Option<i64>> {
        Ok(self.reader().query_row(
            "SELECT MIN(next_at) FROM deliveries WHERE delivered_at IS NULL AND failed_at IS NULL",
            [],
            |r| r.get(0),
        )?)
    }

    fn record_attempt(&self, delivery_id: i64, attempt: &Attempt) -> Result<()> {
        let db = self.db();
        let now = now_ms();
        match attempt {
            Attempt::Delivered => db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, delivered_at = ?2 WHERE id = ?1",
                params![delivery_id, now],
            )?,
            Attempt::Failed { error, retry_at } => db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?2, last_error_at = ?3,
                 next_at = COALESCE(?4, next_at), failed_at = CASE WHEN ?4 IS NULL THEN ?3 END WHERE id = ?1",
                params![delivery_id, error, now, retry_at],
            )?,
        };
        Ok(())
    }
}
