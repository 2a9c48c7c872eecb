//! The Pub/Sub API over gRPC against a running sfsim: payloads decoded with a general
//! Avro library from the schema GetSchema serves, flow control, replay, and faults.

mod common;

use std::time::Duration;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use serde_json::json;
use sfwire::eventbus::v1::pub_sub_client::PubSubClient;
use sfwire::eventbus::v1::{FetchRequest, FetchResponse, ReplayPreset, SchemaRequest, TopicRequest};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use common::{Org, config, start};

const REPORT: &str = "/event/ReportEventStream";

struct Subscription {
    requests: mpsc::Sender<FetchRequest>,
    responses: Streaming<FetchResponse>,
}

impl Subscription {
    async fn open(
        org: &Org,
        client: &mut PubSubClient<Channel>,
        token: &str,
        first: FetchRequest,
    ) -> Result<Subscription, Status> {
        let (requests, rx) = mpsc::channel(16);
        requests.send(first).await.expect("queue first request");
        let responses = client.subscribe(org.request(token, ReceiverStream::new(rx))).await?.into_inner();
        Ok(Subscription { requests, responses })
    }

    async fn request(&self, n: i32) {
        self.requests.send(FetchRequest { num_requested: n, ..Default::default() }).await.expect("send");
    }

    async fn next(&mut self) -> Result<FetchResponse, Status> {
        match tokio::time::timeout(Duration::from_secs(10), self.responses.next()).await {
            Ok(Some(r)) => r,
            Ok(None) => Err(Status::cancelled("stream ended")),
            Err(_) => Err(Status::deadline_exceeded("no response in 10 s")),
        }
    }

    /// Reads responses until `n` events arrived (ignoring keepalives).
    async fn events(&mut self, n: usize) -> Vec<sfwire::eventbus::v1::ConsumerEvent> {
        let mut out = Vec::new();
        while out.len() < n {
            out.extend(self.next().await.expect("response").events);
        }
        out
    }
}

/// A Subscribe that must fail: the status, from the call or from the stream.
async fn refused(org: &Org, client: &mut PubSubClient<Channel>, token: &str, first: FetchRequest) -> Status {
    match Subscription::open(org, client, token, first).await {
        Err(status) => status,
        Ok(mut sub) => sub.next().await.expect_err("the subscription fails"),
    }
}

fn fetch(preset: ReplayPreset, replay_id: Vec<u8>, n: i32) -> FetchRequest {
    FetchRequest {
        topic_name: REPORT.into(),
        replay_preset: preset as i32,
        replay_id,
        num_requested: n,
        ..Default::default()
    }
}

fn error_code(status: &Status) -> Option<String> {
    status.metadata().get("error-code").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn field<'a>(record: &'a Avro, name: &str) -> &'a Avro {
    let Avro::Record(fields) = record else { panic!("not a record") };
    let value = &fields.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no field {name}")).1;
    match value {
        Avro::Union(_, inner) => inner,
        other => other,
    }
}

