//! The shared store's half for alerting: risk settings, watch lists, rules, alerts,
//! channels and the notification outbox.

use std::collections::HashMap;

use tokio_postgres::Row;

use super::db::{Arg, args, boxed, unique};
use super::{PostgresStore, Tx, audit, count, now_ms};
use crate::alerts::engine::{Contribution, Decision};
use crate::alerts::template::Templates;
use crate::alerts::{
    Alert, AlertFilter, AlertNote, AlertOrder, AlertUpdate, Channel, ChannelHealth, Delivery, Rule, RuleDraft, Target,
};
use crate::events::FileEvent;
use crate::risk::{RiskSettings, Severity, WatchEntry, WatchKind};
use crate::store::rows::{self, ALERT_COLUMNS, Cells, RULE_COLUMNS, RULE_COLUMNS_OF_EVENTS, SLIM_COLUMNS};
use crate::store::sql::{Dialect, Param};
use crate::store::{AlertStore, Attempt, Reopened, Result, StoreError};

/// The advisory lock under which alerts are numbered (`ord` order is commit order).
const ALERT_LOCK: i64 = 0x7472_6970_6c03;

fn max_seq(tx: &mut Tx<'_, '_>) -> Result<i64> {
    tx.one("SELECT COALESCE(MAX(seq), 0)::bigint FROM file_events", &[])?.int(0)
}

/// Records the high and critical events some alert now holds (each once).
fn covered(tx: &mut Tx<'_, '_>, decisions: &[Decision]) -> Result<()> {
    let contributions = decisions.iter().flat_map(|d| match d {
        Decision::Open(a) => a.events.as_slice(),
        Decision::Grow { event, .. } => std::slice::from_ref(event),
    });
    let risky: std::collections::BTreeSet<i64> =
        contributions.filter(|c| c.severity >= Severity::High).map(|c| c.seq).collect();
    if !risky.is_empty() {
        let risky: Vec<i64> = risky.into_iter().collect();
        tx.exec(
            "INSERT INTO alerted_events (event_seq) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING",
            &[&risky],
        )?;
    }
    Ok(())
}

/// Adds events to an alert and its counts: one row for them all, keyed by the first.
fn contribute(tx: &mut Tx<'_, '_>, alert: i64, events: &[Contribution], now: i64) -> Result<()> {
    let Some(head) = events.first() else { return Ok(()) };
    let seqs: Vec<i64> = events.iter().map(|c| c.seq).collect();
    let added = tx.exec(
        "INSERT INTO alert_event_blocks (alert, first_seq, seqs) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&alert, &head.seq, &seqs],
    )?;
    if added == 0 {
        return Ok(());
    }
    let rows: i64 = events.iter().map(|c| c.rows).sum();
    let first = events.iter().map(|c| c.at).min().unwrap_or_default();
    let last = events.iter().map(|c| c.at).max().unwrap_or_default();
    tx.exec(
        "UPDATE alerts SET events = events + $2, rows = rows + $3, first_at = LEAST(first_at, $4),
         last_at = GREATEST(last_at, $5), updated_at = $6 WHERE ord = $1",
        &[&alert, &(events.len() as i64), &rows, &first, &last, &now],
    )?;
    Ok(())
}

impl PostgresStore {
    fn open_channel(&self, r: &Row) -> Result<Channel> {
        let target: Target = serde_json::from_str(&self.secrets.open(&r.text(2)?)?)?;
        Ok(Channel { id: r.int(0)?, name: r.text(1)?, target, enabled: r.flag(3)? })
    }

    fn setting<T: serde::de::DeserializeOwned + Default>(&self, name: &str) -> Result<T> {
        let row = self.pool.read(|db| db.opt("SELECT value FROM settings WHERE name = $1", &[&name]))?;
        Ok(row.map(|r| r.json(0)).transpose()?.unwrap_or_default())
    }

    fn set_setting(&self, name: &str, value: &str, actor: &str, action: &str, target: &str) -> Result<()> {
        self.pool.write(|tx| {
            tx.exec(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&name, &value],
            )?;
            audit(tx, actor, action, target)
        })
    }

    fn events_where(&self, columns: &str, clause: &str, params: &[Arg<'_>]) -> Result<Vec<FileEvent>> {
        let rows =
            self.pool.read(|db| db.rows(&format!("SELECT {columns} FROM file_events WHERE {clause}"), params))?;
        rows.iter().map(rows::event).collect()
    }
}

