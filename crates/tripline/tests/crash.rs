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
    let s = Arc::new(Scenario::new(60).await);
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
