//! A Pub/Sub API subscriber: authenticated calls, a schema cache by id, Avro decoding
//! with the schema GetSchema serves (straight into the event type the schema names,
//! resolved once per schema id; a general reader for other schemas), pull flow control, an idle timeout that knows
//! about keepalives, and a reconnecting loop that asks for more events only after the
//! sink has stored what it was given.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use serde_json::{Map, Value};
use sfwire::avro::{AvroRecord, RecordPlan};
use sfwire::eventbus::v1::pub_sub_client::PubSubClient;
use sfwire::eventbus::v1::{
    ConsumerEvent, FetchRequest, FetchResponse, ReplayPreset, SchemaRequest, TopicInfo, TopicRequest,
};
use sfwire::events::{LoginEventStream, LogoutEventStream, ReportEventStream};
use sfwire::pubsub as wire;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Code, Request, Status, Streaming};

use crate::api::SalesforceApi;

/// Salesforce's Pub/Sub endpoint.
pub const SALESFORCE_ENDPOINT: &str = "https://api.pubsub.salesforce.com:7443";

/// Where the Pub/Sub API is, and (for private endpoints such as sfsim) which CA to trust.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    pub ca_pem: Option<String>,
}

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
    /// After this replay id.
    After(Vec<u8>),
}

/// A received event. One that cannot be decoded is still delivered, with the reason,
/// so that the sink can keep it aside and the stream moves on (a payload that never
/// decodes must not stop every event behind it).
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    pub replay_id: Vec<u8>,
    /// The ProducerEvent id (EventUuid).
    pub id: String,
    pub schema_id: String,
    /// The Avro payload as received.
    pub payload: Vec<u8>,
    /// The payload decoded, or why it could not be.
    pub body: Result<EventBody, String>,
}

/// A decoded payload: the event type its schema names, or (for a type this client
/// does not know, or a schema it cannot resolve into the type) the record's fields as
/// JSON, datetimes as epoch milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    Report(ReportEventStream),
    Login(LoginEventStream),
    Logout(LogoutEventStream),
    Fields(Map<String, Value>),
}

impl EventBody {
    /// The record's fields by name (null fields left out).
    pub fn into_fields(self) -> Map<String, Value> {
        let value = match self {
            EventBody::Report(e) => serde_json::to_value(e),
            EventBody::Login(e) => serde_json::to_value(e),
            EventBody::Logout(e) => serde_json::to_value(e),
            EventBody::Fields(fields) => return fields,
        };
        match value {
            Ok(Value::Object(fields)) => fields,
            _ => Map::new(), // the event types serialise as objects
        }
    }
}

/// How the payloads of one schema are read.
enum Reader {
    Report(RecordPlan<ReportEventStream>),
    Login(RecordPlan<LoginEventStream>),
    Logout(RecordPlan<LogoutEventStream>),
    General(Schema),
}

impl Reader {
    /// The typed reader when the schema names a known type and resolves into it, else
    /// a general one.
    fn for_schema(id: &str, json: &str) -> Result<Reader, StreamError> {
        let general = || {
            Schema::parse_str(json).map(Reader::General).map_err(|e| StreamError::Decode(format!("schema {id}: {e}")))
        };
        let Ok(parsed) = serde_json::from_str::<Value>(json) else { return general() };
        let typed = match parsed.get("name").and_then(Value::as_str) {
            Some(ReportEventStream::NAME) => RecordPlan::new(&parsed).map(Reader::Report),
            Some(LoginEventStream::NAME) => RecordPlan::new(&parsed).map(Reader::Login),
            Some(LogoutEventStream::NAME) => RecordPlan::new(&parsed).map(Reader::Logout),
            _ => return general(),
        };
        typed.or_else(|e| {
            tracing::info!("schema {id} is read with the general Avro reader: {e}");
            general()
        })
    }
}

/// What a Subscribe stream delivered.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub events: Vec<ReceivedEvent>,
    /// The stream's position after these events (also sent alone as a keepalive).
    pub latest_replay_id: Vec<u8>,
}

/// Why a stream failed, by what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The token is missing, expired or revoked: refresh it and resubscribe.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The replay id is expired or invalid: start elsewhere, and recover the gap.
    #[error("the replay id can no longer be used: {0}")]
    ReplayLost(String),
    /// Not allowed (licence, permission): an admin must act.
    #[error("not permitted: {0}")]
    Denied(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// A limit of the org (concurrent clients, the event-delivery allocation): retry
    /// with backoff; an admin may need to act.
    #[error("a limit of the org is reached: {0}")]
    Limit(String),
    /// A payload did not decode with its schema.
    #[error("could not decode an event: {0}")]
    Decode(String),
    /// Network trouble, a closed or silent stream, server unavailable: retry later.
    #[error("{0}")]
    Transient(String),
}