impl AlertStore for PostgresStore {
    fn risk_settings(&self) -> Result<RiskSettings> {
        self.setting("risk")
    }

    fn set_risk_settings(&self, settings: &RiskSettings, actor: &str) -> Result<()> {
        self.set_setting("risk", &serde_json::to_string(settings)?, actor, "settings.risk", "risk settings")
    }

    fn watchlist(&self) -> Result<Vec<WatchEntry>> {
        let rows = self.pool.read(|db| {
            db.rows(
                "SELECT kind, username, departure, note, added_at, added_by FROM watchlist
                 ORDER BY kind COLLATE \"C\", username COLLATE \"C\"",
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(WatchEntry {
                    kind: r.parsed(0)?,
                    username: r.text(1)?,
                    departure: r.text_opt(2)?.and_then(|d| d.parse().ok()),
                    note: r.text_opt(3)?,
                    added_at: r.int(4)?,
                    added_by: r.text(5)?,
                })
            })
            .collect()
    }

    fn add_watch_entries(&self, entries: &[WatchEntry], actor: &str) -> Result<usize> {
        self.pool.write(|tx| {
            let mut added = 0;
            for e in entries {
                let username = e.username.to_lowercase();
                // xmax = 0: the row was inserted, not updated.
                let inserted = tx
                    .one(
                        "INSERT INTO watchlist (kind, username, departure, note, added_at, added_by) VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (kind, username) DO UPDATE SET departure = excluded.departure, note = excluded.note
                         RETURNING xmax = 0",
                        &[&e.kind.as_str(), &username, &e.departure.map(|d| d.to_string()), &e.note, &e.added_at, &e.added_by],
                    )?
                    .flag(0)?;
                if inserted {
                    added += 1;
                    audit(tx, actor, &format!("watchlist.add ({})", e.kind), &username)?;
                }
            }
            Ok(added)
        })
    }

    fn remove_watch_entry(&self, kind: WatchKind, username: &str, actor: &str) -> Result<()> {
        self.pool.write(|tx| {
            let n = tx.exec(
                "DELETE FROM watchlist WHERE kind = $1 AND username = $2",
                &[&kind.as_str(), &username.to_lowercase()],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("{username} on the {kind} list")));
            }
            audit(tx, actor, &format!("watchlist.remove ({kind})"), username)
        })
    }

    fn rules(&self) -> Result<Vec<Rule>> {
        let rows =
            self.pool.read(|db| db.rows(&format!("SELECT {RULE_COLUMNS} FROM rules ORDER BY lower(name), id"), &[]))?;
        rows.iter().map(rows::rule).collect()
    }

    fn rule(&self, id: i64) -> Result<Rule> {
        let row = self.pool.read(|db| db.opt(&format!("SELECT {RULE_COLUMNS} FROM rules WHERE id = $1"), &[&id]))?;
        rows::rule(&row.ok_or_else(|| StoreError::NotFound(format!("rule {id}")))?)
    }

    fn create_rule(&self, draft: &RuleDraft, actor: &str) -> Result<Rule> {
        let definition = rows::definition(draft)?;
        let name = draft.name.trim();
        self.pool.write(|tx| {
            tx.try_exec(
                "INSERT INTO rules (name, definition, enabled, active_from_seq, updated_at, updated_by)
                 VALUES ($1, $2, FALSE, 0, $3, $4)",
                &[&name, &definition, &now_ms(), &actor],
            )?
            .map_err(|e| unique(e, &format!("a rule named {name:?}")))?;
            audit(tx, actor, "rule.create", name)?;
            rows::rule(&tx.one(&format!("SELECT {RULE_COLUMNS} FROM rules WHERE lower(name) = lower($1)"), &[&name])?)
        })
    }

    fn update_rule(&self, id: i64, draft: &RuleDraft, actor: &str) -> Result<Rule> {
        let definition = rows::definition(draft)?;
        let name = draft.name.trim();
        self.pool.write(|tx| {
            let from = max_seq(tx)?;
            let n = tx
                .try_exec(
                    "UPDATE rules SET name = $2, definition = $3, updated_at = $4, updated_by = $5,
                     active_from_seq = CASE WHEN enabled THEN $6 ELSE active_from_seq END WHERE id = $1",
                    &[&id, &name, &definition, &now_ms(), &actor, &from],
                )?
                .map_err(|e| unique(e, &format!("a rule named {name:?}")))?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("rule {id}")));
            }
            audit(tx, actor, "rule.update", name)?;
            rows::rule(&tx.one(&format!("SELECT {RULE_COLUMNS} FROM rules WHERE id = $1"), &[&id])?)
        })
    }

    fn set_rule_enabled(&self, id: i64, enabled: bool, actor: &str) -> Result<Rule> {
        self.pool.write(|tx| {
            let from = max_seq(tx)?;
            let n = tx.exec(
                "UPDATE rules SET enabled = $2, updated_at = $3, updated_by = $4,
                 active_from_seq = CASE WHEN $2 AND NOT enabled THEN $5 ELSE active_from_seq END WHERE id = $1",
                &[&id, &enabled, &now_ms(), &actor, &from],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("rule {id}")));
            }
            let rule = rows::rule(&tx.one(&format!("SELECT {RULE_COLUMNS} FROM rules WHERE id = $1"), &[&id])?)?;
            audit(tx, actor, if enabled { "rule.enable" } else { "rule.disable" }, &rule.name)?;
            Ok(rule)
        })
    }

    fn delete_rule(&self, id: i64, actor: &str) -> Result<()> {
        self.pool.write(|tx| {
            let name = tx
                .opt("DELETE FROM rules WHERE id = $1 RETURNING name", &[&id])?
                .ok_or_else(|| StoreError::NotFound(format!("rule {id}")))?
                .text(0)?;
            audit(tx, actor, "rule.delete", &name)
        })
    }

    fn events_after(&self, after_seq: i64, limit: usize) -> Result<Vec<FileEvent>> {
        self.events_where(&RULE_COLUMNS_OF_EVENTS, "seq > $1 ORDER BY seq LIMIT $2", &[&after_seq, &(limit as i64)])
    }

    fn events_between(&self, from_ms: i64, to_ms: i64, after_seq: i64, limit: usize) -> Result<Vec<FileEvent>> {
        self.events_where(
            &RULE_COLUMNS_OF_EVENTS,
            "seq > $3 AND observed_at >= $1 AND observed_at < $2 ORDER BY seq LIMIT $4",
            &[&from_ms, &to_ms, &after_seq, &(limit as i64)],
        )
    }

    fn alert_position(&self) -> Result<i64> {
        self.pool.read(|db| db.one("SELECT last_seq FROM alert_position WHERE id = 1", &[])?.int(0))
    }

    fn apply_alerts(&self, position: i64, decisions: &[Decision]) -> Result<Vec<Reopened>> {
        self.pool.write(|tx| {
            tx.one("SELECT pg_advisory_xact_lock($1)", &[&ALERT_LOCK])?;
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
                        let inserted = tx.opt(
                            "INSERT INTO alerts (id, rule_id, rule_name, severity, connection_id, user_id,
                             username, state, first_at, last_at, events, rows, created_at, updated_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, 0, 0, $10, $10)
                             ON CONFLICT DO NOTHING RETURNING ord",
                            &[
                                &a.id,
                                &a.rule_id,
                                &a.rule_name,
                                &a.severity.as_str(),
                                &a.connection_id,
                                &a.user_id,
                                &a.username,
                                &first,
                                &last,
                                &now,
                            ],
                        )?;
                        let Some(row) = inserted else {
                            continue; // evaluated before (a replay): raised once
                        };
                        contribute(tx, row.int(0)?, &a.events, now)?;
                        for channel in &a.channels {
                            tx.exec(
                                "INSERT INTO deliveries (alert_id, channel_id, created_at, next_at)
                                 SELECT $1, id, $2, $2 FROM channels WHERE id = $3 AND enabled ON CONFLICT DO NOTHING",
                                &[&a.id, &now, channel],
                            )?;
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
                let Some(found) = tx.opt(
                    "SELECT ord, state, rule_id, connection_id, user_id FROM alerts WHERE id = $1",
                    &[&alert_id],
                )?
                else {
                    continue;
                };
                let ord = found.int(0)?;
                let closed = found.parsed::<crate::alerts::AlertState>(1)?.is_closed();
                if !closed {
                    contribute(tx, ord, &events, now)?;
                    continue;
                }
                // Closed by a person meanwhile: these matches start a new alert like it.
                let event_id = tx.one("SELECT id FROM file_events WHERE seq = $1", &[&events[0].seq])?.text(0)?;
                let new = crate::alerts::engine::alert_id(found.int(2)?, &found.text(3)?, &found.text(4)?, &event_id);
                tx.exec(
                    "INSERT INTO alerts (id, rule_id, rule_name, severity, connection_id, user_id, username,
                     state, first_at, last_at, events, rows, created_at, updated_at)
                     SELECT $2, rule_id, rule_name, severity, connection_id, user_id, username, 'open', $3, $3, 0, 0, $4, $4
                     FROM alerts WHERE ord = $1 ON CONFLICT DO NOTHING",
                    &[&ord, &new, &events[0].at, &now],
                )?;
                let new_ord = tx.one("SELECT ord FROM alerts WHERE id = $1", &[&new])?.int(0)?;
                contribute(tx, new_ord, &events, now)?;
                tx.exec(
                    "INSERT INTO deliveries (alert_id, channel_id, created_at, next_at)
                     SELECT $2, channel_id, $3, $3 FROM deliveries WHERE alert_id = $1 ON CONFLICT DO NOTHING",
                    &[&alert_id, &new, &now],
                )?;
                let last_at = events.iter().map(|c| c.at).max().unwrap_or_default();
                reopened.push(Reopened { closed: alert_id.to_owned(), new, last_at });
            }
            covered(tx, decisions)?;
            tx.exec("UPDATE alert_position SET last_seq = GREATEST(last_seq, $1) WHERE id = 1", &[&position])?;
            Ok(reopened)
        })
    }

    fn open_alerts(&self, since_ms: i64) -> Result<Vec<Alert>> {
        let rows = self.pool.read(|db| {
            db.rows(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE state IN ('open', 'in-progress') AND last_at >= $1"),
                &[&since_ms],
            )
        })?;
        rows.iter().map(rows::alert).collect()
    }

    fn alerts(&self, filter: &AlertFilter) -> Result<(Vec<Alert>, u64)> {
        let d = Dialect::Postgres;
        let mut clauses = vec!["TRUE".to_owned()];
        let mut params: Vec<Param> = Vec::new();
        if !filter.states.is_empty() {
            let list: Vec<String> =
                filter.states.iter().map(|s| d.bind(&mut params, Param::Text(s.as_str().to_owned()))).collect();
            clauses.push(format!("state IN ({})", list.join(", ")));
        }
        if let Some(min) = filter.min_severity {
            let list: Vec<String> = Severity::ALL
                .iter()
                .filter(|s| **s >= min)
                .map(|s| d.bind(&mut params, Param::Text(s.as_str().to_owned())))
                .collect();
            clauses.push(format!("severity IN ({})", list.join(", ")));
        }
        if let Some(rule) = filter.rule_id {
            clauses.push(format!("rule_id = {}", d.bind(&mut params, Param::Int(rule))));
        }
        if let Some(user) = &filter.user {
            let p = d.bind(&mut params, Param::Text(user.to_lowercase()));
            clauses.push(format!("(lower(username) = {p} OR user_id = {p})"));
        }
        if let Some(after) = filter.after_seq {
            clauses.push(format!("ord > {}", d.bind(&mut params, Param::Int(after))));
        }
        let where_ = clauses.join(" AND ");
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
        let values = boxed(&params);
        let (total, rows) = self.pool.read(|db| {
            let total = db.rows_once(&format!("SELECT COUNT(*) FROM alerts WHERE {where_}"), &args(&values))?;
            let rows = db.rows_once(
                &format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts WHERE {where_} ORDER BY {order} LIMIT {} OFFSET {}",
                    filter.limit.max(1),
                    filter.offset
                ),
                &args(&values),
            )?;
            Ok((total, rows))
        })?;
        let total = total.first().map(|r| r.int(0)).transpose()?.unwrap_or(0);
        Ok((rows.iter().map(rows::alert).collect::<Result<_>>()?, count(total)))
    }

    fn alert(&self, id: &str) -> Result<Option<(Alert, Vec<AlertNote>)>> {
        let (alert, notes) = self.pool.read(|db| {
            let alert = db.opt(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"), &[&id])?;
            let notes =
                db.rows("SELECT at, author, text FROM alert_notes WHERE alert_id = $1 ORDER BY at, id", &[&id])?;
            Ok((alert, notes))
        })?;
        let Some(alert) = alert else { return Ok(None) };
        let notes = notes
            .iter()
            .map(|r| Ok(AlertNote { at: r.int(0)?, author: r.text(1)?, text: r.text(2)? }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some((rows::alert(&alert)?, notes)))
    }

    fn alert_events(&self, id: &str, limit: usize) -> Result<Vec<FileEvent>> {
        self.events_where(
            &SLIM_COLUMNS,
            &format!("seq IN ({}) ORDER BY observed_at, seq LIMIT $2", Dialect::Postgres.alert_seqs("$1")),
            &[&id, &(limit as i64)],
        )
    }

    fn update_alert(&self, id: &str, update: &AlertUpdate, actor: &str) -> Result<Alert> {
        self.pool.write(|tx| {
            let now = now_ms();
            if tx.opt("SELECT 1 FROM alerts WHERE id = $1", &[&id])?.is_none() {
                return Err(StoreError::NotFound(format!("alert {id}")));
            }
            if let Some(state) = update.state {
                tx.exec("UPDATE alerts SET state = $2, updated_at = $3 WHERE id = $1", &[&id, &state.as_str(), &now])?;
                audit(tx, actor, &format!("alert.state ({state})"), id)?;
            }
            if let Some(assignee) = &update.assignee {
                let assignee = Some(assignee.trim()).filter(|a| !a.is_empty());
                tx.exec("UPDATE alerts SET assignee = $2, updated_at = $3 WHERE id = $1", &[&id, &assignee, &now])?;
                audit(tx, actor, &format!("alert.assign ({})", assignee.unwrap_or("nobody")), id)?;
            }
            if let Some(note) = update.note.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
                tx.exec(
                    "INSERT INTO alert_notes (alert_id, at, author, text) VALUES ($1, $2, $3, $4)",
                    &[&id, &now, &actor, &note],
                )?;
                tx.exec("UPDATE alerts SET updated_at = $2 WHERE id = $1", &[&id, &now])?;
                audit(tx, actor, "alert.note", id)?;
            }
            rows::alert(&tx.one(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"), &[&id])?)
        })
    }

    fn uncovered(&self, from_ms: i64, to_ms: i64, limit: usize) -> Result<(Vec<FileEvent>, u64)> {
        let filter = "observed_at >= $1 AND observed_at < $2 AND severity IN ('high', 'critical')
                      AND NOT EXISTS (SELECT 1 FROM alerted_events a WHERE a.event_seq = file_events.seq)";
        let total = self
            .pool
            .read(|db| db.one(&format!("SELECT COUNT(*) FROM file_events WHERE {filter}"), &[&from_ms, &to_ms]))?
            .int(0)?;
        let events = self.events_where(
            &SLIM_COLUMNS,
            &format!("{filter} ORDER BY observed_at DESC LIMIT $3"),
            &[&from_ms, &to_ms, &(limit as i64)],
        )?;
        Ok((events, count(total)))
    }

    fn alert_counts(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(Severity, u64, u64)>> {
        let rows = self.pool.read(|db| {
            db.rows(
                "SELECT severity, COUNT(*), COUNT(*) FILTER (WHERE state IN ('open', 'in-progress')) FROM alerts
                 WHERE created_at >= $1 AND created_at < $2 GROUP BY severity",
                &[&from_ms, &to_ms],
            )
        })?;
        let mut counts = rows
            .iter()
            .map(|r| Ok((r.parsed::<Severity>(0)?, count(r.int(1)?), count(r.int(2)?))))
            .collect::<Result<Vec<_>>>()?;
        counts.sort_by_key(|c| std::cmp::Reverse(c.0));
        Ok(counts)
    }

    fn message_templates(&self) -> Result<Templates> {
        self.setting("templates")
    }

    fn set_message_templates(&self, templates: &Templates, actor: &str) -> Result<()> {
        self.set_setting(
            "templates",
            &serde_json::to_string(templates)?,
            actor,
            "settings.templates",
            "message templates",
        )
    }

    fn channels(&self) -> Result<Vec<Channel>> {
        let rows = self
            .pool
            .read(|db| db.rows("SELECT id, name, target, enabled FROM channels ORDER BY lower(name), id", &[]))?;
        rows.iter().map(|r| self.open_channel(r)).collect()
    }

    fn channel(&self, id: i64) -> Result<Channel> {
        let row =
            self.pool.read(|db| db.opt("SELECT id, name, target, enabled FROM channels WHERE id = $1", &[&id]))?;
        self.open_channel(&row.ok_or_else(|| StoreError::NotFound(format!("channel {id}")))?)
    }

    fn save_channel(
        &self,
        id: Option<i64>,
        name: &str,
        target: &Target,
        enabled: bool,
        actor: &str,
    ) -> Result<Channel> {
        let sealed = self.secrets.seal(&serde_json::to_string(target)?)?;
        let name = name.trim();
        let what = format!("a channel named {name:?}");
        let id = self.pool.write(|tx| match id {
            None => {
                let id = tx
                    .try_one(
                        "INSERT INTO channels (name, kind, target, enabled, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                        &[&name, &target.kind(), &sealed, &enabled, &now_ms()],
                    )?
                    .map_err(|e| unique(e, &what))?
                    .int(0)?;
                audit(tx, actor, &format!("channel.create ({})", target.kind()), name)?;
                Ok(id)
            }
            Some(id) => {
                let n = tx
                    .try_exec(
                        "UPDATE channels SET name = $2, kind = $3, target = $4, enabled = $5 WHERE id = $1",
                        &[&id, &name, &target.kind(), &sealed, &enabled],
                    )?
                    .map_err(|e| unique(e, &what))?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("channel {id}")));
                }
                audit(tx, actor, "channel.update", name)?;
                Ok(id)
            }
        })?;
        Ok(Channel { id, name: name.to_owned(), target: target.clone(), enabled })
    }

    fn delete_channel(&self, id: i64, actor: &str) -> Result<()> {
        self.pool.write(|tx| {
            let name = tx
                .opt("SELECT name FROM channels WHERE id = $1", &[&id])?
                .ok_or_else(|| StoreError::NotFound(format!("channel {id}")))?
                .text(0)?;
            tx.exec("DELETE FROM deliveries WHERE channel_id = $1 AND delivered_at IS NULL", &[&id])?;
            tx.exec("DELETE FROM channels WHERE id = $1", &[&id])?;
            audit(tx, actor, "channel.delete", &name)
        })
    }

    fn channel_health(&self) -> Result<HashMap<i64, ChannelHealth>> {
        let rows = self.pool.read(|db| {
            db.rows(
                "SELECT channel_id,
                        COUNT(*) FILTER (WHERE delivered_at IS NULL AND failed_at IS NULL),
                        COUNT(*) FILTER (WHERE failed_at IS NOT NULL),
                        COUNT(*) FILTER (WHERE delivered_at IS NOT NULL),
                        MAX(delivered_at), MAX(last_error_at),
                        (ARRAY_AGG(last_error ORDER BY last_error_at DESC NULLS LAST))[1]
                 FROM deliveries GROUP BY channel_id",
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                let last_error_at = r.int_opt(5)?;
                Ok((
                    r.int(0)?,
                    ChannelHealth {
                        pending: count(r.int(1)?),
                        failed: count(r.int(2)?),
                        delivered: count(r.int(3)?),
                        last_delivered_at: r.int_opt(4)?,
                        last_error: last_error_at.map(|_| r.text_opt(6)).transpose()?.flatten(),
                        last_error_at,
                    },
                ))
            })
            .collect()
    }

    fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<Delivery>> {
        let rows = self.pool.read(|db| {
            db.rows(
                "SELECT id, alert_id, channel_id, attempts, created_at FROM deliveries
                 WHERE delivered_at IS NULL AND failed_at IS NULL AND next_at <= $1 ORDER BY next_at, id LIMIT $2",
                &[&now_ms, &(limit as i64)],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(Delivery {
                    id: r.int(0)?,
                    alert_id: r.text(1)?,
                    channel_id: r.int(2)?,
                    attempts: u32::try_from(r.int(3)?).unwrap_or(u32::MAX),
                    created_at: r.int(4)?,
                })
            })
            .collect()
    }

    fn next_delivery_at(&self) -> Result<Option<i64>> {
        self.pool.read(|db| {
            db.one("SELECT MIN(next_at) FROM deliveries WHERE delivered_at IS NULL AND failed_at IS NULL", &[])?
                .int_opt(0)
        })
    }

    fn record_attempt(&self, delivery_id: i64, attempt: &Attempt) -> Result<()> {
        let now = now_ms();
        self.pool.write(|tx| {
            match attempt {
                Attempt::Delivered => tx.exec(
                    "UPDATE deliveries SET attempts = attempts + 1, delivered_at = $2 WHERE id = $1",
                    &[&delivery_id, &now],
                )?,
                Attempt::Failed { error, retry_at } => tx.exec(
                    "UPDATE deliveries SET attempts = attempts + 1, last_error = $2, last_error_at = $3,
                     next_at = COALESCE($4, next_at), failed_at = CASE WHEN $4::bigint IS NULL THEN $3::bigint END WHERE id = $1",
                    &[&delivery_id, error, &now, retry_at],
                )?,
            };
            Ok(())
        })
    }
}
