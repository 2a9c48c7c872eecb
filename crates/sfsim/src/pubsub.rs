//! The Pub/Sub API (`eventbus.v1.PubSub`) over gRPC: metadata authentication on every
//! call, GetTopic, GetSchema, Publish, and Subscribe with pull flow control (at most
//! 100 pending), replay presets, keepalives, the idle close and documented error codes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sfwire::eventbus::v1::pub_sub_server::{PubSub, PubSubServer};
use sfwire::eventbus::v1::{
    ConsumerEvent, Error as PublishError, ErrorCode, FetchRequest, FetchResponse, ManagedFetchRequest,
    ManagedFetchResponse, ProducerEvent, PublishRequest, PublishResponse, PublishResult, ReplayPreset, SchemaInfo,
    SchemaRequest, TopicInfo, TopicRequest,
};
use sfwire::id::SfId;
use sfwire::pubsub as wire;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::bus::{ReplayError, Start, Topic, decode_replay, encode_replay};
use crate::clock::now_ms;
use crate::faults::Delivery;
use crate::rng::Rng;
use crate::sim::Sim;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Starts serving Pub/Sub on `listener`, with TLS when a (cert, key) PEM pair is given.
pub fn serve(sim: Arc<Sim>, listener: TcpListener, tls: Option<(String, String)>) {
    let service = PubSubServer::new(Service { sim }).max_decoding_message_size(4 * 1024 * 1024);
    let mut builder = Server::builder();
    if let Some((cert, key)) = tls {
        match builder.tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key))) {
            Ok(b) => builder = b,
            Err(e) => {
                tracing::error!("sfsim: TLS configuration failed: {e}");
                return;
            }
        }
    }
    // Pull flow control means a round trip per batch: Nagle's delay would cap a
    // stream at a few batches a second.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    });
    tokio::spawn(async move {
        if let Err(e) = builder.add_service(service).serve_with_incoming(incoming).await {
            tracing::error!("sfsim Pub/Sub server stopped: {e}");
        }
    });
}

struct Service {
    sim: Arc<Sim>,
}

fn rpc_id() -> String {
    Rng::new(now_ms() as u64 ^ (std::process::id() as u64) << 32 ^ rand_bits()).uuid()
}

fn rand_bits() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(0x9E37_79B9, Ordering::Relaxed)
}

/// A status carrying Salesforce's `error-code` trailer, its message ending in the rpcId.
fn status_with_code(code: Code, message: &str, error_code: Option<&str>, rpc_id: &str) -> Status {
    let mut metadata = MetadataMap::new();
    if let Some(ec) = error_code.and_then(|ec| ec.parse().ok()) {
        metadata.insert(wire::ERROR_CODE, ec);
    }
    Status::with_metadata(code, format!("{message} rpcId: {rpc_id}"), metadata)
}

fn auth_error(message: &str, rpc_id: &str) -> Status {
    status_with_code(Code::Unauthenticated, message, Some(wire::AUTH_ERROR), rpc_id)
}

impl Service {
    /// Checks `accesstoken`, `instanceurl` and `tenantid`, and the connected app's IP
    /// restrictions; returns the token.
    fn authenticate<T>(&self, request: &Request<T>, rpc_id: &str) -> Result<String, Status> {
        let metadata = request.metadata();
        if let Some(peer) = request.remote_addr()
            && !self.sim.org().app_ip_allowed(peer.ip())
        {
            return Err(auth_error("the session is not valid from this IP address", rpc_id));
        }
        let get = |key| metadata.get(key).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let token = get(wire::ACCESS_TOKEN).ok_or_else(|| auth_error("missing accesstoken header", rpc_id))?;
        let instance = get(wire::INSTANCE_URL).ok_or_else(|| auth_error("missing instanceurl header", rpc_id))?;
        let tenant = get(wire::TENANT_ID).ok_or_else(|| auth_error("missing tenantid header", rpc_id))?;
        let org_id = self.sim.org().id.clone();
        if SfId::parse(&tenant).ok().as_ref() != Some(&org_id) {
            return Err(auth_error("tenantid does not name this org", rpc_id));
        }
        if instance.trim_end_matches('/') != self.sim.base_url {
            return Err(auth_error("instanceurl is not this org's instance URL", rpc_id));
        }
        self.check_token(&token, rpc_id)?;
        Ok(token)
    }

