//! Soak: `tripline serve` against sfsim while people export, faults are applied and
//! cleared at random (every fault of the control API that clears by itself), and serve
//! is SIGKILLed now and then. At the end the stored exports are exactly the in-scope
//! exports the org recorded (streamed or stored), each once with every chunk; every fault showed in the
//! connection's status with its source within 10 s, and cleared within 10 s of being
//! fixed.
//!
//! `SOAK_SECONDS` sets how long (default 45: the short variant of the test run);
//! `scripts/soak.sh` runs 30 minutes. `SOAK_SEED` replays a run. The figures are
//! printed (`--nocapture`) for BENCHMARKS.md.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tripline::connection::{ConnectionStatus, ProblemSeverity, ScopeMode};
use tripline::store::Store;
use tripline::store::sqlite::SqliteStore;

use common::{Lcg, Scenario, id};

/// A fault of the org: how to cause it, how to fix it, and what the connection must say.
struct Fault {
    name: &'static str,
    apply: (String, Value),
    clear: Option<(String, Value)>,
    /// The problem source the connection must show (none for passing faults).
    source: Option<&'static str>,
    /// Whether the status must turn Error (else a warning while Monitoring).
    error: bool,
}

fn faults(service: &str, profile_set: &str) -> Vec<Fault> {
    let switch = |event: &str, key: &str, on: bool| ("/event-settings".to_owned(), json!({ "event": event, key: on }));
    let fault = |name, apply, clear, source, error| Fault { name, apply, clear, source, error };
    vec![
        fault(
            "report streaming off",
            switch("ReportEventStream", "streaming", false),
            Some(switch("ReportEventStream", "streaming", true)),
            Some("event-manager"),
            true,
        ),
        fault(
            "logout streaming off",
            switch("LogoutEventStream", "streaming", false),
            Some(switch("LogoutEventStream", "streaming", true)),
            Some("event-manager"),
            true,
        ),
        fault(
            "report storing off",
            switch("ReportEvent", "storing", false),
            Some(switch("ReportEvent", "storing", true)),
            Some("event-manager"),
            false,
        ),
        fault(
            "licence off",
            ("/licence".into(), json!({ "enabled": false })),
            Some(("/licence".into(), json!({ "enabled": true }))),
            Some("licence"),
            true,
        ),
        fault(
            "service account frozen",
            (format!("/users/{service}/state"), json!({ "frozen": true })),
            Some((format!("/users/{service}/state"), json!({ "frozen": false }))),
            Some("token"),
            true,
        ),
        fault(
            "permission removed",
            (format!("/permission-sets/{profile_set}"), json!({ "PermissionsCustomizeApplication": false })),
            Some((format!("/permission-sets/{profile_set}"), json!({ "PermissionsCustomizeApplication": true }))),
            Some("permissions"),
            true,
        ),
        fault(
            "API limit spent",
            ("/api-limit".into(), json!({ "remaining": 0 })),
            Some(("/api-limit".into(), json!({ "remaining": 1_000_000 }))),
            Some("api-limits"),
            true,
        ),
        fault(
            "org stalled",
            ("/stall".into(), json!({ "seconds": 600 })),
            Some(("/stall".into(), json!({ "seconds": 0 }))),
            Some("network"),
            true,
        ),
        fault("streams dropped", ("/streams/drop".into(), json!({})), None, None, false),
        fault("sessions expired", ("/sessions/expire".into(), json!({})), None, None, false),
        fault(
            "damaged event",
            ("/streams/corrupt".into(), json!({ "event": "report" })),
            None,
            Some("event-stream"),
            false,
        ),
    ]
}

/// Does the connection show `source` now (with the status the fault means)?
fn shows(store: &SqliteStore, connection: &str, fault: &Fault) -> bool {
    let Ok(record) = store.connection(connection) else { return false };
    let Some(source) = fault.source else { return true };
    let named = record
        .status_detail
        .iter()
        .flat_map(|d| &d.problems)
        .any(|p| p.source.as_str() == source && (p.severity == ProblemSeverity::Error) == fault.error);
    named && (record.status == ConnectionStatus::Error) == fault.error
}