fn classify(status: &Status) -> StreamError {
    let code = status.metadata().get(wire::ERROR_CODE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let message = format!("{} ({:?})", status.message(), status.code());
    if code == wire::REPLAY_ID_CORRUPTED || code == wire::REPLAY_ID_VALIDATION_FAILED || code.contains(".replayid.") {
        return StreamError::ReplayLost(message);
    }
    if code == wire::AUTH_ERROR || status.code() == Code::Unauthenticated {
        return StreamError::Auth(message);
    }
    match status.code() {
        Code::PermissionDenied => StreamError::Denied(message),
        Code::NotFound => StreamError::NotFound(message),
        Code::ResourceExhausted => StreamError::Limit(message),
        _ => StreamError::Transient(message),
    }
}

/// An authenticated Pub/Sub client for one connection.
pub struct PubSub {
    client: PubSubClient<Channel>,
    api: Arc<SalesforceApi>,
    schemas: Mutex<HashMap<String, Arc<Reader>>>,
}

impl PubSub {
    /// Opens the channel (lazily: the first call connects).
    pub fn new(endpoint: &Endpoint, api: Arc<SalesforceApi>) -> Result<PubSub, StreamError> {
        let mut builder = Channel::from_shared(endpoint.url.clone())
            .map_err(|e| StreamError::Denied(format!("bad Pub/Sub URL {:?}: {e}", endpoint.url)))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        if endpoint.url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_webpki_roots();
            if let Some(pem) = &endpoint.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            builder = builder.tls_config(tls).map_err(|e| StreamError::Denied(format!("TLS: {e}")))?;
        }
        let client = PubSubClient::new(builder.connect_lazy()).max_decoding_message_size(64 * 1024 * 1024);
        Ok(PubSub { client, api, schemas: Mutex::new(HashMap::new()) })
    }

    pub fn api(&self) -> &Arc<SalesforceApi> {
        &self.api
    }

    /// A request carrying `accesstoken`, `instanceurl` and `tenantid`.
    fn request<T>(&self, message: T) -> Result<Request<T>, StreamError> {
        let session = self.api.session();
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        for (key, value) in [
            (wire::ACCESS_TOKEN, &session.access_token),
            (wire::INSTANCE_URL, &session.instance_url),
            (wire::TENANT_ID, &session.org_id),
        ] {
            let value = MetadataValue::try_from(value.as_str())
                .map_err(|_| StreamError::Auth(format!("{key} is not ASCII")))?;
            metadata.insert(key, value);
        }
        Ok(request)
    }

    pub async fn topic(&self, name: &str) -> Result<TopicInfo, StreamError> {
        let request = self.request(TopicRequest { topic_name: name.into() })?;
        self.client.clone().get_topic(request).await.map(tonic::Response::into_inner).map_err(|s| classify(&s))
    }

    /// The reader for `schema_id`'s payloads, its schema fetched once and cached.
    async fn reader(&self, schema_id: &str) -> Result<Arc<Reader>, StreamError> {
        if let Some(reader) = self.schemas.lock().unwrap_or_else(|e| e.into_inner()).get(schema_id) {
            return Ok(reader.clone());
        }
        let request = self.request(SchemaRequest { schema_id: schema_id.into() })?;
        let info = self.client.clone().get_schema(request).await.map_err(|s| classify(&s))?.into_inner();
        let reader = Arc::new(Reader::for_schema(schema_id, &info.schema_json)?);
        self.schemas.lock().unwrap_or_else(|e| e.into_inner()).insert(schema_id.to_owned(), reader.clone());
        Ok(reader)
    }

    /// Decodes a response's events.
    async fn decode_all(&self, events: Vec<ConsumerEvent>) -> Result<Vec<ReceivedEvent>, StreamError> {
        let mut readers: HashMap<String, Arc<Reader>> = HashMap::new();
        for event in &events {
            let id = event.event.as_ref().map(|e| e.schema_id.as_str()).unwrap_or_default();
            if !readers.contains_key(id) {
                readers.insert(id.to_owned(), self.reader(id).await?);
            }
        }
        // A general reader per schema per batch (building one resolves the schema's
        // names, which costs more than decoding a datum).
        let general: HashMap<&str, Result<GenericDatumReader<'_>, String>> = readers
            .iter()
            .filter_map(|(id, reader)| match &**reader {
                Reader::General(schema) => Some((
                    id.as_str(),
                    GenericDatumReader::builder(schema).build().map_err(|e| format!("schema {id}: {e}")),
                )),
                _ => None,
            })
            .collect();
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let Some(producer) = event.event else {
                out.push(ReceivedEvent {
                    replay_id: event.replay_id,
                    id: String::new(),
                    schema_id: String::new(),
                    payload: Vec::new(),
                    body: Err("a ConsumerEvent without an event".into()),
                });
                continue;
            };
            let read = |e: sfwire::avro::ReadError| e.to_string();
            let payload = producer.payload.as_slice();
            let body = match readers.get(producer.schema_id.as_str()).map(|r| &**r) {
                Some(Reader::Report(plan)) => plan.read(payload).map(EventBody::Report).map_err(read),
                Some(Reader::Login(plan)) => plan.read(payload).map(EventBody::Login).map_err(read),
                Some(Reader::Logout(plan)) => plan.read(payload).map(EventBody::Logout).map_err(read),
                Some(Reader::General(schema)) => match &general[producer.schema_id.as_str()] {
                    Ok(reader) => decode_payload(schema, reader, payload).map(EventBody::Fields),
                    Err(e) => Err(e.clone()),
                },
                None => Err(format!("no schema {}", producer.schema_id)),
            };
            out.push(ReceivedEvent {
                replay_id: event.replay_id,
                id: producer.id,
                schema_id: producer.schema_id,
                payload: producer.payload,
                body,
            });
        }
        Ok(out)
    }

    /// Opens a Subscribe stream asking for `initial` events (at most 100 pending).
    pub async fn subscribe(
        &self,
        topic: &str,
        start: &StartFrom,
        initial: i32,
    ) -> Result<Subscription<'_>, StreamError> {
        let (preset, replay_id) = match start {
            StartFrom::Earliest => (ReplayPreset::Earliest, Vec::new()),
            StartFrom::Latest => (ReplayPreset::Latest, Vec::new()),
            StartFrom::After(id) => (ReplayPreset::Custom, id.clone()),
        };
        let (requests, rx) = mpsc::channel(8);
        let first = FetchRequest {
            topic_name: topic.into(),
            replay_preset: preset as i32,
            replay_id,
            num_requested: initial.clamp(1, wire::MAX_PENDING),
            auth_refresh: String::new(),
        };
        requests.send(first).await.map_err(|_| StreamError::Transient("request queue closed".into()))?;
        let request = self.request(ReceiverStream::new(rx))?;
        let responses = self.client.clone().subscribe(request).await.map_err(|s| classify(&s))?.into_inner();
        Ok(Subscription { pubsub: self, requests, responses })
    }
}