async fn exporter_id(org: &Org) -> String {
    org.exporter().await["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn topic_schema_and_avro_payloads() {
    let org = start(config(60)).await;
    let token = org.authorize().await.access;
    let mut client = org.grpc().await;
    let topic = client
        .get_topic(org.request(&token, TopicRequest { topic_name: REPORT.into() }))
        .await
        .expect("topic")
        .into_inner();
    assert_eq!(topic.topic_name, REPORT);
    assert_eq!(topic.tenant_guid, org.org_id());
    assert!(topic.can_subscribe && !topic.can_publish);
    let schema_info = client
        .get_schema(org.request(&token, SchemaRequest { schema_id: topic.schema_id.clone() }))
        .await
        .expect("schema")
        .into_inner();
    let schema = Schema::parse_str(&schema_info.schema_json).expect("the served schema parses");

    let user = exporter_id(&org).await;
    let outcome = org.control(&format!("/users/{user}/export"), json!({"rows": 21_000, "file_format": "CSV"})).await;
    let mut sub = Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Earliest, vec![], 100))
        .await
        .expect("subscribe");
    let events = sub.events(3).await;
    let reader = GenericDatumReader::builder(&schema).build().expect("reader");
    let mut sequences = Vec::new();
    for e in &events {
        let producer = e.event.as_ref().expect("event");
        assert_eq!(producer.schema_id, topic.schema_id);
        let record = reader.read_value(&mut producer.payload.as_slice()).expect("payload decodes");
        assert_eq!(field(&record, "UserId"), &Avro::String(user.clone()));
        assert_eq!(field(&record, "Operation"), &Avro::String("ReportExported".into()));
        assert_eq!(field(&record, "RowsProcessed"), &Avro::Double(21_000.0));
        assert_eq!(field(&record, "ExportFileFormat"), &Avro::String("CSV".into()));
        assert_eq!(
            field(&record, "ExecutionIdentifier"),
            &Avro::String(outcome["execution_identifier"].as_str().expect("x").into())
        );
        let Avro::Int(seq) = field(&record, "Sequence") else { panic!("Sequence is an int") };
        sequences.push(*seq);
        assert!(matches!(field(&record, "EventDate"), Avro::Long(ms) if *ms > 1_700_000_000_000));
        assert_eq!(
            producer.id,
            match field(&record, "EventUuid") {
                Avro::String(s) => s.clone(),
                _ => panic!("uuid"),
            }
        );
    }
    assert_eq!(sequences, [1, 2, 3]);

    // Publishing to a standard channel is refused per event, not by failing the call.
    let publish = client
        .publish(org.request(
            &token,
            sfwire::eventbus::v1::PublishRequest {
                topic_name: REPORT.into(),
                events: vec![Default::default()],
                auth_refresh: String::new(),
            },
        ))
        .await
        .expect("publish")
        .into_inner();
    assert!(publish.results[0].error.is_some());
}

#[tokio::test]
async fn flow_control_and_replay() {
    let org = start(config(60)).await;
    let token = org.authorize().await.access;
    let mut client = org.grpc().await;
    let user = exporter_id(&org).await;
    for _ in 0..10 {
        org.control(&format!("/users/{user}/export"), json!({"rows": 10})).await;
    }
    // Ask for 3: exactly 3 arrive, and nothing more until we ask again.
    let mut sub = Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Earliest, vec![], 3))
        .await
        .expect("subscribe");
    let first = sub.next().await.expect("response");
    assert_eq!(first.events.len(), 3);
    assert_eq!(first.pending_num_requested, 0);
    assert_eq!(first.latest_replay_id, first.events[2].replay_id);
    let third = first.events[2].replay_id.clone();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.next()).await.is_err(),
        "nothing beyond what was requested"
    );
    sub.request(1000).await; // capped at 100 pending
    let rest = sub.events(7).await;
    assert_eq!(rest.len(), 7);
    let ids: Vec<u64> = first
        .events
        .iter()
        .chain(&rest)
        .map(|e| u64::from_be_bytes(e.replay_id[..].try_into().expect("8 bytes")))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "replay ids increase");

    // CUSTOM resumes right after a replay id; LATEST sees only what comes next.
    let mut custom =
        Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Custom, third, 100)).await.expect("custom");
    assert_eq!(custom.events(7).await[0].replay_id, rest[0].replay_id);
    let mut latest =
        Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Latest, vec![], 100)).await.expect("latest");
    assert!(tokio::time::timeout(Duration::from_millis(300), latest.next()).await.is_err());
    org.control(&format!("/users/{user}/export"), json!({"rows": 10})).await;
    assert_eq!(latest.events(1).await.len(), 1);

    // Another topic on the same stream is an INVALID_ARGUMENT.
    latest
        .requests
        .send(FetchRequest { topic_name: "/event/LoginEventStream".into(), num_requested: 1, ..Default::default() })
        .await
        .expect("send");
    let status = latest.next().await.expect_err("topic change");
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn bad_replay_ids_and_retention() {
    let org = start(config(60)).await;
    let token = org.authorize().await.access;
    let mut client = org.grpc().await;
    let user = exporter_id(&org).await;
    for _ in 0..2 {
        org.control(&format!("/users/{user}/export"), json!({"rows": 10})).await;
    }
    // The subscriber saw only the first of two events before both aged out.
    let mut sub = Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Earliest, vec![], 1))
        .await
        .expect("subscribe");
    let old = sub.events(1).await[0].replay_id.clone();

    let status = refused(&org, &mut client, &token, fetch(ReplayPreset::Custom, b"garbage".to_vec(), 1)).await;
    assert_eq!(error_code(&status).as_deref(), Some(sfwire::pubsub::REPLAY_ID_CORRUPTED), "{status:?}");
    assert!(status.message().contains("rpcId"));

    org.control("/retention", json!({"seconds": 1})).await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let status = refused(&org, &mut client, &token, fetch(ReplayPreset::Custom, old, 1)).await;
    assert_eq!(error_code(&status).as_deref(), Some(sfwire::pubsub::REPLAY_ID_CORRUPTED));
}

