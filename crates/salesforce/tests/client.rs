//! Tripline's Salesforce client against sfsim over real sockets: OAuth, REST paging,
//! token refresh, limits, the Metadata API, and the reconnecting Pub/Sub subscriber.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use salesforce::api::SalesforceApi;
use salesforce::login::LoginHost;
use salesforce::oauth::{MONITORING_SCOPE, OAuthClient};
use salesforce::pubsub::{
    Endpoint, EventSink, PubSub, ReceivedEvent, RunOptions, SinkError, StartFrom, Storing, StreamHealth, run,
};
use serde_json::{Value, json};

const CALLBACK: &str = "http://127.0.0.1:9/callback";

struct Org {
    running: sfsim::Running,
    http: reqwest::Client,
    oauth: OAuthClient,
}

impl Org {
    async fn start(users: usize) -> Org {
        let config = sfsim::Config { users, callback_urls: vec![CALLBACK.into()], ..sfsim::Config::default() };
        let running = sfsim::start(config).await.expect("sfsim");
        let http = reqwest::Client::new();
        let (id, secret) = running.connected_app();
        let login = LoginHost::parse(running.base_url(), &[running.base_url().to_owned()]).expect("allowed");
        let oauth = OAuthClient::new(login, &id, &secret, CALLBACK, http.clone());
        Org { running, http, oauth }
    }

    fn allowed(&self) -> Vec<String> {
        vec![self.running.base_url().to_owned()]
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        self.running.control().post(path, &body).await.expect("control")
    }

    async fn connect(&self) -> Arc<SalesforceApi> {
        let start = self.oauth.start(MONITORING_SCOPE);
        let (user, password) = self.running.service_account();
        let back = sfsim::browser::sign_in_and_allow(&start.url, &user, &password).await.expect("sign in");
        let wrong = self.oauth.finish(&start, "not-the-state", &back.code).await;
        assert!(wrong.expect_err("state mismatch").needs_person());
        let state = back.state.expect("state");
        let tokens = self.oauth.finish(&start, &state, &back.code).await.expect("tokens");
        assert!(self.oauth.signature_valid(&tokens));
        Arc::new(SalesforceApi::new(self.oauth.clone(), &tokens, self.allowed(), self.http.clone()).expect("api"))
    }

    async fn exporter(&self) -> String {
        let users = self.running.control().get("/users").await.expect("users");
        let service = self.running.sim.org().service_user.to_string();
        users
            .as_array()
            .expect("list")
            .iter()
            .find(|u| {
                u["can_export_reports"] == true
                    && u["active"] == true
                    && u["frozen"] == false
                    && u["id"] != service.as_str()
            })
            .and_then(|u| u["id"].as_str())
            .expect("an exporter")
            .to_owned()
    }
}

#[tokio::test]
async fn rest_paging_refresh_and_limits() {
    let org = Org::start(1800).await;
    let api = org.connect().await;
    let assignments = api.query("SELECT Id, AssigneeId FROM PermissionSetAssignment").await.expect("query");
    assert!(assignments.len() > 2000, "more than one page: {}", assignments.len());
    let mut ids: Vec<&str> = assignments.iter().filter_map(|r| r["Id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), assignments.len(), "every record once");

    // An expired session is refreshed once, transparently, keeping one token in use.
    let before = api.session().access_token;
    org.control("/sessions/expire", json!({})).await;
    let quoted = sfwire::soql::quote("O'Brien");
    let found = api.query(&format!("SELECT Id FROM User WHERE LastName = {quoted}")).await.expect("after refresh");
    assert!(found.iter().all(|r| r["Id"].as_str().is_some()));
    assert_ne!(api.session().access_token, before);

    org.control("/api-limit", json!({"remaining": 0})).await;
    let limited = api.query("SELECT Id FROM Organization").await.expect_err("limited");
    assert!(matches!(limited, salesforce::Error::ApiLimit(_)), "{limited}");
    org.control("/api-limit", json!({"remaining": 100})).await;

    let bad = api.query("SELECT Nope FROM User").await.expect_err("bad field");
    assert_eq!(bad.code(), Some("INVALID_FIELD"));

    // Revoked refresh token: a person must authorize again.
    org.control("/tokens/revoke", json!({})).await;
    let revoked = api.query("SELECT Id FROM Organization").await.expect_err("revoked");
    assert!(revoked.needs_person(), "{revoked}");
}

#[tokio::test]
async fn event_manager_settings() {
    let org = Org::start(30).await;
    let api = org.connect().await;
    let settings = api.realtime_event_settings().await.expect("settings");
    let enabled =
        |name: &str, s: &[salesforce::api::RealTimeEvent]| s.iter().find(|e| e.entity_name == name).map(|e| e.enabled);
    assert_eq!(enabled("ReportEventStream", &settings), Some(true));
    org.control("/event-settings", json!({"event": "Report", "streaming": false, "storing": false})).await;
    let settings = api.realtime_event_settings().await.expect("settings");
    assert_eq!(enabled("ReportEventStream", &settings), Some(false));
    assert_eq!(enabled("ReportEvent", &settings), Some(false));
    assert_eq!(enabled("LoginEventStream", &settings), Some(true));
    // Works across a session expiry too.
    org.control("/sessions/expire", json!({})).await;
    assert!(api.realtime_event_settings().await.is_ok());
}

/// A sink that keeps everything in memory, checkpointing each delivery.
#[derive(Default)]
struct Memory {
    events: Vec<serde_json::Map<String, Value>>,
    checkpoint: Option<Vec<u8>>,
    lost: Vec<String>,
    health: Vec<StreamHealth>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Memory>>);

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&mut Memory) -> T) -> T {
        f(&mut self.0.lock().expect("lock"))
    }
}

