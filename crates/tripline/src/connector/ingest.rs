//! Turning deliveries into stored records: delivery → decode → attribute → one store
//! transaction (events and checkpoint) → the subscriber asks for more. Nothing on this
//! path waits on the network: attribution uses what the store and the scope scan
//! already hold.
//!
//! What if the process dies here? Before the commit: nothing of the delivery is
//! stored and the old checkpoint replays it. After: the new checkpoint skips it; and
//! should a replay come anyway, exports are found again by their file event's id and
//! logins by `seen_events`, so it changes nothing.

mod recovery;

pub(crate) use recovery::{recover, storing};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use base64::Engine;
use salesforce::api::SalesforceApi;
use salesforce::pubsub::{EventBody, EventSink, ReceivedEvent, SinkError, StartFrom, Storing, StreamHealth};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sfwire::events::{LoginEventStream, LogoutEventStream, ReportEventStream};
use sfwire::id::SfId;
use sfwire::pubsub::{LOGIN_TOPIC, LOGOUT_TOPIC, REPORT_TOPIC, is_export_operation};
use sha2::{Digest, Sha256};

use crate::connection::{QuarantinedEvent, ScopeMode};
use crate::events::{Attribution, Cidr, Evidence, FileEvent, ReportType, destination, predicted_file_name};
use crate::people::{LoginRecord, SalesforceUser, Session};
use crate::risk::{RiskInputs, RiskPolicy, assess};
use crate::store::{Checkpoint, ExportChunk, ReportBatch, ReportOutcome, Store, StoreError};

/// What every topic's sink of one connection shares.
pub struct ConnectionContext {
    pub connection_id: String,
    pub(crate) store: Arc<dyn Store>,
    pub api: Arc<SalesforceApi>,
    corporate: Vec<Cidr>,
    /// Risk settings and watch lists, as the admin last set them.
    risk: Arc<RiskPolicy>,
    /// Given the file events each commit stored.
    stored: Arc<super::Stored>,
    /// Who the connection monitors, as configured.
    pub(crate) mode: ScopeMode,
    /// Exports before this time (ms) predate the connection and are not recorded.
    pub(crate) monitor_from_ms: i64,
    /// Monitored users by 15-character id; `None` until a scan has succeeded (exports
    /// wait rather than being judged against a scope nobody has seen).
    scope: RwLock<Option<HashMap<String, SalesforceUser>>>,
    /// True once a scope is known.
    scope_ready: tokio::sync::watch::Sender<bool>,
    /// Users known to have stored exports (a cache for the "first export" indicator),
    /// by 15-character id.
    exporters: RwLock<HashSet<String>>,
    /// (user, source IP) pairs known to have stored exports (for "new source IP"),
    /// by 15-character user id.
    sources: RwLock<HashSet<(String, String)>>,
    /// What the subscribers last reported, by topic, and since when it has been so.
    health: RwLock<HashMap<String, (StreamHealth, Instant)>>,
    /// Told whenever a subscriber's report changes, so health is judged at once.
    pub(crate) changed: tokio::sync::Notify,
    /// Why the last scope scan failed, while it does.
    scan_problem: RwLock<Option<crate::connection::Problem>>,
    /// Set while the org does not answer the pulse (`connector::pulse`).
    silence: RwLock<Option<crate::connection::Problem>>,
    /// A recovery of the window since a restart is running.
    recovering: std::sync::atomic::AtomicBool,
}

impl ConnectionContext {
    pub(crate) fn new(
        connection_id: String,
        store: Arc<dyn Store>,
        api: Arc<SalesforceApi>,
        corporate: Vec<Cidr>,
        settings: &super::RunSettings,
        mode: ScopeMode,
        monitor_from_ms: i64,
    ) -> ConnectionContext {
        ConnectionContext {
            connection_id,
            store,
            api,
            corporate,
            risk: settings.risk.clone(),
            stored: settings.stored.clone(),
            mode,
            monitor_from_ms,
            scope: RwLock::default(),
            scope_ready: tokio::sync::watch::Sender::new(false),
            exporters: RwLock::default(),
            sources: RwLock::default(),
            health: RwLock::default(),
            changed: tokio::sync::Notify::new(),
            scan_problem: RwLock::default(),
            silence: RwLock::default(),
            recovering: Default::default(),
        }
    }