/// One payload as the fields of its record, or why it cannot be read: it must be
/// exactly one datum of the schema, and a record. (apache-avro reads a string or
/// boolean cut off by the end of the input as null; checking the value against the
/// schema catches that, so a truncated payload is refused, not read with nulls.)
fn decode_payload(
    schema: &Schema,
    reader: &GenericDatumReader<'_>,
    payload: &[u8],
) -> Result<Map<String, Value>, String> {
    let mut rest = payload;
    match reader.read_value(&mut rest) {
        Ok(_) if !rest.is_empty() => Err(format!("{} bytes after the record", rest.len())),
        Ok(value) if !value.validate(schema) => Err("the payload is cut short or does not match its schema".into()),
        Ok(value) => match avro_to_json(value) {
            Value::Object(fields) => Ok(fields),
            _ => Err("the payload is not a record".to_owned()),
        },
        Err(e) => Err(format!("the payload does not decode: {e}")),
    }
}

/// Converts a decoded Avro value to JSON (unions unwrapped).
pub(crate) fn avro_to_json(value: Avro) -> Value {
    match value {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => b.into(),
        Avro::Int(i) => i.into(),
        Avro::Long(l) | Avro::TimestampMillis(l) | Avro::TimestampMicros(l) => l.into(),
        Avro::Float(f) => f64::from(f).into(),
        Avro::Double(d) => serde_json::Number::from_f64(d).map_or(Value::Null, Value::Number),
        Avro::String(s) | Avro::Enum(_, s) => s.into(),
        Avro::Bytes(b) | Avro::Fixed(_, b) => b.iter().map(|x| format!("{x:02x}")).collect::<String>().into(),
        Avro::Union(_, inner) => avro_to_json(*inner),
        Avro::Array(items) => items.into_iter().map(avro_to_json).collect(),
        Avro::Map(map) => map.into_iter().map(|(k, v)| (k, avro_to_json(v))).collect::<Map<_, _>>().into(),
        Avro::Record(fields) => fields.into_iter().map(|(k, v)| (k, avro_to_json(v))).collect::<Map<_, _>>().into(),
        other => format!("{other:?}").into(),
    }
}