    fn check_token(&self, token: &str, rpc_id: &str) -> Result<(), Status> {
        let org = self.sim.org();
        let now = now_ms();
        let valid = self.sim.sessions().validate(token, now, |u| org.user_can_sign_in(u));
        match valid {
            Ok(t) if org.user_can_use_api(&t.user, now) => Ok(()),
            Ok(_) => Err(auth_error("API is disabled for this User", rpc_id)),
            Err(_) => Err(auth_error("the session is expired or invalid", rpc_id)),
        }
    }

    fn topic(&self, name: &str, rpc_id: &str) -> Result<&Topic, Status> {
        self.sim.topic_by_name(name).ok_or_else(|| {
            status_with_code(
                Code::NotFound,
                &format!("topic {name:?} does not exist or is not accessible"),
                None,
                rpc_id,
            )
        })
    }
}

#[tonic::async_trait]
impl PubSub for Service {
    type SubscribeStream = BoxStream<FetchResponse>;
    type PublishStreamStream = BoxStream<PublishResponse>;
    type ManagedSubscribeStream = BoxStream<ManagedFetchResponse>;

    async fn get_topic(&self, request: Request<TopicRequest>) -> Result<Response<TopicInfo>, Status> {
        let rpc_id = rpc_id();
        self.authenticate(&request, &rpc_id)?;
        let topic = self.topic(&request.get_ref().topic_name, &rpc_id)?;
        let (tenant, can_subscribe) = {
            let org = self.sim.org();
            (org.id.to_string(), org.settings.licence)
        };
        Ok(Response::new(TopicInfo {
            topic_name: topic.name.to_owned(),
            tenant_guid: tenant,
            can_publish: false,
            can_subscribe,
            schema_id: topic.schema_id.clone(),
            rpc_id,
        }))
    }

    async fn get_schema(&self, request: Request<SchemaRequest>) -> Result<Response<SchemaInfo>, Status> {
        let rpc_id = rpc_id();
        self.authenticate(&request, &rpc_id)?;
        let id = &request.get_ref().schema_id;
        let topic = self
            .sim
            .topics
            .iter()
            .find(|t| &t.schema_id == id)
            .ok_or_else(|| status_with_code(Code::NotFound, &format!("schema {id:?} not found"), None, &rpc_id))?;
        Ok(Response::new(SchemaInfo {
            schema_json: topic.schema_json.clone(),
            schema_id: topic.schema_id.clone(),
            rpc_id,
        }))
    }

    async fn publish(&self, request: Request<PublishRequest>) -> Result<Response<PublishResponse>, Status> {
        let rpc_id = rpc_id();
        self.authenticate(&request, &rpc_id)?;
        let req = request.into_inner();
        let topic = self.topic(&req.topic_name, &rpc_id)?;
        // Real-Time Event Monitoring channels are published by Salesforce only.
        let results = req
            .events
            .iter()
            .map(|e: &ProducerEvent| PublishResult {
                replay_id: Vec::new(),
                error: Some(PublishError {
                    code: ErrorCode::Publish as i32,
                    msg: format!("{} is a standard event channel: clients cannot publish to it", topic.name),
                }),
                correlation_key: e.id.clone(),
            })
            .collect();
        Ok(Response::new(PublishResponse { results, schema_id: topic.schema_id.clone(), rpc_id }))
    }

    async fn publish_stream(
        &self,
        _request: Request<Streaming<PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        Err(Status::unimplemented("PublishStream is not available on Real-Time Event Monitoring channels"))
    }

    async fn managed_subscribe(
        &self,
        _request: Request<Streaming<ManagedFetchRequest>>,
    ) -> Result<Response<Self::ManagedSubscribeStream>, Status> {
        Err(Status::unimplemented("ManagedSubscribe is not emulated; use Subscribe"))
    }

