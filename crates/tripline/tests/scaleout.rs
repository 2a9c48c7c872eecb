//! Several `tripline serve` nodes on one PostgreSQL database: each connection runs on
//! one node at a time, a dead node's connections move to the others within 30 s, a
//! node that was stopped past its lease cannot write when it continues, and through
//! it all the stored file events are exactly the published exports, each once.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tripline::connection::ScopeMode;
use tripline::store::Lease;

use common::{Lcg, Scenario, id};

/// Exports published while the test runs: execution id → chunks.
type Published = Arc<Mutex<BTreeMap<String, u64>>>;

/// Publishes exports by random exporters until `stop` turns true.
fn publish(
    s: &Arc<Scenario>,
    users: Vec<String>,
    seed: u64,
) -> (tokio::sync::watch::Sender<bool>, Published, tokio::task::JoinHandle<()>) {
    let published: Published = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = {
        let (s, published) = (s.clone(), published.clone());
        tokio::spawn(async move {
            let mut rng = Lcg(seed);
            while !*stop_rx.borrow() {
                let user = &users[rng.below(users.len() as u64) as usize];
                let rows = if rng.below(6) == 0 { 10_001 + rng.below(20_000) } else { 1 + rng.below(5_000) };
                let outcome = s.export(user, json!({ "rows": rows })).await;
                let chunks = outcome["event_identifiers"].as_array().map_or(0, Vec::len) as u64;
                let execution = outcome["execution_identifier"].as_str().expect("execution id").to_owned();
                published.lock().expect("lock").insert(execution, chunks);
                tokio::time::sleep(Duration::from_millis(20 + rng.below(40))).await;
            }
        })
    };
    (stop_tx, published, task)
}

fn lease_of(s: &Scenario, connection: &str) -> Option<Lease> {
    let now = chrono::Utc::now().timestamp_millis();
    s.store.leases().expect("leases").into_iter().find(|l| l.key == connection && l.expires_at > now)
}

