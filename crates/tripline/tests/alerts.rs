//! Alerts end to end: sfsim exports → file events → rules → alerts → messages at real
//! receivers on loopback.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::{Scenario, id};
use serde_json::{Value, json};
use tripline::alerts::engine::backtest;
use tripline::alerts::notify::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
use tripline::alerts::{AlertFilter, AlertState, AlertUpdate, Conditions, RuleDraft, Target, Threshold, WebhookBody};
use tripline::connection::ScopeMode;
use tripline::risk::Severity;

const SECRET: &str = "a-signing-secret-of-some-length";

/// A webhook receiver: checks each request's signature, answers 503 to the first
/// `fail_first` requests (and while `down`), and keeps what it accepted.
#[derive(Clone, Default)]
struct Receiver {
    accepted: Arc<Mutex<Vec<(String, Value)>>>,
    refused: Arc<Mutex<Vec<String>>>,
    fail_first: Arc<Mutex<usize>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    async fn start(self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let me = me.clone();
                async move { me.receive(&headers, &body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn receive(&self, headers: &HeaderMap, body: &str) -> StatusCode {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let key = header(IDEMPOTENCY_HEADER);
        let timestamp: i64 = header(TIMESTAMP_HEADER).parse().unwrap_or_default();
        let fresh = (chrono::Utc::now().timestamp() - timestamp).abs() < 300;
        if !fresh || header(SIGNATURE_HEADER) != signature(SECRET, timestamp, body) {
            return StatusCode::UNAUTHORIZED;
        }
        let mut fail = self.fail_first.lock().expect("lock");
        if *fail > 0 || self.down.load(std::sync::atomic::Ordering::SeqCst) {
            *fail = fail.saturating_sub(1);
            self.refused.lock().expect("lock").push(key);
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        self.accepted.lock().expect("lock").push((key, serde_json::from_str(body).expect("a JSON body")));
        StatusCode::OK
    }

    fn accepted(&self) -> Vec<(String, Value)> {
        self.accepted.lock().expect("lock").clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<(String, Value)> {
        for _ in 0..400 {
            let got = self.accepted();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the receiver holds {:?}", self.accepted());
    }
}

fn draft(name: &str, conditions: Conditions, channels: Vec<i64>, suppress_minutes: u32) -> RuleDraft {
    RuleDraft {
        name: name.into(),
        description: String::new(),
        severity: Severity::High,
        conditions,
        channels,
        suppress_minutes,
    }
}

#[tokio::test]
async fn a_large_export_raises_one_alert_delivered_signed_once_through_a_failing_receiver() {
    let s = Scenario::new(40).await;
    let receiver = Receiver::default();
    *receiver.fail_first.lock().expect("lock") = 1;
    let url = receiver.clone().start().await;
    let record = s.connect("Acme", ScopeMode::All).await;
    let target = Target::Webhook { url, secret: SECRET.into(), body: WebhookBody::Json };
    let channel = s.store.save_channel(None, "SOC webhook", &target, true, "test").expect("channel");
    let big = Conditions { min_rows: Some(10_000), ..Default::default() };
    let rule = s.store.create_rule(&draft("Big exports", big, vec![channel.id], 60), "test").expect("rule");
    s.store.set_rule_enabled(rule.id, true, "test").expect("enabled");
    let served = s.serve().await;

    let exporters = s.exporters().await;
    let ann = id(&exporters[0]);
    s.export(&ann, json!({"rows": 25_000, "file_format": "Excel"})).await; // three chunks
    s.export(&ann, json!({"rows": 50, "file_format": "CSV"})).await; // below the rule
    let got = receiver.wait_for(1).await;
    let (key, body) = &got[0];
    assert_eq!(body["type"], "tripline.alert");
    assert_eq!(body["alert"]["rule"]["name"], "Big exports");
    assert_eq!(body["alert"]["events"], 1, "three chunks are one export");
    assert_eq!(body["alert"]["rows"], 25_000);
    assert_eq!(body["alert"]["user"]["id"], ann.as_str());
    assert_eq!(body["events"][0]["rows"], 25_000);
    assert_eq!(body["events"][0]["destination"], "unmonitored");
    let alert_id = body["alert"]["id"].as_str().expect("id").to_owned();
    assert_eq!(key, &format!("{alert_id}:{}", channel.id));
    assert_eq!(*receiver.refused.lock().expect("lock"), vec![key.clone()], "the first attempt was refused");

    // Within the suppression window: the alert grows, nothing more is sent.
    s.export(&ann, json!({"rows": 12_000})).await;
    for _ in 0..200 {
        if s.store.alert(&alert_id).expect("alert").expect("stored").0.events == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (alert, _) = s.store.alert(&alert_id).expect("alert").expect("stored");
    assert_eq!((alert.events, alert.rows), (2, 37_000));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.accepted().len(), 1, "a grown alert is not sent again");
    let health = s.store.channel_health().expect("health");
    assert_eq!((health[&channel.id].delivered, health[&channel.id].pending), (1, 0));
    assert!(health[&channel.id].last_error.as_deref().is_some_and(|e| e.contains("503")));

    // Closed by an analyst: the next match opens a new alert, which is sent.
    let update = AlertUpdate {
        state: Some(AlertState::Benign),
        note: Some("expected quarterly pull".into()),
        ..Default::default()
    };
    s.store.update_alert(&alert_id, &update, "analyst").expect("triage");
    s.export(&ann, json!({"rows": 15_000})).await;
    let got = receiver.wait_for(2).await;
    assert_ne!(got[1].1["alert"]["id"], alert_id.as_str());
    let (all, total) = s.store.alerts(&AlertFilter { limit: 10, ..Default::default() }).expect("alerts");
    assert_eq!(total, 2);
    assert_eq!(all.iter().map(|a| a.events).sum::<i64>(), 3);

    // The back-test of the rule over the same events raises as many alerts (it knows
    // nothing of the analyst's close, which split the burst: 1 rather than 2).
    let events = s.store.events_between(0, i64::MAX, 0, 1_000).expect("events");
    assert_eq!(events.len(), 4);
    let rule = s.store.rule(rule.id).expect("rule");
    let result = backtest(&rule, &events);
    assert_eq!((result.matched, result.alerts, result.grown), (3, 1, 2));
    served.stop().await;
    let _ = record;
}

#[tokio::test]
async fn a_burst_of_exports_raises_one_threshold_alert_and_a_receiver_down_gets_it_after_a_restart() {
    let s = Scenario::new(40).await;
    let receiver = Receiver::default();
    receiver.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let url = receiver.clone().start().await;
    s.connect("Acme", ScopeMode::All).await;
    let target = Target::Webhook { url, secret: SECRET.into(), body: WebhookBody::Json };
    let channel = s.store.save_channel(None, "SIEM", &target, true, "test").expect("channel");
    let mass = Conditions {
        threshold: Some(Threshold { window_minutes: 60, exports: Some(2), rows: None }),
        ..Default::default()
    };
    let rule = s.store.create_rule(&draft("Mass export", mass, vec![channel.id], 60), "test").expect("rule");
    s.store.set_rule_enabled(rule.id, true, "test").expect("enabled");
    let served = s.serve().await;

    let exporters = s.exporters().await;
    let (ann, bob) = (id(&exporters[0]), id(&exporters[1]));
    for _ in 0..2 {
        s.export(&bob, json!({"rows": 10})).await;
    }
    for _ in 0..4 {
        s.export(&ann, json!({"rows": 10})).await;
    }
    s.wait_for("six exports", |e| e.len() == 6).await;
    let mut alerts = Vec::new();
    for _ in 0..200 {
        alerts = s.store.alerts(&AlertFilter { limit: 10, ..Default::default() }).expect("alerts").0;
        if alerts.first().is_some_and(|a| a.events == 4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].user_id, ann);
    assert_eq!(alerts[0].events, 4, "three raised it, the fourth grew it");
    // The receiver is down: the message waits in the outbox, through a restart.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(receiver.accepted().is_empty());
    assert!(s.store.channel_health().expect("health")[&channel.id].pending == 1);
    served.stop().await;
    receiver.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let served = s.serve().await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].1["alert"]["id"], alerts[0].id.as_str());
    assert_eq!(got[0].1["alert"]["events"], 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.accepted().len(), 1, "delivered once");
    // Nothing was evaluated twice across the restart.
    assert_eq!(s.store.alerts(&AlertFilter { limit: 10, ..Default::default() }).expect("alerts").1, 1);
    served.stop().await;
}