/// One open Subscribe stream.
pub struct Subscription<'a> {
    pubsub: &'a PubSub,
    requests: mpsc::Sender<FetchRequest>,
    responses: Streaming<FetchResponse>,
}

impl Subscription<'_> {
    /// The next response (events, or a keepalive with no events), undecoded. Silence
    /// longer than `idle` means a dead stream: Salesforce sends keepalives well within
    /// 270 s. Cancel-safe: dropped before it completes, it has taken nothing from the
    /// stream.
    async fn receive(&mut self, idle: Duration) -> Result<FetchResponse, StreamError> {
        match tokio::time::timeout(idle, self.responses.next()).await {
            Err(_) => Err(StreamError::Transient(format!("no message for {} s", idle.as_secs()))),
            Ok(None) => Err(StreamError::Transient("the server closed the stream".into())),
            Ok(Some(Err(status))) => Err(classify(&status)),
            Ok(Some(Ok(response))) => Ok(response),
        }
    }

    async fn decode(&self, response: FetchResponse) -> Result<Delivery, StreamError> {
        let events = self.pubsub.decode_all(response.events).await?;
        Ok(Delivery { events, latest_replay_id: response.latest_replay_id })
    }

    /// Asks for `n` more events.
    pub async fn request(&self, n: i32) -> Result<(), StreamError> {
        let request = FetchRequest { num_requested: n, ..Default::default() };
        self.requests.send(request).await.map_err(|_| StreamError::Transient("the stream is closed".into()))
    }
}

/// The subscriber's state, for the connection's health display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamHealth {
    Streaming,
    Retrying { error: StreamError, after: Duration },
}

/// A sink's own failure (e.g. its database): ends the subscriber.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// A sink storing deliveries: owns what it needs, so that the stream can receive,
/// decode and prepare the next events meanwhile.
pub type Storing = std::pin::Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'static>>;

/// Where delivered events go.
pub trait EventSink: Send {
    /// What a delivery's events become before they are stored.
    type Prepared: Send + 'static;
    /// Turns a delivery's events into what storing them writes. Runs as each delivery
    /// arrives, while the deliveries before it are being stored: it may read what is
    /// stored, never write.
    fn prepare(&mut self, topic: &str, events: Vec<ReceivedEvent>) -> Result<Self::Prepared, SinkError>;
    /// Stores prepared deliveries, in order, with `checkpoint` (the last one's
    /// `latest_replay_id`) as the new checkpoint, durably and in one step, when the
    /// returned future completes. The subscriber awaits each store before the next.
    fn store(&mut self, topic: &str, prepared: Vec<Self::Prepared>, checkpoint: Vec<u8>) -> Storing;
    /// Where to start or resume: normally after the stored checkpoint.
    fn start_point(&mut self, topic: &str) -> impl Future<Output = Result<StartFrom, SinkError>> + Send;
    /// The checkpoint cannot be used any more. The sink records the gap (and arranges
    /// recovery) and says where to start instead.
    fn replay_lost(&mut self, topic: &str, reason: &str) -> impl Future<Output = Result<StartFrom, SinkError>> + Send;
    fn health(&mut self, topic: &str, health: StreamHealth);
}

/// How the reconnecting loop behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Events requested at a time (≤ 100).
    pub batch: i32,
    /// Longest silence before the stream is treated as dead.
    pub idle_timeout: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Most received events waiting while the sink stores those before them.
    pub max_queued: usize,
    /// Notified when the cause of a failure is known to be fixed: a wait before the
    /// next attempt ends at once, and the backoff starts over.
    pub retry_now: Arc<tokio::sync::Notify>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            batch: wire::MAX_PENDING,
            idle_timeout: Duration::from_secs(300),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(60),
            max_queued: 10_000,
            retry_now: Arc::default(),
        }
    }
}