    pub(crate) fn set_scope(&self, users: Vec<SalesforceUser>) {
        let map = users.into_iter().map(|u| (u.user_id.short().to_owned(), u)).collect();
        *self.scope.write().unwrap_or_else(|e| e.into_inner()) = Some(map);
        self.scope_ready.send_replace(true);
    }

    /// Returns once the monitored users are known.
    pub(crate) async fn wait_for_scope(&self) {
        let _ = self.scope_ready.subscribe().wait_for(|known| *known).await;
    }

    /// Puts `problem` in `slot`; health is judged again when it changed.
    fn set_problem(
        &self,
        slot: &RwLock<Option<crate::connection::Problem>>,
        problem: Option<crate::connection::Problem>,
    ) {
        let mut current = slot.write().unwrap_or_else(|e| e.into_inner());
        if *current != problem {
            *current = problem;
            self.changed.notify_one();
        }
    }

    pub(crate) fn set_scan_problem(&self, problem: Option<crate::connection::Problem>) {
        self.set_problem(&self.scan_problem, problem);
    }

    pub(crate) fn scan_problem(&self) -> Option<crate::connection::Problem> {
        self.scan_problem.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_silence(&self, problem: Option<crate::connection::Problem>) {
        self.set_problem(&self.silence, problem);
    }

    pub(crate) fn silence(&self) -> Option<crate::connection::Problem> {
        self.silence.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The monitored users, if a scan has told them.
    pub(crate) fn scope_known(&self) -> bool {
        self.scope.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// The user, when monitored; `ScopeUnknown` before any scan has succeeded.
    fn in_scope(&self, user_id: &SfId) -> Result<Option<SalesforceUser>, IngestError> {
        let scope = self.scope.read().unwrap_or_else(|e| e.into_inner());
        Ok(scope.as_ref().ok_or(IngestError::ScopeUnknown)?.get(user_id.short()).cloned())
    }

    /// What each topic's subscriber last reported, and since when.
    pub fn stream_health(&self) -> Vec<(String, StreamHealth, Instant)> {
        let health = self.health.read().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<_> = health.iter().map(|(t, (h, since))| (t.clone(), h.clone(), *since)).collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }
}

/// Why a delivery cannot be applied now (nothing of it is stored; the checkpoint stays).
#[derive(Debug, thiserror::Error)]
pub(crate) enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Salesforce(salesforce::Error),
    /// No scope scan has succeeded yet: exports cannot be judged.
    #[error("the monitored users are not known yet (no scan of the org has succeeded): exports wait")]
    ScopeUnknown,
}

/// Why a received event cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("{field} {value:?} is not a date and time")]
    DateTime { field: &'static str, value: String },
    #[error("the event does not match its type: {0}")]
    Shape(#[from] serde_json::Error),
}

/// The datetime fields: epoch milliseconds from Pub/Sub's Avro, ISO 8601 text from REST.
const DATETIME_FIELDS: [&str; 2] = ["EventDate", "CreatedDate"];

/// An event's fields (from the stream, or a stored-object record from REST) as its
/// typed struct, decoded once; the fields stay as the raw evidence.
pub(crate) fn decode<E: DeserializeOwned>(fields: &mut Map<String, Value>) -> Result<E, DecodeError> {
    fields.remove("attributes"); // REST's record envelope
    for field in DATETIME_FIELDS {
        if let Some(Value::String(text)) = fields.get(field) {
            let ms = chrono::DateTime::parse_from_rfc3339(text)
                .or_else(|_| chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
                .map_err(|_| DecodeError::DateTime { field, value: text.clone() })?
                .timestamp_millis();
            fields.insert(field.to_owned(), ms.into());
        }
    }
    let value = Value::Object(std::mem::take(fields));
    let typed = E::deserialize(&value);
    if let Value::Object(map) = value {
        *fields = map;
    }
    Ok(typed?)
}

/// A record's fields (a REST record, or a payload of a schema only a general reader
/// could read) as the typed event, or kept aside.
pub(crate) fn from_fields<E: DeserializeOwned>(
    topic: &str,
    mut fields: Map<String, Value>,
) -> Result<E, QuarantinedEvent> {
    decode(&mut fields).map_err(|e| set_aside(topic, e.to_string(), serde_json::json!({ "fields": fields })))
}

/// The evidence of an event as read: its fields, nulls left out.
fn evidence<E: serde::Serialize>(event: &E) -> Value {
    serde_json::to_value(event).unwrap_or_default()
}

/// Something received that cannot be used, kept aside with the reason. Its key is a
/// digest of the topic and the evidence, so a replay of the same event adds nothing.
fn set_aside(topic: &str, reason: String, evidence: Value) -> QuarantinedEvent {
    tracing::warn!(topic, "an event cannot be read and is kept aside: {reason}");
    let digest = Sha256::digest(format!("{topic}\n{evidence}").as_bytes());
    QuarantinedEvent {
        topic: topic.to_owned(),
        key: hex::encode(&digest[..16]),
        received_at: chrono::Utc::now().timestamp_millis(),
        reason,
        evidence,
    }
}

/// A delivered event whose payload did not decode: its bytes are the evidence.
fn undecodable(topic: &str, event: &ReceivedEvent, reason: &str) -> QuarantinedEvent {
    let evidence = serde_json::json!({
        "schema_id": event.schema_id,
        "replay_id": hex::encode(&event.replay_id),
        "event_uuid": event.id,
        "payload_base64": base64::engine::general_purpose::STANDARD.encode(&event.payload),
    });
    set_aside(topic, format!("the payload cannot be decoded: {reason}"), evidence)
}

/// Text Salesforce sent, with empty text taken as absent.
fn given(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

fn user_id(text: Option<&str>) -> Option<SfId> {
    SfId::parse(text?).ok()
}

/// A file event's id: stable for the export, derived from Salesforce's identifiers
/// (the ExecutionIdentifier its chunks share, else its EventIdentifier).
fn file_event_id(connection_id: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("{connection_id}\n{key}").as_bytes());
    hex::encode(&digest[..16])
}

/// An event without its identifier or user, kept aside with its fields as evidence
/// (only such an event is turned back into fields).
fn unidentified<E: serde::Serialize>(topic: &str, event: &E) -> QuarantinedEvent {
    let reason = "an event without an EventIdentifier or a valid UserId".to_owned();
    set_aside(topic, reason, serde_json::json!({ "fields": evidence(event) }))
}

/// A login as a record, or kept aside when it lacks its identifier or user.
fn login_record(e: LoginEventStream) -> Result<LoginRecord, QuarantinedEvent> {
    let (Some(event_identifier), Some(user_id)) = (given(e.EventIdentifier.clone()), user_id(e.UserId.as_deref()))
    else {
        return Err(unidentified(LOGIN_TOPIC, &e));
    };
    let status = given(e.Status);
    Ok(LoginRecord {
        event_identifier,
        logout: false,
        success: status.as_deref() == Some("Success"),
        status,
        session: Session {
            session_key: given(e.SessionKey).unwrap_or_default(),
            login_key: given(e.LoginKey),
            user_id,
            username: given(e.Username),
            source_ip: given(e.SourceIp),
            browser: given(e.Browser),
            platform: given(e.Platform),
            city: given(e.City),
            country: given(e.Country),
            login_at: e.EventDate.unwrap_or(e.CreatedDate),
        },
    })
}

/// A logout as a record, or kept aside when it lacks its identifier or user.
fn logout_record(e: LogoutEventStream) -> Result<LoginRecord, QuarantinedEvent> {
    let (Some(event_identifier), Some(user_id)) = (given(e.EventIdentifier.clone()), user_id(e.UserId.as_deref()))
    else {
        return Err(unidentified(LOGOUT_TOPIC, &e));
    };
    Ok(LoginRecord {
        event_identifier,
        logout: true,
        success: true,
        status: None,
        session: Session {
            session_key: given(e.SessionKey).unwrap_or_default(),
            login_key: given(e.LoginKey),
            user_id,
            username: given(e.Username),
            source_ip: given(e.SourceIp),
            browser: None,
            platform: None,
            city: None,
            country: None,
            login_at: e.EventDate.unwrap_or(e.CreatedDate),
        },
    })
}

fn sink_error(e: impl std::error::Error) -> SinkError {
    SinkError(salesforce::error::error_chain(&e))
}

impl ConnectionContext {
    /// Hands the file events a commit of `batch` stored to alerting.
    pub(crate) fn hand_over(&self, batch: ReportBatch, outcome: &ReportOutcome) {
        if outcome.new_seqs.is_empty() {
            return;
        }
        // `new_seqs` follows the batch's order: one pass pairs each with its export.
        let mut new = outcome.new_seqs.iter().peekable();
        let events = batch.exports.into_iter().enumerate().filter_map(move |(index, chunk)| {
            let (_, seq) = new.next_if(|(at, _)| *at == index)?;
            Some(FileEvent { seq: *seq, ..chunk.file_event })
        });
        self.stored.committed(events);
    }

    /// Builds the report batch for some ReportEventStream events (from the stream or
    /// the stored ReportEvent object), attributing each export. An event that cannot
    /// be read (or lacks what identifies it) is kept aside in the batch, not skipped.
    pub(crate) fn report_batch(
        &self,
        events: Vec<Result<ReportEventStream, QuarantinedEvent>>,
    ) -> Result<ReportBatch, IngestError> {
        if !self.scope_known() {
            return Err(IngestError::ScopeUnknown);
        }
        let mut batch = ReportBatch::default();
        let policy = self.risk.current();
        // The login sessions the exports name, looked up together (one query, not one
        // per export: a round trip each on PostgreSQL).
        let keys: Vec<String> = events
            .iter()
            .filter_map(|e| e.as_ref().ok())
            .filter(|e| e.Operation.as_deref().is_some_and(is_export_operation))
            .filter_map(|e| given(e.SessionKey.clone()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let found = self.store.sessions(&self.connection_id, &keys)?;
        let mut sessions: HashMap<String, Option<Session>> =
            keys.into_iter().map(|k| (k.clone(), found.get(&k).cloned())).collect();
        for event in events {
            let event = match event {
                Ok(event) => event,
                Err(aside) => {
                    batch.quarantined.push(aside);
                    continue;
                }
            };
            let operation = given(event.Operation.clone());
            if operation.as_deref().is_some_and(|op| !is_export_operation(op)) {
                continue; // runs, previews and dashboard refreshes are not downloads
            }
            let (Some(operation), Some(event_identifier), Some(user_id)) =
                (operation, given(event.EventIdentifier.clone()), user_id(event.UserId.as_deref()))
            else {
                let reason = "a report event without an Operation, an EventIdentifier or a valid UserId".to_owned();
                batch.quarantined.push(set_aside(
                    REPORT_TOPIC,
                    reason,
                    serde_json::json!({ "fields": evidence(&event) }),
                ));
                continue;
            };
            let at = event.EventDate.unwrap_or(event.CreatedDate);
            if at < self.monitor_from_ms {
                continue;
            }
            let Some(user) = self.in_scope(&user_id)? else {
                batch.out_of_scope.push(event_identifier);
                continue;
            };
            let raw = Evidence::of(&event);
            let session_key = given(event.SessionKey);
            let session = match &session_key {
                // A person's exports in one batch share a session: looked up once.
                Some(key) => match sessions.get(key) {
                    Some(known) => known.clone(),
                    None => {
                        let found = self.store.session(&self.connection_id, key)?;
                        sessions.insert(key.clone(), found.clone());
                        found
                    }
                },
                None => None,
            };
            let session = session.filter(|s| s.user_id == user_id);
            // Without a login session, the user is who the scope scan's REST query says
            // holds this UserId.
            let attribution = if session.is_some() { Attribution::LoginSession } else { Attribution::UserLookup };
            let rows = event.RowsProcessed.unwrap_or_default() as i64;
            let source_ip = given(event.SourceIp).or_else(|| session.as_ref().and_then(|s| s.source_ip.clone()));
            let dest = destination(source_ip.as_deref(), &self.corporate);
            let first_export = !self.has_exported(&user.user_id)?;
            // A first export comes from a new address by definition: counted once.
            let new_source_ip = match &source_ip {
                Some(ip) => !self.has_exported_from(&user.user_id, ip)? && !first_export,
                None => false,
            };
            let risk = assess(
                &RiskInputs {
                    rows,
                    unmonitored: dest == crate::events::Destination::Unmonitored,
                    at_ms: at,
                    first_export_by_user: first_export,
                    new_source_ip,
                    queried_entities: event.QueriedEntities.as_deref(),
                    operation: &operation,
                    policy_outcome: event.PolicyOutcome.as_deref(),
                    watch: policy.watch(&user.username),
                },
                &policy.settings,
            );
            let report_name = given(event.Name);
            let export_format = given(event.ExportFileFormat);
            let execution_id = given(event.ExecutionIdentifier);
            let report_id = given(event.ReportId);
            let session = session.as_ref();
            let file_event = FileEvent {
                seq: 0,
                id: file_event_id(&self.connection_id, execution_id.as_deref().unwrap_or(&event_identifier)),
                connection_id: self.connection_id.clone(),
                observed_at: at,
                ingested_at: chrono::Utc::now().timestamp_millis(),
                attribution,
                user_id: user.user_id,
                username: Some(user.username),
                email: user.email,
                user_name: user.name,
                report_type: Some(ReportType::of(report_id.as_deref())),
                report_id,
                file_name: predicted_file_name(
                    report_name.as_deref().unwrap_or("report"),
                    export_format.as_deref(),
                    at,
                ),
                report_name,
                report_description: given(event.Description),
                report_format: given(event.Format),
                export_format,
                operation: Some(operation),
                rows,
                columns: given(event.ColumnHeaders),
                column_count: event.NumberOfColumns,
                queried_entities: given(event.QueriedEntities),
                execution_id,
                chunk_count: 1,
                source_ip,
                browser: session.and_then(|s| s.browser.clone()),
                platform: session.and_then(|s| s.platform.clone()),
                city: session.and_then(|s| s.city.clone()),
                country: session.and_then(|s| s.country.clone()),
                session_key,
                destination: dest,
                risk_score: risk.score,
                severity: risk.severity,
                indicators: risk.indicators,
                raw: vec![raw],
            };
            batch.exports.push(ExportChunk { event_identifier, file_event });
        }
        Ok(batch)
    }

    /// Whether the user has exported before (stored, or in a batch being built or
    /// committed: only the first export is the first, even while it is not committed).
    fn has_exported(&self, user_id: &SfId) -> Result<bool, StoreError> {
        if self.exporters.read().unwrap_or_else(|e| e.into_inner()).contains(user_id.short()) {
            return Ok(true);
        }
        let has = self.store.user_has_file_events(&self.connection_id, user_id)?;
        self.exporters.write().unwrap_or_else(|e| e.into_inner()).insert(user_id.short().to_owned());
        Ok(has)
    }

    /// Whether the user has exported from this address before (stored, or in a batch
    /// being built or committed).
    fn has_exported_from(&self, user_id: &SfId, ip: &str) -> Result<bool, StoreError> {
        let key = (user_id.short().to_owned(), ip.to_owned());
        if self.sources.read().unwrap_or_else(|e| e.into_inner()).contains(&key) {
            return Ok(true);
        }
        let has = self.store.user_has_exported_from(&self.connection_id, user_id, ip)?;
        self.sources.write().unwrap_or_else(|e| e.into_inner()).insert(key);
        Ok(has)
    }

    /// The newest stored export's time (where a gap would start).
    pub(crate) fn last_observed(&self) -> Result<Option<i64>, StoreError> {
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

/// Login or logout events of a delivery as records; those that cannot be read (or
/// lack their identifier or user) are kept aside.
fn login_records(topic: &str, events: Vec<EventBody>) -> (Vec<LoginRecord>, Vec<QuarantinedEvent>) {
    let mut records = Vec::new();
    let mut aside = Vec::new();
    for body in events {
        let record = match (topic, body) {
            (LOGIN_TOPIC, EventBody::Login(e)) => login_record(e),
            (LOGOUT_TOPIC, EventBody::Logout(e)) => logout_record(e),
            (LOGIN_TOPIC, EventBody::Fields(fields)) => from_fields(topic, fields).and_then(login_record),
            (LOGOUT_TOPIC, EventBody::Fields(fields)) => from_fields(topic, fields).and_then(logout_record),
            (_, other) => Err(misplaced(topic, other)),
        };
        match record {
            Ok(record) => records.push(record),
            Err(kept) => aside.push(kept),
        }
    }
    (records, aside)
}

/// The report events of a delivery, typed (or kept aside).
fn report_events(events: Vec<EventBody>) -> Vec<Result<ReportEventStream, QuarantinedEvent>> {
    let typed = |body| match body {
        EventBody::Report(e) => Ok(e),
        EventBody::Fields(fields) => from_fields(REPORT_TOPIC, fields),
        other => Err(misplaced(REPORT_TOPIC, other)),
    };
    events.into_iter().map(typed).collect()
}

/// An event of another type than its topic carries.
fn misplaced(topic: &str, body: EventBody) -> QuarantinedEvent {
    let reason = format!("an event of another type than {topic} carries");
    set_aside(topic, reason, serde_json::json!({ "fields": body.into_fields() }))
}

/// Re-reads [from, to] from ReportEvent in the background, one such recovery at a time
/// per connection (a scope not yet known is waited for).
fn recover_beside(ctx: Arc<ConnectionContext>, from: i64, to: i64) {
    if ctx.recovering.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    tokio::spawn(async move {
        let mut wait = std::time::Duration::from_millis(500);
        loop {
            match recover(&ctx, from, to, "restarted without a replay id").await {
                Err(IngestError::ScopeUnknown) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(30));
                }
                Err(e) => {
                    tracing::warn!("re-reading the window since the restart: {}", salesforce::error::error_chain(&e));
                    break;
                }
                Ok(_) => break,
            }
        }
        ctx.recovering.store(false, std::sync::atomic::Ordering::SeqCst);
    });
}

/// A delivery made ready to store: its records, attributed.
pub(crate) enum Prepared {
    Logins(Vec<LoginRecord>, Vec<QuarantinedEvent>),
    Reports(ReportBatch),
}

/// Turns a delivery into what its transaction writes (CPU work and reads of what is
/// committed; no writes).
fn prepare(ctx: &ConnectionContext, topic: &str, events: Vec<ReceivedEvent>) -> Result<Prepared, SinkError> {
    let mut readable = Vec::with_capacity(events.len());
    let mut aside = Vec::new();
    for event in events {
        match event.body {
            Ok(body) => readable.push(body),
            Err(ref reason) => aside.push(undecodable(topic, &event, reason)),
        }
    }
    match topic {
        LOGIN_TOPIC | LOGOUT_TOPIC => {
            let (records, mut quarantined) = login_records(topic, readable);
            quarantined.extend(aside);
            Ok(Prepared::Logins(records, quarantined))
        }
        REPORT_TOPIC => {
            let mut batch = ctx.report_batch(report_events(readable)).map_err(sink_error)?;
            batch.quarantined.extend(aside);
            Ok(Prepared::Reports(batch))
        }
        other => Err(SinkError(format!("no sink for topic {other}"))),
    }
}

/// Prepared deliveries of one topic as one (none: an empty one, for a checkpoint alone).
fn merged(topic: &str, prepared: Vec<Prepared>) -> Prepared {
    let mut all = if topic == REPORT_TOPIC {
        Prepared::Reports(ReportBatch::default())
    } else {
        Prepared::Logins(Vec::new(), Vec::new())
    };
    for one in prepared {
        match (&mut all, one) {
            (Prepared::Reports(all), Prepared::Reports(batch)) => {
                all.exports.extend(batch.exports);
                all.out_of_scope.extend(batch.out_of_scope);
                all.quarantined.extend(batch.quarantined);
            }
            (Prepared::Logins(records, aside), Prepared::Logins(more, more_aside)) => {
                records.extend(more);
                aside.extend(more_aside);
            }
            _ => {} // one sink serves one topic: `prepare` made them all alike
        }
    }
    all
}

/// Stores a prepared group of deliveries and the checkpoint after it in one
/// transaction; for reports, what it stored.
fn store(
    ctx: &ConnectionContext,
    topic: &str,
    prepared: &Prepared,
    checkpoint: &[u8],
) -> Result<Option<ReportOutcome>, SinkError> {
    let id = &ctx.connection_id;
    match prepared {
        Prepared::Logins(records, aside) => ctx.store.apply_logins(id, topic, records, aside, checkpoint).map(|_| None),
        Prepared::Reports(batch) => ctx.store.apply_reports(id, topic, batch, Some(checkpoint)).map(Some),
    }
    .map_err(sink_error)
}

/// The sink for one topic of one connection.
pub(crate) struct TopicSink {
    pub(crate) context: Arc<ConnectionContext>,
}

impl EventSink for TopicSink {
    type Prepared = Prepared;

    /// Attribution runs as each delivery arrives, beside the store in progress (it only
    /// reads what is committed).
    fn prepare(&mut self, topic: &str, events: Vec<ReceivedEvent>) -> Result<Prepared, SinkError> {
        prepare(&self.context, topic, events)
    }

    /// The commit is blocking database work: off the runtime's threads.
    fn store(&mut self, topic: &str, prepared: Vec<Prepared>, checkpoint: Vec<u8>) -> Storing {
        let ctx = self.context.clone();
        let topic = topic.to_owned();
        Box::pin(async move {
            let prepared = merged(&topic, prepared);
            let committing = ctx.clone();
            let stored =
                tokio::task::spawn_blocking(move || (store(&committing, &topic, &prepared, &checkpoint), prepared));
            // The records are handed on and dropped here, not on the thread that commits.
            let (stored, prepared) = stored.await.map_err(|e| SinkError(format!("storing deliveries: {e}")))?;
            if let (Some(outcome), Prepared::Reports(batch)) = (stored?, prepared) {
                ctx.hand_over(batch, &outcome);
            }
            Ok(())
        })
    }

    async fn start_point(&mut self, topic: &str) -> Result<StartFrom, SinkError> {
        let ctx = &self.context;
        let now = chrono::Utc::now().timestamp_millis();
        match ctx.store.checkpoint(&ctx.connection_id, topic).map_err(sink_error)? {
            Some(Checkpoint::At(replay)) => Ok(StartFrom::After(replay)),
            // Restarted before without a replay id: EARLIEST gives back what the stream
            // still retains; what it may no longer hold since the mark is re-read from
            // ReportEvent beside the stream, never in front of it (a long window must
            // not hold the stream up). The mark stays until the first delivery commits a
            // replay id; a window that cannot be re-read is recorded as a gap.
            Some(Checkpoint::RestartedAt(since)) => {
                if topic == REPORT_TOPIC {
                    recover_beside(ctx.clone(), since, now);
                }
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
        tracing::warn!(topic, "replay id lost: {reason}; resubscribing from EARLIEST");
        let now = chrono::Utc::now().timestamp_millis();
        let from = ctx.last_observed().map_err(sink_error)?.unwrap_or(ctx.monitor_from_ms);
        if topic == REPORT_TOPIC {
            recover(ctx, from, now, reason).await.map_err(sink_error)?;
        } else {
            ctx.store.record_gap(&ctx.connection_id, topic, from, Some(now), reason, false).map_err(sink_error)?;
        }
        ctx.store.mark_restart(&ctx.connection_id, topic, now).map_err(sink_error)?;
        Ok(StartFrom::Earliest)
    }

    fn health(&mut self, topic: &str, health: StreamHealth) {
        let mut map = self.context.health.write().unwrap_or_else(|e| e.into_inner());
        // A failure keeps the time it began; any change of kind starts a new one.
        let since = match (map.get(topic), &health) {
            (Some((StreamHealth::Retrying { .. }, since)), StreamHealth::Retrying { .. }) => *since,
            _ => Instant::now(),
        };
        let changed = map
            .get(topic)
            .is_none_or(|(previous, _)| std::mem::discriminant(previous) != std::mem::discriminant(&health));
        map.insert(topic.to_owned(), (health, since));
        drop(map);
        if changed {
            self.context.changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_stream_and_rest_shapes_into_the_typed_event() {
        let mut avro = serde_json::json!({"EventDate": 1_764_000_000_123_i64, "RowsProcessed": 12.0, "Sequence": 2})
            .as_object()
            .cloned()
            .expect("object");
        let e: ReportEventStream = decode(&mut avro).expect("typed");
        assert_eq!((e.EventDate, e.RowsProcessed, e.Sequence), (Some(1_764_000_000_123), Some(12.0), Some(2)));
        assert_eq!(avro.len(), 3, "the fields stay for the evidence");

        let mut rest =
            serde_json::json!({"attributes": {"type": "ReportEvent"}, "EventDate": "2025-11-24T16:00:00.123+0000"})
                .as_object()
                .cloned()
                .expect("object");
        let e: ReportEventStream = decode(&mut rest).expect("typed");
        assert_eq!(e.EventDate, Some(1_764_000_000_123));
        assert!(!rest.contains_key("attributes"));

        let mut bad = serde_json::json!({"EventDate": "yesterday"}).as_object().cloned().expect("object");
        assert!(matches!(decode::<ReportEventStream>(&mut bad), Err(DecodeError::DateTime { .. })));
    }
}