impl EventSink for Shared {
    type Prepared = Vec<ReceivedEvent>;
    fn prepare(&mut self, _topic: &str, events: Vec<ReceivedEvent>) -> Result<Self::Prepared, SinkError> {
        Ok(events)
    }
    fn store(&mut self, _topic: &str, prepared: Vec<Self::Prepared>, checkpoint: Vec<u8>) -> Storing {
        self.with(|m| {
            m.events.extend(prepared.into_iter().flatten().map(|e| e.body.expect("decodes").into_fields()));
            m.checkpoint = Some(checkpoint);
        });
        Box::pin(async { Ok(()) })
    }
    async fn start_point(&mut self, _topic: &str) -> Result<StartFrom, SinkError> {
        Ok(self.with(|m| m.checkpoint.clone().map_or(StartFrom::Earliest, StartFrom::After)))
    }
    async fn replay_lost(&mut self, _topic: &str, reason: &str) -> Result<StartFrom, SinkError> {
        self.with(|m| {
            m.lost.push(reason.to_owned());
            m.checkpoint = None;
        });
        Ok(StartFrom::Earliest)
    }
    fn health(&mut self, _topic: &str, health: StreamHealth) {
        self.with(|m| m.health.push(health));
    }
}

/// Runs the reconnecting subscriber on `topic` into `sink`, with short backoffs.
fn spawn_run(
    pubsub: &Arc<PubSub>,
    sink: &Shared,
    topic: &'static str,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<Result<(), salesforce::pubsub::RunError>>) {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let options = RunOptions {
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..RunOptions::default()
    };
    let (pubsub, mut sink) = (pubsub.clone(), sink.clone());
    (stop, tokio::spawn(async move { run(&pubsub, topic, &mut sink, &options, shutdown).await }))
}