/// Why the loop stopped: only the sink failing ends it.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the sink failed: {0}")]
    Sink(#[from] SinkError),
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let fraction = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX);
    d.mul_f64(0.5 + fraction / 2.0)
}

/// Subscribes to `topic` until `shutdown` turns true, reconnecting as needed.
pub async fn run(
    pubsub: &PubSub,
    topic: &str,
    sink: &mut impl EventSink,
    options: &RunOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let mut backoff = options.min_backoff;
    // Where the sink said to go on after a lost replay id (asking it again would
    // recover the same window twice).
    let mut next: Option<StartFrom> = None;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let start = match next.take() {
            Some(start) => start,
            None => sink.start_point(topic).await?,
        };
        let outcome = stream_once(pubsub, topic, &start, sink, options, &mut shutdown, &mut backoff).await;
        let error = match outcome {
            Ok(()) => return Ok(()),
            Err(Failure::Run(e)) => return Err(e),
            Err(Failure::Stream(e)) => e,
        };
        match &error {
            StreamError::Auth(_) => {
                let stale = pubsub.api().session().access_token;
                if let Err(e) = pubsub.api().refresh_session(&stale).await {
                    // A refused refresh needs a person, but its cause can be temporary
                    // (a frozen service account): keep trying, slowly.
                    let wait = if e.needs_person() { options.max_backoff } else { jitter(backoff) };
                    sink.health(topic, StreamHealth::Retrying { error: StreamError::Auth(e.to_string()), after: wait });
                    backoff = wait_before_retry(wait, backoff, options, &mut shutdown).await;
                }
                continue;
            }
            StreamError::ReplayLost(reason) => {
                let reason = reason.clone();
                next = Some(sink.replay_lost(topic, &reason).await?);
                continue;
            }
            StreamError::Denied(_) | StreamError::NotFound(_) => backoff = options.max_backoff,
            StreamError::Limit(_) | StreamError::Decode(_) | StreamError::Transient(_) => {}
        }
        let wait = jitter(backoff);
        tracing::warn!(topic, "Pub/Sub stream: {error}; retrying in {:.1} s", wait.as_secs_f64());
        sink.health(topic, StreamHealth::Retrying { error, after: wait });
        backoff = wait_before_retry(wait, backoff, options, &mut shutdown).await;
    }
}

/// Waits `wait` (or less, when told to retry now or to shut down); returns the next
/// backoff: doubled, or back to the minimum after a retry-now.
async fn wait_before_retry(
    wait: Duration,
    backoff: Duration,
    options: &RunOptions,
    shutdown: &mut watch::Receiver<bool>,
) -> Duration {
    tokio::select! {
        _ = tokio::time::sleep(wait) => (backoff * 2).min(options.max_backoff),
        _ = options.retry_now.notified() => options.min_backoff,
        _ = shutdown.changed() => backoff,
    }
}

enum Failure {
    Stream(StreamError),
    Run(RunError),
}

/// One Subscribe stream, until it fails or `shutdown`. Events are requested again as
/// soon as they are received, while the sink stores those before them: deliveries
/// that arrive during a store are prepared and queued, and stored together in the next
/// one (their checkpoint, the last one's position, in the same transaction), so the
/// stream, decoding, preparing and storing overlap. At most `options.max_queued` events wait
/// (beyond that, requests are held back until the queue drains). If the process dies
/// with deliveries queued, nothing of them is stored and the checkpoint replays them;
/// if storing fails, the stream ends with them and starts again from the checkpoint.
async fn stream_once(
    pubsub: &PubSub,
    topic: &str,
    start: &StartFrom,
    sink: &mut impl EventSink,
    options: &RunOptions,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
) -> Result<(), Failure> {
    let mut subscription = pubsub.subscribe(topic, start, options.batch).await.map_err(Failure::Stream)?;
    sink.health(topic, StreamHealth::Streaming);
    let mut storing: Option<Storing> = None;
    let outcome = pipeline(&mut subscription, topic, sink, options, shutdown, backoff, &mut storing).await;
    // Whatever ended the stream, a store in progress finishes first: the next start
    // reads the checkpoint it writes.
    if let Some(in_progress) = storing {
        in_progress.await.map_err(|e| Failure::Run(e.into()))?;
    }
    outcome
}

