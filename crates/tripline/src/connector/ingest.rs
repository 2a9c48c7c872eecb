//! Turning deliveries into stored records. Each delivery is applied to the store with
//! its checkpoint in one transaction; only then does the subscriber ask for more.
//! What if the process dies here? Before the commit: nothing of the delivery is
//! stored and the old checkpoint replays it. After: the new checkpoint skips it, and
//! `seen_events` makes any replay a no-op.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use salesforce::api::SalesforceApi;
use salesforce::pubsub::{Delivery, EventSink, SinkError, StartFrom, StreamHealth};
use serde_json::{Map, Value};
use sfwire::pubsub::{LOGIN_TOPIC, LOGOUT_TOPIC, REPORT_TOPIC, is_export_operation};
use sha2::{Digest, Sha256};

use crate::events::{Attribution, Cidr, RiskInputs, assess, destination, predicted_file_name};
use crate::store::{Checkpoint, ExportChunk, FileEventRow, LoginRecord, ReportBatch, SessionInfo, Store, UserInfo};

/// What every topic's sink of one connection shares.
pub struct ConnectionContext {
    pub connection_id: String,
    pub store: Arc<dyn Store>,
    pub api: Arc<SalesforceApi>,
    pub corporate: Vec<Cidr>,
    /// Who the connection monitors, as configured.
    pub mode: super::scope::ScopeMode,
    /// Exports before this time (ms) predate the connection and are not recorded.
    pub monitor_from_ms: i64,
    /// Monitored users by 15-character id.
    pub scope: RwLock<HashMap<String, UserInfo>>,
    /// Users known to have stored exports (a cache for the "first export" indicator).
    pub exporters: RwLock<std::collections::HashSet<String>>,
    /// What the subscribers last reported, by topic.
    pub health: RwLock<HashMap<String, StreamHealth>>,
}