async fn wait_for(sink: &Shared, what: &str, check: impl Fn(&Memory) -> bool) {
    for _ in 0..200 {
        if sink.with(|m| check(m)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn subscriber_survives_drops_expiry_and_lost_replay_ids() {
    let org = Org::start(60).await;
    let api = org.connect().await;
    let endpoint = Endpoint { url: format!("http://{}", org.running.grpc_addr), ca_pem: None };
    let pubsub = Arc::new(PubSub::new(&endpoint, api).expect("client"));
    let sink = Shared::default();
    let (stop, task) = spawn_run(&pubsub, &sink, sfwire::pubsub::REPORT_TOPIC);
    let user = org.exporter().await;
    let path = format!("/users/{user}/export");
    let export = |rows: u64| org.control(&path, json!({ "rows": rows }));
    export(12_000).await;
    wait_for(&sink, "two chunks", |m| m.events.len() == 2).await;
    let first = sink.with(|m| m.events[0].clone());
    assert_eq!(first["UserId"], user.as_str());
    assert_eq!(first["RowsProcessed"], 12_000.0);
    assert!(first["EventDate"].as_i64().is_some());

    // Dropped streams reconnect from the checkpoint: nothing twice, nothing lost.
    org.control("/streams/drop", json!({})).await;
    export(10).await;
    wait_for(&sink, "the third event", |m| m.events.len() == 3).await;
    // Expired session: refreshed, resubscribed.
    org.control("/sessions/expire", json!({})).await;
    org.control("/streams/drop", json!({})).await;
    export(10).await;
    wait_for(&sink, "the fourth event", |m| m.events.len() == 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids: Vec<String> =
        sink.with(|m| m.events.iter().map(|e| e["EventIdentifier"].as_str().unwrap_or_default().to_owned()).collect());
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no event twice");

    // The checkpoint ages out while disconnected: the sink hears of it and restarts.
    stop.send(true).expect("stop");
    task.await.expect("join").expect("clean stop");
    export(10).await;
    export(10).await;
    org.control("/retention", json!({"seconds": 1})).await;
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let (stop, task) = spawn_run(&pubsub, &sink, sfwire::pubsub::REPORT_TOPIC);
    wait_for(&sink, "the lost replay id reported", |m| !m.lost.is_empty()).await;
    assert!(sink.with(|m| m.health.iter().any(|h| matches!(h, StreamHealth::Streaming))));
    stop.send(true).expect("stop");
    task.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn licence_off_is_reported_and_recovers() {
    let org = Org::start(30).await;
    let api = org.connect().await;
    let endpoint = Endpoint { url: format!("http://{}", org.running.grpc_addr), ca_pem: None };
    let pubsub = Arc::new(PubSub::new(&endpoint, api).expect("client"));
    org.control("/licence", json!({"enabled": false})).await;
    let sink = Shared::default();
    let (stop, task) = spawn_run(&pubsub, &sink, sfwire::pubsub::LOGIN_TOPIC);
    wait_for(&sink, "a denial", |m| {
        m.health
            .iter()
            .any(|h| matches!(h, StreamHealth::Retrying { error: salesforce::pubsub::StreamError::Denied(_), .. }))
    })
    .await;
    org.control("/licence", json!({"enabled": true})).await;
    let user = org.exporter().await;
    org.control(&format!("/users/{user}/logout"), json!({})).await;
    org.control(&format!("/users/{user}/login"), json!({})).await;
    wait_for(&sink, "the login event", |m| m.events.iter().any(|e| e["UserId"] == user.as_str())).await;
    stop.send(true).expect("stop");
    task.await.expect("join").expect("clean stop");
}

/// A sink that stores each delivery after a pause (as a database commit takes time),
/// and fails once, on its third store.
#[derive(Clone, Default)]
struct Slow(Arc<Mutex<SlowState>>);

#[derive(Default)]
struct SlowState {
    ids: Vec<String>,
    checkpoint: Option<Vec<u8>>,
    stores: usize,
    largest: usize,
}

impl EventSink for Slow {
    type Prepared = Vec<String>;
    fn prepare(&mut self, _topic: &str, events: Vec<ReceivedEvent>) -> Result<Self::Prepared, SinkError> {
        Ok(events.into_iter().map(|e| e.id).collect())
    }
    fn store(&mut self, _topic: &str, prepared: Vec<Self::Prepared>, checkpoint: Vec<u8>) -> Storing {
        let state = self.0.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let mut s = state.lock().expect("lock");
            s.stores += 1;
            if s.stores == 3 {
                return Err(SinkError("the disk is full".into()));
            }
            let ids: Vec<String> = prepared.into_iter().flatten().collect();
            s.largest = s.largest.max(ids.len());
            s.ids.extend(ids);
            s.checkpoint = Some(checkpoint);
            Ok(())
        })
    }
    async fn start_point(&mut self, _topic: &str) -> Result<StartFrom, SinkError> {
        Ok(self.0.lock().expect("lock").checkpoint.clone().map_or(StartFrom::Earliest, StartFrom::After))
    }
    async fn replay_lost(&mut self, _topic: &str, reason: &str) -> Result<StartFrom, SinkError> {
        Err(SinkError(format!("no replay id may be lost here: {reason}")))
    }
    fn health(&mut self, _topic: &str, _health: StreamHealth) {}
}

/// While a store runs, the next deliveries are received and queued, then stored
/// together; a failed store drops what was queued, and the stream starts again from
/// the stored checkpoint: every event is stored once.
#[tokio::test]
async fn deliveries_queue_during_a_store_and_a_failed_store_loses_nothing() {
    let org = Org::start(60).await;
    let published = sfsim::activity::preload(&org.running.sim, 3_000, 600_000, 3);
    let api = org.connect().await;
    let endpoint = Endpoint { url: format!("http://{}", org.running.grpc_addr), ca_pem: None };
    let pubsub = Arc::new(PubSub::new(&endpoint, api).expect("client"));
    let mut sink = Slow::default();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let options = RunOptions { max_queued: 500, ..RunOptions::default() };
    let topic = sfwire::pubsub::REPORT_TOPIC;
    let mut failures = 0;
    while sink.0.lock().expect("lock").ids.len() < published && failures < 5 {
        let run = run(&pubsub, topic, &mut sink, &options, shutdown.clone());
        match tokio::time::timeout(Duration::from_millis(1_500), run).await {
            Ok(Err(e)) => {
                assert!(e.to_string().contains("the disk is full"), "{e}");
                failures += 1;
            }
            Ok(Ok(())) => unreachable!("not shut down"),
            Err(_) => {} // still streaming: look again
        }
    }
    let s = sink.0.lock().expect("lock");
    assert_eq!(failures, 1, "the one failed store ends the run once");
    assert_eq!(s.ids.len(), published, "every event stored");
    let unique: std::collections::HashSet<&String> = s.ids.iter().collect();
    assert_eq!(unique.len(), published, "none twice");
    assert!(s.largest > 100, "deliveries received during a store are stored together: {}", s.largest);
    assert!(s.largest <= 600, "at most max_queued wait (plus one delivery): {}", s.largest);
}