#[tokio::test]
async fn authentication_is_checked_on_every_call() {
    let org = start(config(60)).await;
    let token = org.authorize().await.access;
    let mut client = org.grpc().await;
    let status = client
        .get_topic(org.request("bogus", TopicRequest { topic_name: REPORT.into() }))
        .await
        .expect_err("bad token");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(error_code(&status).as_deref(), Some(sfwire::pubsub::AUTH_ERROR));
    let mut wrong_tenant = org.request(&token, TopicRequest { topic_name: REPORT.into() });
    wrong_tenant.metadata_mut().insert("tenantid", "00D000000000001AAA".parse().expect("ascii"));
    assert_eq!(client.get_topic(wrong_tenant).await.expect_err("tenant").code(), Code::Unauthenticated);
    let unknown = client.get_topic(org.request(&token, TopicRequest { topic_name: "/event/Nope".into() })).await;
    assert_eq!(unknown.expect_err("unknown topic").code(), Code::NotFound);
    let unknown_schema = client.get_schema(org.request(&token, SchemaRequest { schema_id: "nope".into() })).await;
    assert_eq!(unknown_schema.expect_err("schema").code(), Code::NotFound);

    // A revoked token ends an open stream with the auth error code.
    let mut sub =
        Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Latest, vec![], 10)).await.expect("open");
    org.control("/tokens/revoke", json!({})).await;
    let status = loop {
        match sub.next().await {
            Ok(_) => continue,
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(error_code(&status).as_deref(), Some(sfwire::pubsub::AUTH_ERROR));
}

#[tokio::test]
async fn event_manager_licence_and_dropped_streams() {
    let org = start(config(60)).await;
    let token = org.authorize().await.access;
    let mut client = org.grpc().await;
    let user = exporter_id(&org).await;
    let mut sub =
        Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Latest, vec![], 100)).await.expect("open");

    org.control("/event-settings", json!({"event": "ReportEventStream", "streaming": false})).await;
    org.control(&format!("/users/{user}/export"), json!({"rows": 10})).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.next()).await.is_err(),
        "streaming off: nothing published"
    );
    org.control("/event-settings", json!({"event": "ReportEventStream", "streaming": true})).await;
    let outcome = org.control(&format!("/users/{user}/export"), json!({"rows": 10})).await;
    assert_eq!(sub.events(1).await.len(), 1);
    assert_eq!(outcome["event_identifiers"].as_array().expect("ids").len(), 1);

    org.control("/streams/drop", json!({})).await;
    assert_eq!(sub.next().await.expect_err("dropped").code(), Code::Unavailable);

    org.control("/licence", json!({"enabled": false})).await;
    let denied = refused(&org, &mut client, &token, fetch(ReplayPreset::Latest, vec![], 1)).await;
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn keepalives_and_the_idle_close() {
    let mut cfg = config(40);
    cfg.keepalive = Duration::from_millis(300);
    cfg.idle_timeout = Duration::from_millis(1_500);
    let org = start(cfg).await;
    let token = org.authorize().await.access;
    let mut client = org.grpc().await;
    let mut sub =
        Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Latest, vec![], 5)).await.expect("open");
    let keepalive = sub.next().await.expect("keepalive");
    assert!(keepalive.events.is_empty());
    assert_eq!(keepalive.latest_replay_id.len(), 8);
    assert_eq!(keepalive.pending_num_requested, 5);

    // With nothing requested and no FetchRequest, the server closes the stream.
    let mut idle =
        Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Latest, vec![], 0)).await.expect("open");
    let started = std::time::Instant::now();
    loop {
        match idle.next().await {
            Ok(r) if r.events.is_empty() => continue,
            Ok(r) => panic!("unexpected events {r:?}"),
            Err(status) => {
                assert_eq!(status.code(), Code::Cancelled, "ended: {status:?}");
                break;
            }
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(1_400));
}