    async fn subscribe(
        &self,
        request: Request<Streaming<FetchRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let rpc_id = rpc_id();
        let token = self.authenticate(&request, &rpc_id)?;
        let mut inbound = request.into_inner();
        // The first FetchRequest fixes topic and start before the response begins, so a
        // client whose Subscribe call returned is positioned (and bad requests fail the
        // call itself).
        let first = match tokio::time::timeout(self.sim.config.idle_timeout, inbound.message()).await {
            Ok(Ok(Some(first))) => first,
            Ok(Ok(None)) | Err(_) => {
                return Err(status_with_code(
                    Code::InvalidArgument,
                    "Subscribe needs a first FetchRequest",
                    None,
                    &rpc_id,
                ));
            }
            Ok(Err(status)) => return Err(status),
        };
        let opened = self.open(&first, &rpc_id)?;
        let topic = self.sim.topics[opened.topic].name;
        let Some(place) = self.sim.faults.open_subscription(topic) else {
            return Err(status_with_code(
                Code::ResourceExhausted,
                &format!("The maximum number of concurrent clients on {topic} has been exceeded"),
                Some(wire::CONCURRENT_CLIENT_LIMIT),
                &rpc_id,
            ));
        };
        if self.sim.faults.delivery_remaining() == Some(0) {
            return Err(allocation_spent(&rpc_id));
        }
        let (tx, rx) = mpsc::channel(8);
        let service = Service { sim: self.sim.clone() };
        tokio::spawn(async move {
            let _place = place;
            let outcome = service.run_subscription(token, inbound, opened, &tx, &rpc_id).await;
            if let Err(status) = outcome {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A validated start: the topic, the replay id to deliver after, what is pending.
struct Opened {
    topic: usize,
    cursor: u64,
    pending: i32,
}

type Sender = mpsc::Sender<Result<FetchResponse, Status>>;

impl Service {
    fn open(&self, first: &FetchRequest, rpc_id: &str) -> Result<Opened, Status> {
        let topic = self.topic(&first.topic_name, rpc_id)?;
        if !self.sim.org().settings.licence {
            return Err(status_with_code(
                Code::PermissionDenied,
                "Real-Time Event Monitoring is not licensed for this org: Salesforce Shield or the Event Monitoring add-on is required",
                None,
                rpc_id,
            ));
        }
        let start = match ReplayPreset::try_from(first.replay_preset) {
            Ok(ReplayPreset::Latest) => Start::Latest,
            Ok(ReplayPreset::Earliest) => Start::Earliest,
            Ok(ReplayPreset::Custom) => match decode_replay(&first.replay_id) {
                Some(r) => Start::After(r),
                None => return Err(replay_status(ReplayError::Corrupted, rpc_id)),
            },
            Err(_) => {
                return Err(status_with_code(Code::InvalidArgument, "unknown replay_preset", None, rpc_id));
            }
        };
        let cursor = topic.resolve_start(start).map_err(|e| replay_status(e, rpc_id))?;
        let pending = add_pending(0, first.num_requested, rpc_id)?;
        let index = self.sim.topics.iter().position(|t| t.name == topic.name).unwrap_or_default();
        Ok(Opened { topic: index, cursor, pending })
    }

    /// One Subscribe stream after its start: Ok(()) when it ends quietly (client
    /// closed, idle close), Err(status) to end it with an error.
    async fn run_subscription(
        &self,
        mut token: String,
        mut inbound: Streaming<FetchRequest>,
        opened: Opened,
        tx: &Sender,
        rpc_id: &str,
    ) -> Result<(), Status> {
        let config = &self.sim.config;
        let topic = &self.sim.topics[opened.topic];
        let (mut cursor, mut pending) = (opened.cursor, opened.pending);
        let mut latest = topic.subscribe_latest();
        let mut epoch = self.sim.stream_epoch.subscribe();
        epoch.borrow_and_update();
        let mut last_request = Instant::now();
        let mut keepalive_at = Instant::now() + config.keepalive;

        loop {
            self.check_token(&token, rpc_id)?;
            if pending > 0 {
                if topic.expired(cursor) {
                    return Err(replay_status(ReplayError::Corrupted, rpc_id));
                }
                latest.borrow_and_update();
                let mut batch = topic.read_after(cursor, pending as usize);
                let delivery = self.sim.faults.delivery();
                if !batch.is_empty() && delivery != Delivery::default() {
                    // Slow or bursty: what arrives meanwhile leaves with this batch.
                    tokio::time::sleep(delivery.wait(now_ms())).await;
                    batch = topic.read_after(cursor, pending as usize);
                }
                let granted = self.sim.faults.take_deliveries(batch.len());
                if granted == 0 && !batch.is_empty() {
                    return Err(allocation_spent(rpc_id));
                }
                batch.truncate(granted);
                if let Some(last) = batch.last() {
                    cursor = last.replay;
                    pending -= batch.len() as i32;
                    let response = FetchResponse {
                        events: batch
                            .iter()
                            .map(|e| ConsumerEvent {
                                event: Some(ProducerEvent {
                                    id: e.id.clone(),
                                    schema_id: topic.schema_id.clone(),
                                    payload: e.payload.to_vec(),
                                    headers: Vec::new(),
                                }),
                                replay_id: e.replay_id(),
                            })
                            .collect(),
                        latest_replay_id: encode_replay(cursor),
                        rpc_id: rpc_id.to_owned(),
                        pending_num_requested: pending,
                    };
                    if tx.send(Ok(response)).await.is_err() {
                        return Ok(());
                    }
                    keepalive_at = Instant::now() + config.keepalive;
                    continue;
                }
            }
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(request)) => {
                        if !request.topic_name.is_empty() && request.topic_name != topic.name {
                            return Err(status_with_code(
                                Code::InvalidArgument,
                                "a Subscribe stream serves one topic; open a new stream for another",
                                None,
                                rpc_id,
                            ));
                        }
                        if !request.auth_refresh.is_empty() {
                            token = request.auth_refresh;
                        }
                        pending = add_pending(pending, request.num_requested, rpc_id)?;
                        last_request = Instant::now();
                    }
                    Ok(None) | Err(_) => return Ok(()),
                },
                _ = latest.changed(), if pending > 0 => {}
                _ = sleep_until(keepalive_at) => {
                    let keepalive = FetchResponse {
                        events: Vec::new(),
                        latest_replay_id: encode_replay(cursor),
                        rpc_id: rpc_id.to_owned(),
                        pending_num_requested: pending,
                    };
                    if tx.send(Ok(keepalive)).await.is_err() {
                        return Ok(());
                    }
                    keepalive_at = Instant::now() + config.keepalive;
                }
                _ = sleep_until(last_request + config.idle_timeout), if pending == 0 => return Ok(()),
                _ = epoch.changed() => {
                    return Err(status_with_code(Code::Unavailable, "the stream was closed by the server", None, rpc_id));
                }
                _ = tokio::time::sleep(Duration::from_secs(5)) => {} // re-check the session
            }
        }
    }
}

/// The org's event-delivery allocation is used up.
fn allocation_spent(rpc_id: &str) -> Status {
    status_with_code(Code::ResourceExhausted, "Organization total events daily limit exceeded", None, rpc_id)
}

/// Adds a FetchRequest's `num_requested` to what is pending, capped at 100.
fn add_pending(pending: i32, requested: i32, rpc_id: &str) -> Result<i32, Status> {
    if requested < 0 {
        return Err(status_with_code(Code::InvalidArgument, "num_requested must not be negative", None, rpc_id));
    }
    Ok(pending.saturating_add(requested).min(wire::MAX_PENDING))
}

fn replay_status(e: ReplayError, rpc_id: &str) -> Status {
    match e {
        ReplayError::Corrupted => status_with_code(
            Code::InvalidArgument,
            "The replay ID is invalid or outside the retention window",
            Some(wire::REPLAY_ID_CORRUPTED),
            rpc_id,
        ),
        ReplayError::Invalid => status_with_code(
            Code::InvalidArgument,
            "The replay ID failed validation: it is newer than any event on this topic",
            Some(wire::REPLAY_ID_VALIDATION_FAILED),
            rpc_id,
        ),
    }
}
