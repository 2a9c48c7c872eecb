//! Nothing lost, nothing twice: `tripline serve` is killed (SIGKILL) at random moments
//! while the org keeps publishing; afterwards the stored file events are exactly the
//! exports published by in-scope users, each once, with every chunk counted.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tripline::connection::ScopeMode;

use common::{Lcg, Scenario, id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_points_loses_nothing_and_duplicates_nothing() {
    killed_at_random_points(Scenario::new(60).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_points_loses_nothing_and_duplicates_nothing_on_postgres() {
    killed_at_random_points(Scenario::on_postgres(60).await).await;
}

async fn killed_at_random_points(s: Scenario) {
    let s = Arc::new(s);
    let record = s.connect("Crash test", ScopeMode::All).await;
    let in_scope: HashSet<String> = tripline::connector::scope::export_holders(
        &tripline::connector::api_for(&record, &s.app, reqwest::Client::new()).expect("api"),
    )
    .await
    .expect("scope")
    .into_iter()
    .map(|u| u.user_id.to_string())
    .collect();
    let users: Vec<String> = s.users().await.iter().filter(|u| u["active"] == true).map(id).collect();
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7);
    println!("crash test seed {seed}");

    // Publisher: exports of random sizes (some chunked) by random users, in and out of scope.
    let published: Arc<Mutex<BTreeMap<String, (String, u64)>>> = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let publisher = {
        let (s, published, users) = (s.clone(), published.clone(), users.clone());
        tokio::spawn(async move {
            let mut rng = Lcg(seed);
            while !*stop_rx.borrow() {
                let user = &users[rng.below(users.len() as u64) as usize];
                let rows = if rng.below(5) == 0 { 10_001 + rng.below(30_000) } else { 1 + rng.below(5_000) };
                let outcome = s.export(user, json!({ "rows": rows })).await;
                let chunks = outcome["event_identifiers"].as_array().map_or(0, Vec::len) as u64;
                let execution = outcome["execution_identifier"].as_str().expect("execution id").to_owned();
                published.lock().expect("lock").insert(execution, (user.clone(), chunks));
                tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
            }
        })
    };

    let mut rng = Lcg(seed ^ 0x5eed);
    for _ in 0..8 {
        let mut child = s.serve_process();
        tokio::time::sleep(Duration::from_millis(150 + rng.below(700))).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
    stop_tx.send(true).expect("stop publishing");
    publisher.await.expect("publisher");

    let expected: BTreeMap<String, u64> = published
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, (user, _))| in_scope.contains(user))
        .map(|(x, (_, chunks))| (x.clone(), *chunks))
        .collect();
    assert!(expected.len() > 20, "enough exports to mean something: {}", expected.len());

    // The killed runs did ingest (so kills landed mid-work), but not everything.
    let before_final = s.events().len();
    println!("stored before the last run: {before_final} of {} exports", expected.len());
    assert!(before_final > 0, "the interrupted runs stored nothing: the test would prove nothing");

    // One last, uninterrupted run catches up.
    let mut child = s.serve_process();
    let mut stored = BTreeMap::new();
    for _ in 0..400 {
        stored = s.stored_exports();
        let complete = stored.len() >= expected.len() && stored.values().sum::<u64>() >= expected.values().sum::<u64>();
        if complete {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let events = s.events();
    assert_eq!(events.len(), stored.len(), "one file event per export");
    let stored: BTreeMap<String, u64> =
        events.into_iter().map(|e| (e.execution_id.unwrap_or_default(), e.chunk_count as u64)).collect();
    assert_eq!(stored, expected, "seed {seed}: stored exports differ from published in-scope exports");
}

/// Alerts and their notifications survive SIGKILLs too: each export raises one alert,
/// each alert reaches the webhook (at least once, with the same idempotency key when
/// sent again), and none is raised twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_delivery_every_alert_is_raised_once_and_delivered() {
    killed_mid_delivery(Scenario::new(40).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_delivery_every_alert_is_raised_once_and_delivered_on_postgres() {
    killed_mid_delivery(Scenario::on_postgres(40).await).await;
}

async fn killed_mid_delivery(s: Scenario) {
    use tripline::alerts::{AlertFilter, Conditions, RuleDraft, Target, WebhookBody};
    use tripline::risk::Severity;

    s.connect("Crash test", ScopeMode::All).await;
    // A slow receiver (up to 400 ms an answer): kills land while messages are in flight.
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let kept = kept.clone();
            async move {
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let pause = key.bytes().map(u64::from).sum::<u64>() % 400;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                kept.lock().expect("lock").push(key);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let target = Target::Webhook { url, secret: "a-secret-of-enough-length".into(), body: WebhookBody::Json };
    let channel = s.store.save_channel(None, "hook", &target, true, "test").expect("channel");
    let every = RuleDraft {
        name: "Every export".into(),
        description: String::new(),
        severity: Severity::Low,
        conditions: Conditions { min_rows: Some(0), ..Conditions::default() },
        channels: vec![channel.id],
        suppress_minutes: 0,
    };
    let rule = s.store.create_rule(&every, "test").expect("rule");
    s.store.set_rule_enabled(rule.id, true, "test").expect("enabled");
    let exporters: Vec<String> = s.exporters().await.iter().map(id).collect();

    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7);
    println!("seed {seed}");
    let mut rng = Lcg(seed);
    let mut published = 0;
    for _ in 0..6 {
        let mut child = s.serve_process();
        for _ in 0..4 {
            let user = &exporters[rng.below(exporters.len() as u64) as usize];
            s.export(user, json!({ "rows": 1 + rng.below(100) })).await;
            published += 1;
            tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(600))).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
    let delivered_before_last_run =
        s.store.channel_health().expect("health").get(&channel.id).map_or(0, |h| h.delivered);
    println!("delivered before the last run: {delivered_before_last_run} of {published}");

    let mut child = s.serve_process();
    let mut health = Default::default();
    for _ in 0..600 {
        health = s.store.channel_health().expect("health").get(&channel.id).cloned().unwrap_or_default();
        if health.delivered >= published && health.pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let (alerts, total) = s.store.alerts(&AlertFilter { limit: 1_000, ..AlertFilter::default() }).expect("alerts");
    assert_eq!(total, published, "seed {seed}: one alert per export");
    assert_eq!(alerts.iter().map(|a| a.events).sum::<i64>(), published as i64, "each export in one alert");
    assert_eq!((health.delivered, health.pending, health.failed), (published, 0, 0), "seed {seed}: {health:?}");
    let keys: HashSet<String> = received.lock().expect("lock").iter().cloned().collect();
    let expected: HashSet<String> = alerts.iter().map(|a| format!("{}:{}", a.id, channel.id)).collect();
    assert_eq!(keys, expected, "seed {seed}: every alert reached the receiver, under its own key");
}