#[tokio::test]
async fn subscribes_over_tls() {
    let mut cfg = config(40);
    cfg.grpc_tls_addr = Some(([127, 0, 0, 1], 0).into());
    let org = start(cfg).await;
    let token = org.authorize().await.access;
    let pem =
        org.http.get(org.url("/control/v1/tls-certificate")).send().await.expect("pem").text().await.expect("pem");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pem))
        .domain_name("localhost");
    let addr = org.running.grpc_tls_addr.expect("tls listener");
    let channel = Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .expect("uri")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("TLS connects");
    let mut client = PubSubClient::new(channel);
    let user = exporter_id(&org).await;
    org.control(&format!("/users/{user}/export"), json!({"rows": 10})).await;
    let mut sub =
        Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Earliest, vec![], 10)).await.expect("open");
    assert_eq!(sub.events(1).await.len(), 1);
}

/// Sends raw bytes as a message, to test what the server does with bad protobuf.
#[derive(Clone, Default)]
struct RawCodec;
struct Raw;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = bytes::Buf::chunk(src).to_vec();
        bytes::Buf::advance(src, bytes.len());
        Ok(Some(bytes))
    }
}

#[tokio::test]
async fn malformed_protobuf_is_an_error_not_a_crash() {
    let org = start(config(40)).await;
    let token = org.authorize().await.access;
    let channel = Channel::from_shared(format!("http://{}", org.running.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut raw = tonic::client::Grpc::new(channel);
    for method in ["GetTopic", "GetSchema", "Publish"] {
        raw.ready().await.expect("ready");
        let path = format!("/eventbus.v1.PubSub/{method}").parse().expect("path");
        let garbage = vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x01];
        let status = raw.unary(org.request(&token, garbage), path, RawCodec).await.expect_err("garbage is refused");
        assert!(matches!(status.code(), Code::Internal | Code::InvalidArgument), "{method}: {status:?}");
    }
    // The server is unharmed.
    let mut client = org.grpc().await;
    assert!(client.get_topic(org.request(&token, TopicRequest { topic_name: REPORT.into() })).await.is_ok());
}

#[tokio::test]
async fn preloaded_events_are_retained_and_delivered() {
    let org = start(config(40)).await;
    let token = org.authorize().await.access;
    let mut client = org.grpc().await;
    let preload = org.control("/preload", json!({"count": 2500, "span_seconds": 600})).await;
    assert_eq!(preload["published"], 2500);
    let mut sub =
        Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Earliest, vec![], 100)).await.expect("open");
    let mut received = 0;
    while received < 2500 {
        let response = sub.next().await.expect("response");
        assert!(response.events.len() <= 100, "never more than requested");
        received += response.events.len();
        sub.request(response.events.len() as i32).await;
    }
    assert_eq!(received, 2500);
    assert!(tokio::time::timeout(Duration::from_millis(300), sub.next()).await.is_err(), "nothing more");
    let bad =
        org.http.post(org.url("/control/v1/preload")).json(&json!({"count": 100_000_000})).send().await.expect("call");
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn concurrent_clients_and_the_delivery_allocation_are_limited() {
    let org = start(config(40)).await;
    let token = org.authorize().await.access;
    let mut client = org.grpc().await;
    let user = exporter_id(&org).await;

    org.control("/streams/limits", json!({"max_subscriptions": 1})).await;
    let first =
        Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Latest, vec![], 100)).await.expect("open");
    let second = refused(&org, &mut client, &token, fetch(ReplayPreset::Latest, vec![], 1)).await;
    assert_eq!(second.code(), Code::ResourceExhausted);
    assert_eq!(error_code(&second).as_deref(), Some("sfdc.platform.eventbus.grpc.concurrent.client.limit.exceeded"));
    drop(first);
    let mut sub = None;
    for _ in 0..50 {
        // The place frees once the server sees the stream end.
        match Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Latest, vec![], 100)).await {
            Ok(s) => {
                sub = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let mut sub = sub.expect("a place after the first stream ended");
    org.control("/streams/limits", json!({"max_subscriptions": null})).await;

    // Two deliveries left: two events arrive, then the stream ends.
    org.control("/streams/allocation", json!({"remaining": 2})).await;
    for _ in 0..3 {
        org.control(&format!("/users/{user}/export"), json!({"rows": 10})).await;
    }
    assert_eq!(sub.events(2).await.len(), 2);
    let spent = sub.next().await.expect_err("allocation spent");
    assert_eq!(spent.code(), Code::ResourceExhausted);
    assert!(spent.message().contains("daily limit exceeded"), "{spent:?}");
    let limits: serde_json::Value = org.get(&token, "/services/data/v62.0/limits").await.json().await.expect("limits");
    assert_eq!(limits["DailyDeliveredPlatformEvents"]["Remaining"], 0);
    let refused_now = refused(&org, &mut client, &token, fetch(ReplayPreset::Latest, vec![], 1)).await;
    assert_eq!(refused_now.code(), Code::ResourceExhausted);
    org.control("/streams/allocation", json!({"remaining": null})).await;
}

#[tokio::test]
async fn slow_and_bursty_delivery_and_a_migration() {
    let org = start(config(40)).await;
    let token = org.authorize().await.access;
    let mut client = org.grpc().await;
    let user = exporter_id(&org).await;
    let mut sub =
        Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Latest, vec![], 100)).await.expect("open");

    org.control("/streams/delivery", json!({"delay_ms": 700})).await;
    let sent = std::time::Instant::now();
    org.control(&format!("/users/{user}/export"), json!({"rows": 10})).await;
    let first = sub.events(1).await;
    assert!(sent.elapsed() >= Duration::from_millis(650), "slow: {:?}", sent.elapsed());

    org.control("/streams/delivery", json!({"burst_ms": 3000})).await;
    for _ in 0..3 {
        org.control(&format!("/users/{user}/export"), json!({"rows": 10})).await;
    }
    let mut responses = 0;
    let mut events = 0;
    while events < 3 {
        let r = sub.next().await.expect("burst");
        if !r.events.is_empty() {
            responses += 1;
            events += r.events.len();
        }
    }
    assert!(responses <= 2, "three events in {responses} bursts");
    org.control("/streams/delivery", json!({})).await;

    // A migration: the open stream ends, old replay ids are refused, retained events
    // are kept (under new ids).
    org.control("/streams/migrate", json!({})).await;
    let reset = sub.next().await.expect_err("reset").code();
    assert!(matches!(reset, Code::Unavailable | Code::InvalidArgument), "{reset:?}");
    let old = first[0].replay_id.clone();
    let lost = refused(&org, &mut client, &token, fetch(ReplayPreset::Custom, old.clone(), 1)).await;
    assert_eq!(error_code(&lost).as_deref(), Some("sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"));
    let mut again =
        Subscription::open(&org, &mut client, &token, fetch(ReplayPreset::Earliest, vec![], 100)).await.expect("open");
    let kept = again.events(4).await;
    let id = |e: &sfwire::eventbus::v1::ConsumerEvent| e.event.as_ref().map(|p| p.id.clone());
    assert!(kept.iter().any(|e| id(e) == id(&first[0]) && e.replay_id != old), "kept under a new replay id");
}