impl ConnectionContext {
    pub fn set_scope(&self, users: Vec<UserInfo>) {
        let map = users.into_iter().map(|u| (short(&u.user_id).to_owned(), u)).collect();
        *self.scope.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    fn in_scope(&self, user_id: &str) -> Option<UserInfo> {
        self.scope.read().unwrap_or_else(|e| e.into_inner()).get(short(user_id)).cloned()
    }
}

fn short(id: &str) -> &str {
    id.get(..15).unwrap_or(id)
}

fn text(fields: &Map<String, Value>, name: &str) -> Option<String> {
    fields.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Numbers arrive as JSON numbers from Avro, and as strings or numbers from REST.
fn number(fields: &Map<String, Value>, name: &str) -> Option<f64> {
    match fields.get(name)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// EventDate as epoch ms: a long from Avro, a datetime string from REST.
fn event_time(fields: &Map<String, Value>) -> i64 {
    match fields.get("EventDate") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or_default(),
        Some(Value::String(s)) => chrono::DateTime::parse_from_str(&s.replace('Z', "+0000"), "%Y-%m-%dT%H:%M:%S%.f%z")
            .map(|d| d.timestamp_millis())
            .unwrap_or_default(),
        _ => 0,
    }
}

/// A file event's id: stable for the export, derived from Salesforce's identifiers
/// (the ExecutionIdentifier its chunks share, else its EventIdentifier).
fn file_event_id(connection_id: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("{connection_id}\n{key}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn login_record(fields: &Map<String, Value>, logout: bool) -> Option<LoginRecord> {
    let status = text(fields, "Status");
    Some(LoginRecord {
        event_identifier: text(fields, "EventIdentifier")?,
        logout,
        success: logout || status.as_deref() == Some("Success"),
        status,
        session: SessionInfo {
            session_key: text(fields, "SessionKey").unwrap_or_default(),
            login_key: text(fields, "LoginKey"),
            user_id: text(fields, "UserId")?,
            username: text(fields, "Username"),
            source_ip: text(fields, "SourceIp"),
            browser: text(fields, "Browser"),
            platform: text(fields, "Platform"),
            city: text(fields, "City"),
            country: text(fields, "Country"),
            login_at: event_time(fields),
        },
    })
}

fn sink_error(e: impl std::fmt::Display) -> SinkError {
    SinkError(e.to_string())
}

impl ConnectionContext {
    /// Builds the report batch for some ReportEventStream events (from the stream or
    /// the stored ReportEvent object), attributing each export.
    pub async fn report_batch(&self, events: Vec<Map<String, Value>>) -> Result<ReportBatch, SinkError> {
        let mut batch = ReportBatch::default();
        let mut looked_up: HashMap<String, Option<UserInfo>> = HashMap::new();
        for fields in events {
            let Some(operation) = text(&fields, "Operation") else { continue };
            if !is_export_operation(&operation) {
                continue; // runs, previews and dashboard refreshes are not downloads
            }
            let (Some(event_identifier), Some(user_id)) = (text(&fields, "EventIdentifier"), text(&fields, "UserId"))
            else {
                continue;
            };
            let at = event_time(&fields);
            if at < self.monitor_from_ms {
                continue;
            }
            let Some(scoped) = self.in_scope(&user_id) else {
                batch.out_of_scope.push(event_identifier);
                continue;
            };
            let session_key = text(&fields, "SessionKey");
            let session = match &session_key {
                Some(key) => self.store.session(&self.connection_id, key).map_err(sink_error)?,
                None => None,
            };
            let session = session.filter(|s| short(&s.user_id) == short(&user_id));
            let (attribution, user) = match &session {
                Some(_) => (Attribution::LoginSession, scoped),
                None => {
                    let cached = match looked_up.get(&user_id) {
                        Some(found) => found.clone(),
                        None => {
                            let found = match self
                                .store
                                .cached_user(&self.connection_id, &user_id)
                                .map_err(sink_error)?
                            {
                                Some(u) => Some(u),
                                None => {
                                    // A failed lookup (API limit, network) must not stop
                                    // ingest: the scope scan's record of the user serves.
                                    match super::scope::lookup_user(&self.api, &user_id).await {
                                        Ok(fresh) => {
                                            if let Some(u) = &fresh {
                                                batch.users_looked_up.push(u.clone());
                                            }
                                            fresh
                                        }
                                        Err(e) => {
                                            tracing::warn!(user = %user_id, "user lookup failed, using the scope scan: {e}");
                                            None
                                        }
                                    }
                                }
                            };
                            looked_up.insert(user_id.clone(), found.clone());
                            found
                        }
                    };
                    (Attribution::UserLookup, cached.unwrap_or(scoped))
                }
            };
            let rows = number(&fields, "RowsProcessed").unwrap_or_default() as i64;
            let source_ip = text(&fields, "SourceIp").or_else(|| session.as_ref().and_then(|s| s.source_ip.clone()));
            let dest = destination(source_ip.as_deref(), &self.corporate);
            let first_export = !self.has_exported(&user.user_id)?;
            let risk = assess(&RiskInputs { rows, destination: dest, at_ms: at, first_export_by_user: first_export });
            let report_name = text(&fields, "Name");
            let export_format = text(&fields, "ExportFileFormat");
            let execution_id = text(&fields, "ExecutionIdentifier");
            let report_id = text(&fields, "ReportId");
            let file_event = FileEventRow {
                seq: 0,
                id: file_event_id(&self.connection_id, execution_id.as_deref().unwrap_or(&event_identifier)),
                connection_id: self.connection_id.clone(),
                observed_at: at,
                ingested_at: chrono::Utc::now().timestamp_millis(),
                attribution: attribution.as_str().to_owned(),
                user_id: user.user_id.clone(),
                username: Some(user.username.clone()),
                email: user.email.clone(),
                user_name: user.name.clone(),
                report_type: Some(
                    if report_id.as_deref().is_some_and(|r| r.starts_with("00O")) { "saved" } else { "ad-hoc" }.into(),
                ),
                report_id,
                file_name: predicted_file_name(
                    report_name.as_deref().unwrap_or("report"),
                    export_format.as_deref(),
                    at,
                ),
                report_name,
                report_description: text(&fields, "Description"),
                report_format: text(&fields, "Format"),
                export_format,
                operation: Some(operation),
                rows,
                columns: text(&fields, "ColumnHeaders"),
                column_count: number(&fields, "NumberOfColumns").map(|n| n as i64),
                queried_entities: text(&fields, "QueriedEntities"),
                execution_id,
                chunk_count: 1,
                source_ip,
                browser: session.as_ref().and_then(|s| s.browser.clone()),
                platform: session.as_ref().and_then(|s| s.platform.clone()),
                city: session.as_ref().and_then(|s| s.city.clone()),
                country: session.as_ref().and_then(|s| s.country.clone()),
                session_key,
                destination: dest.as_str().to_owned(),
                risk_score: risk.score,
                severity: risk.severity,
                indicators: risk.indicators,
                // The event as received; null fields say nothing and are left out.
                raw: vec![Value::Object(fields.into_iter().filter(|(_, v)| !v.is_null()).collect())],
            };
            batch.exports.push(ExportChunk { event_identifier, file_event });
        }
        Ok(batch)
    }

    fn has_exported(&self, user_id: &str) -> Result<bool, SinkError> {
        if self.exporters.read().unwrap_or_else(|e| e.into_inner()).contains(short(user_id)) {
            return Ok(true);
        }
        let has = self.store.user_has_file_events(&self.connection_id, user_id).map_err(sink_error)?;
        if has {
            self.exporters.write().unwrap_or_else(|e| e.into_inner()).insert(short(user_id).to_owned());
        }
        Ok(has)
    }
}

/// The sink for one topic of one connection.
pub struct TopicSink {
    pub context: Arc<ConnectionContext>,
}

impl EventSink for TopicSink {
    async fn deliver(&mut self, topic: &str, delivery: Delivery) -> Result<(), SinkError> {
        let ctx = &self.context;
        let checkpoint = delivery.latest_replay_id;
        let fields: Vec<Map<String, Value>> = delivery.events.into_iter().map(|e| e.fields).collect();
        match topic {
            LOGIN_TOPIC | LOGOUT_TOPIC => {
                let records: Vec<LoginRecord> =
                    fields.iter().filter_map(|f| login_record(f, topic == LOGOUT_TOPIC)).collect();
                ctx.store.apply_logins(&ctx.connection_id, topic, &records, &checkpoint).map_err(sink_error)?;
            }
            REPORT_TOPIC => {
                let batch = ctx.report_batch(fields).await?;
                ctx.store.apply_reports(&ctx.connection_id, topic, &batch, Some(&checkpoint)).map_err(sink_error)?;
            }
            other => return Err(SinkError(format!("no sink for topic {other}"))),
        }
        Ok(())
    }

    async fn start_point(&mut self, topic: &str) -> Result<StartFrom, SinkError> {
        let ctx = &self.context;
        let now = chrono::Utc::now().timestamp_millis();
        match ctx.store.checkpoint(&ctx.connection_id, topic).map_err(sink_error)? {
            Some(Checkpoint::At(replay)) => Ok(StartFrom::After(replay)),
            // Restarted before: the stream may no longer hold what happened since.
            Some(Checkpoint::RestartedAt(since)) => {
                if topic == REPORT_TOPIC {
                    self.recover(topic, since, now, "restarted without a replay id").await?;
                }
                ctx.store.mark_restart(&ctx.connection_id, topic, now).map_err(sink_error)?;
                Ok(StartFrom::Earliest)
            }
            // A new connection. Never LATEST: a crash before the first checkpoint would
            // lose what was published meanwhile. Retained logins teach us sessions of
            // people already signed in; exports from before the connection are skipped.
            None => {
                ctx.store.mark_restart(&ctx.connection_id, topic, now).map_err(sink_error)?;
                Ok(StartFrom::Earliest)
            }
        }
    }

    async fn replay_lost(&mut self, topic: &str, reason: &str) -> Result<StartFrom, SinkError> {
        let ctx = &self.context;
        tracing::warn!(connection = %ctx.connection_id, topic, "replay id lost: {reason}; resubscribing from EARLIEST");
        let now = chrono::Utc::now().timestamp_millis();
        let from = ctx.last_observed().map_err(sink_error)?.unwrap_or(ctx.monitor_from_ms);
        if topic == REPORT_TOPIC {
            self.recover(topic, from, now, reason).await?;
        } else {
            ctx.store
                .record_gap(&ctx.connection_id, topic, (Some(from), Some(now)), reason, false)
                .map_err(sink_error)?;
        }
        ctx.store.mark_restart(&ctx.connection_id, topic, now).map_err(sink_error)?;
        Ok(StartFrom::Earliest)
    }

    fn health(&mut self, topic: &str, health: StreamHealth) {
        self.context.health.write().unwrap_or_else(|e| e.into_inner()).insert(topic.to_owned(), health);
    }
}

impl TopicSink {
    /// Re-reads exports of [from, to] from the stored ReportEvent object (what is still
    /// retained also comes back from EARLIEST; duplicates are no-ops). A window that
    /// cannot be read is recorded as a gap, never skipped silently.
    async fn recover(&self, topic: &str, from: i64, to: i64, reason: &str) -> Result<(), SinkError> {
        let ctx = &self.context;
        // The stored object only holds what Event Manager stores: with storing off, a
        // query succeeds and returns nothing, which must not pass for a recovery.
        let storing = match ctx.api.realtime_event_settings().await {
            Ok(settings) => settings.iter().any(|e| e.entity_name == "ReportEvent" && e.enabled),
            Err(_) => true, // unknown: try, and let the query's own error speak
        };
        if !storing {
            let why = format!(
                "{reason}; exports in this window could not be recovered: storing of Report Event is off in Event Manager"
            );
            ctx.store.record_gap(&ctx.connection_id, topic, (Some(from), Some(to)), &why, false).map_err(sink_error)?;
            return Ok(());
        }
        match super::backfill_reports(ctx, Some(from), to).await {
            Ok(n) => tracing::info!(connection = %ctx.connection_id, "re-read {n} report events from ReportEvent"),
            Err(e) => {
                let why = format!("{reason}; exports in this window could not be recovered from ReportEvent: {e:#}");
                ctx.store
                    .record_gap(&ctx.connection_id, topic, (Some(from), Some(to)), &why, false)
                    .map_err(sink_error)?;
            }
        }
        Ok(())
    }
}

impl ConnectionContext {
    /// The newest stored export's time (where a gap would start).
    fn last_observed(&self) -> Result<Option<i64>, crate::store::StoreError> {
        let query = crate::search::SearchQuery {
            from_ms: 0,
            to_ms: i64::MAX,
            filter: crate::search::Filter::Term {
                field: crate::search::Field::ConnectionId,
                op: crate::search::Op::Is(self.connection_id.clone()),
            },
            sort: crate::search::Sort::default(),
            page_size: 1,
            after: None,
            after_seq: None,
        };
        Ok(self.store.search(&query)?.events.first().map(|e| e.observed_at))
    }
}