/// Polls until `done` or `limit`; the time it took, if it happened.
async fn within(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn summary(times: &[Duration]) -> String {
    if times.is_empty() {
        return "-".into();
    }
    let mut sorted = times.to_vec();
    sorted.sort();
    format!(
        "median {:.1} s, max {:.1} s",
        sorted[sorted.len() / 2].as_secs_f64(),
        sorted[sorted.len() - 1].as_secs_f64()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_random_faults_and_kills_nothing_is_lost_and_every_fault_shows() {
    let seconds: u64 = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(45);
    let seed: u64 = std::env::var("SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(11, |d| d.as_nanos() as u64)
    });
    println!("soak: {seconds} s, seed {seed}");
    let s = Arc::new(Scenario::new(60).await);
    let record = s.connect("Soak", ScopeMode::All).await;
    let api = tripline::connector::api_for(&record, &s.app, reqwest::Client::new()).expect("api");
    let holders = tripline::connector::scope::export_holders(&api).await.expect("scope");
    let in_scope: HashSet<String> = holders.into_iter().map(|u| u.user_id.to_string()).collect();
    let service = s.org.sim.org().service_user.to_string();
    let profile_set = s.permission_set("Tripline Monitoring").await;
    let faults = faults(&service, &profile_set);
    let users: Vec<String> =
        s.users().await.iter().filter(|u| u["active"] == true && u["id"] != service.as_str()).map(id).collect();

    // People at work: sign-ins and exports of every size, in and out of scope.
    let published: Arc<Mutex<BTreeMap<String, (String, u64)>>> = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let at: Arc<Mutex<BTreeMap<String, f64>>> = Arc::default();
    let started = Instant::now();
    let people = {
        let (s, published, users, at) = (s.clone(), published.clone(), users.clone(), at.clone());
        tokio::spawn(async move {
            let mut rng = Lcg(seed);
            while !*stop_rx.borrow() {
                let user = &users[rng.below(users.len() as u64) as usize];
                if rng.below(4) == 0 {
                    let _ = s.org.control().post(&format!("/users/{user}/login"), &json!({})).await;
                }
                let rows = if rng.below(6) == 0 { 10_001 + rng.below(25_000) } else { 1 + rng.below(3_000) };
                if let Ok(outcome) =
                    s.org.control().post(&format!("/users/{user}/export"), &json!({ "rows": rows })).await
                {
                    let chunks = outcome["event_identifiers"].as_array().map_or(0, Vec::len) as u64;
                    // An export the org did not record (no licence) is known to no one.
                    if let Some(execution) =
                        outcome["execution_identifier"].as_str().filter(|_| outcome["recorded"] == true)
                    {
                        published.lock().expect("lock").insert(execution.to_owned(), (user.clone(), chunks));
                        at.lock().expect("lock").insert(execution.to_owned(), started.elapsed().as_secs_f64());
                    }
                }
                tokio::time::sleep(Duration::from_millis(20 + rng.below(60))).await;
            }
        })
    };

    let reader = SqliteStore::open(&s.dir.path().join("tripline.db")).expect("the database");
    let mut rng = Lcg(seed ^ 0xfa17);
    let mut child = s.serve_process();
    let (mut kills, mut applied) = (0, 0);
    let (mut to_show, mut to_clear, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    let mut slowest: Vec<(Duration, &str)> = Vec::new();
    within(Duration::from_secs(20), || {
        reader.connection(&record.id).is_ok_and(|r| r.status == ConnectionStatus::Monitoring)
    })
    .await
    .expect("monitoring at start");
    // sfsim's chaos mode meanwhile: faults a client recovers from unseen (the named
    // ones above are checked one at a time, so none of those is drawn here; a
    // migration's recovery queries the org, which a stall or a spent limit holds up,
    // so it is tested on its own in tests/health.rs).
    let unseen =
        ["stream-reset", "sessions-expired", "password-change", "refresh-rotation", "slow-delivery", "bursty-delivery"];
    s.control("/chaos", json!({ "rate": 12, "seed": seed, "faults": unseen })).await;
    let soak = Instant::now();
    while soak.elapsed() < Duration::from_secs(seconds) {
        if rng.below(3) == 0 {
            // A kill at a random moment, and a restart.
            tokio::time::sleep(Duration::from_millis(rng.below(2_000))).await;
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
            kills += 1;
            println!("{:>6.1} s: SIGKILL", soak.elapsed().as_secs_f64());
            child = s.serve_process();
            continue;
        }
        let fault = &faults[rng.below(faults.len() as u64) as usize];
        applied += 1;
        println!("{:>6.1} s: {}", soak.elapsed().as_secs_f64(), fault.name);
        s.control(&fault.apply.0, fault.apply.1.clone()).await;
        match within(Duration::from_secs(10), || shows(&reader, &record.id, fault)).await {
            Some(t) => {
                to_show.push(t);
                slowest.push((t, fault.name));
            }
            None => failures.push(format!("{}: not shown within 10 s", fault.name)),
        }
        tokio::time::sleep(Duration::from_millis(rng.below(3_000))).await;
        if let Some((path, body)) = &fault.clear {
            s.control(path, body.clone()).await;
            let cleared = within(Duration::from_secs(10), || {
                reader.connection(&record.id).is_ok_and(|r| {
                    r.status == ConnectionStatus::Monitoring
                        && !r
                            .status_detail
                            .iter()
                            .flat_map(|d| &d.problems)
                            .any(|p| Some(p.source.as_str()) == fault.source)
                })
            })
            .await;
            match cleared {
                Some(t) => to_clear.push(t),
                None => failures.push(format!("{}: not cleared within 10 s of the fix", fault.name)),
            }
        }
    }
    s.control("/chaos", json!({ "rate": 0 })).await;
    let chaos = s.org.chaos.log();
    stop_tx.send(true).expect("stop the people");
    people.await.expect("people");

    let expected: BTreeMap<String, u64> = published
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, (user, _))| in_scope.contains(user))
        .map(|(x, (_, chunks))| (x.clone(), *chunks))
        .collect();
    let complete = within(Duration::from_secs(60), || {
        let stored: BTreeMap<String, u64> = s.stored_exports();
        stored == expected
    })
    .await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let events = s.events();
    let stored: BTreeMap<String, u64> =
        events.iter().map(|e| (e.execution_id.clone().unwrap_or_default(), e.chunk_count as u64)).collect();
    let missing: Vec<(f64, Option<u64>, u64)> = expected
        .iter()
        .filter(|(x, chunks)| stored.get(*x) != Some(chunks))
        .map(|(x, chunks)| (at.lock().expect("lock")[x], stored.get(x).copied(), *chunks))
        .collect();
    if !missing.is_empty() {
        let first: Vec<_> = missing.iter().take(20).collect();
        println!("{} missing (published at s, chunks stored, chunks published), the first: {first:?}", missing.len());
        for topic in ["/event/LoginEventStream", "/event/LogoutEventStream", "/event/ReportEventStream"] {
            println!("checkpoint {topic}: {:?}", reader.checkpoint(&record.id, topic));
        }
        println!("gaps: {:#?}", reader.gaps(&record.id));
        println!("status: {:#?}", reader.connection(&record.id).map(|r| r.status_detail));
    }
    let lost = missing.len();
    let duplicated = events.len() - stored.len() + stored.keys().filter(|x| !expected.contains_key(*x)).count();
    let history = reader.status_history(&record.id).expect("history");
    println!(
        "soak figures: {seconds} s, {applied} faults, {kills} kills, {} exports in scope ({} published), \
         {} status changes, {} chaos faults ({}); time to show: {}; time to clear: {}; lost: {lost}; \
         duplicated: {duplicated}",
        expected.len(),
        published.lock().expect("lock").len(),
        history.len(),
        chaos.len(),
        chaos.iter().map(|c| format!("{:?}", c.fault)).collect::<Vec<_>>().join(", "),
        summary(&to_show),
        summary(&to_clear),
    );
    slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
    println!("slowest to show: {:?}", &slowest[..slowest.len().min(3)]);
    assert!(expected.len() > 10, "enough exports to mean something: {}", expected.len());
    assert!(complete.is_some(), "seed {seed}: stored exports never matched: {lost} lost, {duplicated} duplicated");
    assert_eq!((lost, duplicated), (0, 0), "seed {seed}");
    assert!(failures.is_empty(), "seed {seed}: {failures:#?}");
}