/// Waits (up to `limit`) until `connection` is held by a node `other_than` is not.
async fn held_by_another(s: &Scenario, connection: &str, other_than: &str, limit: Duration) -> (Lease, Duration) {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(lease) = lease_of(s, connection).filter(|l| l.node != other_than) {
            return (lease, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{connection} was not taken over from {other_than} within {limit:?}: {:?}", s.store.leases());
}

/// Waits until every connection has stored every published export with all its
/// chunks, then checks each connection's file events are exactly those exports.
async fn exactly_once(s: &Scenario, connections: &[&str], published: &BTreeMap<String, u64>, seed: u64) {
    let mut stored: BTreeMap<(String, String), u64> = BTreeMap::new();
    let want = published.len() * connections.len();
    for _ in 0..1_200 {
        stored = s
            .events()
            .into_iter()
            .map(|e| ((e.connection_id.clone(), e.execution_id.clone().unwrap_or_default()), e.chunk_count as u64))
            .collect();
        if stored.len() >= want
            && stored.values().sum::<u64>() >= published.values().sum::<u64>() * connections.len() as u64
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = s.events();
    assert_eq!(events.len(), stored.len(), "seed {seed}: one file event per export and connection");
    for connection in connections {
        let mine: BTreeMap<String, u64> =
            stored.iter().filter(|((c, _), _)| c == connection).map(|((_, x), chunks)| (x.clone(), *chunks)).collect();
        assert_eq!(&mine, published, "seed {seed}: connection {connection} stored other exports than were published");
    }
}

/// The `serve` nodes of a test, killed when it ends (also when it fails).
struct Nodes(BTreeMap<String, std::process::Child>);

impl Nodes {
    fn start(s: &Scenario, names: &[&str]) -> Nodes {
        Nodes(names.iter().map(|n| (n.to_string(), s.serve_node(Some(n)))).collect())
    }

    fn get(&self, name: &str) -> &std::process::Child {
        &self.0[name]
    }

    fn kill(&mut self, name: &str) {
        let mut child = self.0.remove(name).expect("a node of ours");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.0.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7)
}

fn signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill");
    assert!(status.success(), "kill {signal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_two_connections_and_take_over_from_a_killed_one() {
    let s = Arc::new(Scenario::on_postgres(40).await);
    let a = s.connect("Org A", ScopeMode::All).await;
    let b = s.connect("Org B", ScopeMode::All).await;
    let users: Vec<String> = s.exporters().await.iter().map(id).collect();
    let seed = seed();
    println!("seed {seed}");
    let mut nodes = Nodes::start(&s, &["n1", "n2", "n3"]);
    let (stop, published, publisher) = publish(&s, users, seed);

    // Both connections run, on two different nodes once the nodes have counted each other.
    let started = Instant::now();
    let spread = loop {
        let holders = (lease_of(&s, &a.id), lease_of(&s, &b.id));
        if let (Some(x), Some(y)) = &holders
            && x.node != y.node
        {
            break holders;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not spread over two nodes: {:?}", s.store.leases());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("spread over two nodes after {:?}: {spread:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The node running A dies mid-ingest: another takes A over within 30 s.
    let victim = lease_of(&s, &a.id).expect("held").node;
    let before = s.events().len();
    nodes.kill(&victim);
    let (lease, took) = held_by_another(&s, &a.id, &victim, Duration::from_secs(30)).await;
    println!(
        "{victim} killed with {before} events stored; {} took A over after {took:?} (token {})",
        lease.node, lease.token
    );
    assert!(lease.token >= 2, "a takeover raises the fencing token");

    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send(true).expect("stop publishing");
    publisher.await.expect("publisher");
    let published = published.lock().expect("lock").clone();
    assert!(published.len() > 30, "enough exports to mean something: {}", published.len());
    exactly_once(&s, &[&a.id, &b.id], &published, seed).await;
    let nodes_seen: Vec<String> = s.store.nodes().expect("nodes").into_iter().map(|n| n.name).collect();
    assert_eq!(nodes_seen.len(), 3, "every node beat: {nodes_seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_past_its_lease_cannot_write_when_it_continues() {
    let s = Arc::new(Scenario::on_postgres(40).await);
    let a = s.connect("Org A", ScopeMode::All).await;
    let users: Vec<String> = s.exporters().await.iter().map(id).collect();
    let seed = seed();
    println!("seed {seed}");
    let mut nodes = Nodes::start(&s, &["n1"]);
    let started = Instant::now();
    while lease_of(&s, &a.id).is_none_or(|l| l.node != "n1") {
        assert!(started.elapsed() < Duration::from_secs(30), "n1 never took A: {:?}", s.store.leases());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nodes.0.insert("n2".into(), s.serve_node(Some("n2")));
    let (stop, published, publisher) = publish(&s, users, seed);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // n1 stops (SIGSTOP: alive, holding whatever it held) until its lease is long gone.
    signal(nodes.get("n1"), "-STOP");
    let (lease, took) = held_by_another(&s, &a.id, "n1", Duration::from_secs(45)).await;
    println!("n1 stopped; {} took A over after {took:?} (token {})", lease.node, lease.token);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Continued, n1 finds its writes refused and its lease gone, and stops ingesting.
    signal(nodes.get("n1"), "-CONT");
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(lease_of(&s, &a.id).map(|l| l.node), Some("n2".to_owned()), "n2 keeps A");
    let beat = s.store.nodes().expect("nodes").into_iter().find(|n| n.name == "n1").expect("n1").heartbeat_at;
    assert!(chrono::Utc::now().timestamp_millis() - beat < 8_000, "n1 runs again (it beats)");

    stop.send(true).expect("stop publishing");
    publisher.await.expect("publisher");
    let published = published.lock().expect("lock").clone();
    exactly_once(&s, &[&a.id], &published, seed).await;
}

/// One node evaluates and delivers for all; when it dies another takes alerting over:
/// each export still raises one alert, and each alert reaches the receiver under its
/// own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_raised_once_and_delivered_when_the_alerting_node_dies() {
    use std::collections::HashSet;
    use tripline::alerts::{AlertFilter, Conditions, RuleDraft, Target, WebhookBody};
    use tripline::risk::Severity;
    use tripline::store::ALERTING;

    let s = Arc::new(Scenario::on_postgres(40).await);
    s.connect("Org A", ScopeMode::All).await;
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let kept = kept.clone();
            async move {
                // A slow receiver: messages stay due a while, where a second sender
                // (were two nodes delivering) would send them too.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
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
    let mut nodes = Nodes::start(&s, &["n1", "n2"]);
    let started = Instant::now();
    let alerting = loop {
        if let Some(lease) = lease_of(&s, ALERTING) {
            break lease.node;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no node took alerting: {:?}", s.store.leases());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let seed = seed();
    println!("seed {seed}; {alerting} evaluates and delivers");
    let mut rng = Lcg(seed);
    let mut published = 0;
    for i in 0..16 {
        if i == 8 {
            nodes.kill(&alerting);
        }
        let user = &exporters[rng.below(exporters.len() as u64) as usize];
        s.export(user, json!({ "rows": 1 + rng.below(100) })).await;
        published += 1;
        tokio::time::sleep(Duration::from_millis(100 + rng.below(200))).await;
    }
    let (lease, took) = held_by_another(&s, ALERTING, &alerting, Duration::from_secs(30)).await;
    println!("{} took alerting over after {took:?} more", lease.node);
    let mut health = Default::default();
    for _ in 0..600 {
        health = s.store.channel_health().expect("health").get(&channel.id).cloned().unwrap_or_default();
        if health.delivered >= published && health.pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (alerts, total) = s.store.alerts(&AlertFilter { limit: 1_000, ..AlertFilter::default() }).expect("alerts");
    assert_eq!(total, published, "seed {seed}: one alert per export");
    assert_eq!((health.delivered, health.pending, health.failed), (published, 0, 0), "seed {seed}: {health:?}");
    let sent = received.lock().expect("lock").clone();
    let keys: HashSet<String> = sent.iter().cloned().collect();
    let expected: HashSet<String> = alerts.iter().map(|a| format!("{}:{}", a.id, channel.id)).collect();
    assert_eq!(keys, expected, "seed {seed}: every alert reached the receiver, under its own key");
    // One sender at a time: at most the message in flight when its node died is sent again.
    assert!(sent.len() <= keys.len() + 1, "seed {seed}: {} messages for {} alerts", sent.len(), keys.len());
}