async fn pipeline<S: EventSink>(
    subscription: &mut Subscription<'_>,
    topic: &str,
    sink: &mut S,
    options: &RunOptions,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
    storing: &mut Option<Storing>,
) -> Result<(), Failure> {
    let mut proven = false;
    // Prepared deliveries waiting for the store in progress, their events, and the
    // position after the last of them.
    let mut queued: Vec<S::Prepared> = Vec::new();
    let mut queued_events = 0;
    let mut position: Option<Vec<u8>> = None;
    // Events received but not requested again (the queue was full).
    let mut owed = 0;
    loop {
        if storing.is_none() {
            if let Some(checkpoint) = position.take() {
                *storing = Some(sink.store(topic, std::mem::take(&mut queued), checkpoint));
                queued_events = 0;
            }
            if owed > 0 {
                subscription.request(owed).await.map_err(Failure::Stream)?;
                owed = 0;
            }
        }
        tokio::select! {
            stored = async { storing.as_mut().expect("guarded").await }, if storing.is_some() => {
                *storing = None;
                stored.map_err(|e| Failure::Run(e.into()))?;
            }
            // Only the receiving is raced against the store (it is cancel-safe); the
            // decoding (which may fetch a schema) runs to its end below.
            response = subscription.receive(options.idle_timeout), if queued_events < options.max_queued => {
                let response = response.map_err(Failure::Stream)?;
                let received = response.events.len();
                queued_events += received;
                // Asked for again before decoding, so the server sends the next events
                // while these are decoded and prepared.
                if queued_events <= options.max_queued {
                    if received > 0 {
                        subscription.request(received as i32).await.map_err(Failure::Stream)?;
                    }
                } else {
                    owed += received as i32;
                }
                let delivery = subscription.decode(response).await.map_err(Failure::Stream)?;
                if !proven {
                    // Only a response proves the stream works: an error can follow the
                    // call's acceptance, and must not reset the backoff into a tight loop.
                    proven = true;
                    *backoff = options.min_backoff;
                }
                if received > 0 {
                    queued.push(sink.prepare(topic, delivery.events).map_err(|e| Failure::Run(e.into()))?);
                }
                position = Some(delivery.latest_replay_id);
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sfwire::events::{EventRecord, ReportEventStream};

    use super::*;

    fn config(default: u32) -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(default);
        ProptestConfig { cases, ..ProptestConfig::default() }
    }

    fn schema() -> Schema {
        Schema::parse_str(&ReportEventStream::schema_json()).expect("schema")
    }

    fn encoded(event: &ReportEventStream) -> Vec<u8> {
        let mut bytes = Vec::new();
        event.write_avro(&mut bytes);
        bytes
    }

    #[test]
    fn a_whole_datum_decodes_and_a_damaged_one_is_refused() {
        let schema = schema();
        let reader = GenericDatumReader::builder(&schema).build().expect("reader");
        let event = ReportEventStream { Name: Some("Pipeline".into()), RowsProcessed: Some(5.0), ..Default::default() };
        let bytes = encoded(&event);
        let fields = decode_payload(&schema, &reader, &bytes).expect("decodes");
        assert_eq!(fields["Name"], "Pipeline");
        // Cut inside the name. (apache-avro reads a union cut off at the end of the
        // input as null, so a cut between nullable fields goes unnoticed: the decoder
        // that replaces it for speed must refuse that too.)
        let name_at = bytes.windows(8).position(|w| w == b"Pipeline").expect("the name is in the datum");
        assert!(decode_payload(&schema, &reader, &bytes[..name_at + 3]).is_err(), "truncated");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_payload(&schema, &reader, &longer).expect_err("trailing").contains("after the record"));
    }

    proptest! {
        #![proptest_config(config(256))]

        /// Any bytes decode to a record or are refused with a reason; nothing panics.
        #[test]
        fn any_payload_decodes_or_is_refused(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let schema = schema();
            let reader = GenericDatumReader::builder(&schema).build().expect("reader");
            if let Err(reason) = decode_payload(&schema, &reader, &bytes) {
                prop_assert!(!reason.is_empty());
            }
        }

        /// A real event with a few bytes changed decodes or is refused; nothing panics.
        #[test]
        fn a_damaged_event_decodes_or_is_refused(
            name in ".{0,20}",
            rows in any::<f64>(),
            damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let schema = schema();
            let reader = GenericDatumReader::builder(&schema).build().expect("reader");
            let event = ReportEventStream { Name: Some(name), RowsProcessed: Some(rows), ..Default::default() };
            let mut bytes = encoded(&event);
            for (at, byte) in damage {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            let _ = decode_payload(&schema, &reader, &bytes);
        }
    }
}
