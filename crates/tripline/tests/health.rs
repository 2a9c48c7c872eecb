//! Faults injected in the org turn the connection to Error with the right source and
//! an actionable message; fixing the cause brings it back to Monitoring by itself.

mod common;

use serde_json::json;
use tripline::connection::{ConnectionStatus, ProblemSeverity, ScopeMode};

use common::{Scenario, no_body};

#[tokio::test]
async fn faults_are_named_and_clear_by_themselves() {
    let s = Scenario::new(40).await;
    let record = s.connect("Health", ScopeMode::All).await;
    let running = s.run(&record).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;
    let service = s.org.sim.org().service_user.to_string();

    // Event Manager: streaming off is an error naming the event; storing off a warning.
    s.control("/event-settings", json!({"event": "LogoutEventStream", "streaming": false})).await;
    let r = s.wait_status(&record.id, ConnectionStatus::Error, &["event-manager"]).await;
    assert!(format!("{:?}", r.status_detail.expect("detail")).contains("LogoutEventStream"));
    s.control("/event-settings", json!({"event": "LogoutEventStream", "streaming": true})).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;
    s.control("/event-settings", json!({"event": "ReportEvent", "storing": false})).await;
    let r = s.wait_status(&record.id, ConnectionStatus::Monitoring, &["event-manager"]).await;
    let detail = r.status_detail.expect("detail");
    assert!(detail.problems.iter().all(|p| p.severity == ProblemSeverity::Warning), "{detail:?}");
    s.control("/event-settings", json!({"event": "ReportEvent", "storing": true})).await;

    // Licence.
    s.control("/licence", json!({"enabled": false})).await;
    s.wait_status(&record.id, ConnectionStatus::Error, &["licence"]).await;
    s.control("/licence", json!({"enabled": true})).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;

    // The service account frozen: its token stops working.
    s.control(&format!("/users/{service}/state"), json!({"frozen": true})).await;
    let r = s.wait_status(&record.id, ConnectionStatus::Error, &["token"]).await;
    assert!(format!("{:?}", r.status_detail.expect("detail")).contains("frozen"));
    s.control(&format!("/users/{service}/state"), json!({"frozen": false})).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;

    // A permission taken from the service account's profile.
    let profile_set = s.permission_set("Tripline Monitoring").await;
    s.control(&format!("/permission-sets/{profile_set}"), json!({"PermissionsCustomizeApplication": false})).await;
    s.wait_status(&record.id, ConnectionStatus::Error, &["permissions"]).await;
    s.control(&format!("/permission-sets/{profile_set}"), json!({"PermissionsCustomizeApplication": true})).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;

    // API Enabled taken away: Salesforce refuses every API call of the account.
    s.control(&format!("/permission-sets/{profile_set}"), json!({"PermissionsApiEnabled": false})).await;
    let r = s.wait_status(&record.id, ConnectionStatus::Error, &["permissions"]).await;
    assert!(format!("{:?}", r.status_detail.expect("detail")).contains("API Enabled"));
    s.control(&format!("/permission-sets/{profile_set}"), json!({"PermissionsApiEnabled": true})).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;

    // An expired session is refreshed, and the new access token kept for the next start.
    s.control("/sessions/expire", no_body()).await;
    for _ in 0..100 {
        let session = running.context.api.session().access_token;
        if session != record.access_token && s.store.connection(&record.id).expect("record").access_token == session {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_ne!(running.context.api.session().access_token, record.access_token, "the token was refreshed");
    assert_eq!(
        s.store.connection(&record.id).expect("record").access_token,
        running.context.api.session().access_token
    );

    // The daily API limit.
    s.control("/api-limit", json!({"remaining": 0})).await;
    s.wait_status(&record.id, ConnectionStatus::Error, &["api-limits"]).await;
    s.control("/api-limit", json!({"remaining": 100000})).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;

    // Revoked tokens: a person must authorize again; the error stays.
    s.control("/tokens/revoke", no_body()).await;
    s.wait_status(&record.id, ConnectionStatus::Error, &["token"]).await;

    let history = s.store.status_history(&record.id).expect("history");
    assert!(history.len() >= 12, "every change recorded: {}", history.len());
    assert!(history.iter().all(|h| !h.actor.is_empty()));
    running.stop().await;
}

/// Sources of the connection's problems now.
fn sources(s: &Scenario, id: &str) -> Vec<String> {
    let record = s.store.connection(id).expect("record");
    record.status_detail.iter().flat_map(|d| &d.problems).map(|p| p.source.as_str().to_owned()).collect()
}

#[tokio::test]
async fn with_default_checks_a_fault_shows_and_clears_within_ten_seconds_with_one_problem_per_cause() {
    use std::time::{Duration, Instant};
    use tripline::connector::RunSettings;

    let s = Scenario::new(30).await;
    let record = s.connect("Timely", ScopeMode::All).await;
    let running = s.run_with(&record, RunSettings::default()).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;
    s.control("/licence", json!({"enabled": false})).await;
    let off = Instant::now();
    s.wait_status(&record.id, ConnectionStatus::Error, &["licence"]).await;
    assert!(off.elapsed() < Duration::from_secs(10), "shown after {:?}", off.elapsed());
    assert_eq!(sources(&s, &record.id), ["licence"], "the licence is the one cause");
    s.control("/licence", json!({"enabled": true})).await;
    let on = Instant::now();
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;
    assert!(on.elapsed() < Duration::from_secs(10), "cleared after {:?}", on.elapsed());
    running.stop().await;
}

#[tokio::test]
async fn an_api_limit_spent_at_start_is_one_problem() {
    let s = Scenario::new(30).await;
    let record = s.connect("Spent", ScopeMode::All).await;
    s.control("/api-limit", json!({"remaining": 0})).await;
    let running = s.run(&record).await;
    s.wait_status(&record.id, ConnectionStatus::Error, &["api-limits"]).await;
    assert_eq!(sources(&s, &record.id), ["api-limits"]);
    running.stop().await;
}

#[tokio::test]
async fn an_org_that_stops_answering_is_a_network_problem_within_seconds() {
    use std::time::Duration;
    use tripline::connector::RunSettings;

    let s = Scenario::new(30).await;
    let record = s.connect("Stuck", ScopeMode::All).await;
    let settings = RunSettings {
        check_every: Duration::from_millis(200),
        preflight_every: Duration::from_millis(400),
        check_deadline: Duration::from_secs(1),
        ..RunSettings::default()
    };
    let running = s.run_with(&record, settings).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;
    // Connections are accepted; no answer comes.
    s.control("/stall", json!({ "seconds": 120 })).await;
    let r = s.wait_status(&record.id, ConnectionStatus::Error, &["network"]).await;
    assert!(format!("{:?}", r.status_detail).contains("did not answer"), "{:?}", r.status_detail);
    s.control("/stall", json!({ "seconds": 0 })).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;
    running.stop().await;
}

/// Until the connection's stored exports number `n`.
async fn wait_exports(s: &Scenario, n: usize) {
    for _ in 0..300 {
        if s.stored_exports().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} exports stored: {}", s.stored_exports().len());
}

#[tokio::test]
async fn an_org_that_misbehaves_is_named_and_recovered_from() {
    let s = Scenario::new(30).await;
    let record = s.connect("Misbehaving", ScopeMode::All).await;
    let running = s.run(&record).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;
    let service = s.org.sim.org().service_user.to_string();
    let exporter = common::id(&s.exporters().await[0]);

    // This server's address outside the connected app's IP ranges.
    let nowhere = json!({ "ranges": [{ "start": "192.0.2.0", "end": "192.0.2.255" }] });
    s.control("/connected-app/ip-restrictions", nowhere).await;
    let r = s.wait_status(&record.id, ConnectionStatus::Error, &["permissions"]).await;
    assert!(format!("{:?}", r.status_detail.expect("detail")).contains("IP address"));
    s.control("/connected-app/ip-restrictions", json!({ "ranges": null })).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;

    // No request served at once (the concurrent-request limit).
    s.control("/concurrency", json!({ "max_requests": 0 })).await;
    let r = s.wait_status(&record.id, ConnectionStatus::Error, &["api-limits"]).await;
    let detail = format!("{:?}", r.status_detail.expect("detail"));
    assert!(detail.contains("at once"), "{detail}");
    s.control("/concurrency", json!({ "max_requests": null })).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;

    // Pub/Sub's concurrent-client limit, then the delivery allocation, each with the
    // streams reset so that they must subscribe again.
    for (path, spent, restored) in [
        ("/streams/limits", json!({ "max_subscriptions": 0 }), json!({ "max_subscriptions": null })),
        ("/streams/allocation", json!({ "remaining": 0 }), json!({ "remaining": null })),
    ] {
        s.control(path, spent).await;
        s.control("/streams/drop", no_body()).await;
        let r = s.wait_status(&record.id, ConnectionStatus::Error, &["api-limits"]).await;
        assert!(format!("{:?}", r.status_detail.expect("detail")).contains("event stream"), "{path}");
        s.control(path, restored).await;
        s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;
    }
    s.export(&exporter, json!({ "rows": 5 })).await;
    wait_exports(&s, 1).await;

    // Rotating refresh tokens: each new one is kept at once, and the next refresh works.
    s.control("/connected-app/refresh-tokens", json!({ "rotate": true })).await;
    let mut kept = record.refresh_token.clone();
    for _ in 0..2 {
        s.control("/sessions/expire", no_body()).await;
        for _ in 0..200 {
            let stored = s.store.connection(&record.id).expect("record").refresh_token;
            if stored != kept && stored == running.context.api.refresh_token() {
                kept = stored;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(s.store.connection(&record.id).expect("record").refresh_token, kept);
        assert_ne!(kept, record.refresh_token, "rotated and kept");
    }
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;
    // Another session of the connection (a scope change from the console builds one)
    // rotates the token the running connector holds: it takes the stored one up.
    let stored = s.store.connection(&record.id).expect("record");
    let tokens = tripline::connector::StoredTokens { store: s.store.clone(), connection_id: record.id.clone() };
    let other = tripline::connector::api_for(&stored, &s.app, reqwest::Client::new())
        .expect("api")
        .with_token_keeper(Box::new(tokens));
    s.control("/sessions/expire", no_body()).await;
    other.query("SELECT Id FROM User LIMIT 1").await.expect("the other session refreshes");
    assert_ne!(s.store.connection(&record.id).expect("record").refresh_token, running.context.api.refresh_token());
    s.control("/sessions/expire", no_body()).await;
    for _ in 0..200 {
        if running.context.api.refresh_token() == s.store.connection(&record.id).expect("record").refresh_token {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(running.context.api.refresh_token(), s.store.connection(&record.id).expect("record").refresh_token);
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;

    // A password change ends the session: refreshed without anyone noticing.
    s.control(&format!("/users/{service}/password"), json!({ "password": "Changed-Password-7" })).await;
    s.export(&exporter, json!({ "rows": 6 })).await;
    wait_exports(&s, 2).await;

    // The org moves instance: replay ids are lost, nothing else is.
    s.control("/streams/migrate", no_body()).await;
    s.export(&exporter, json!({ "rows": 7 })).await;
    wait_exports(&s, 3).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;
    assert_eq!(s.stored_exports().values().sum::<u64>(), 3, "each export once");
    running.stop().await;
}

#[tokio::test]
async fn an_org_that_falls_silent_between_checks_shows_within_six_seconds() {
    use std::time::{Duration, Instant};
    use tripline::connector::RunSettings;

    let s = Scenario::new(30).await;
    let record = s.connect("Silent", ScopeMode::All).await;
    // Checks as good as never: only the pulse can tell.
    let settings = RunSettings { check_every: Duration::from_secs(600), ..RunSettings::default() };
    let running = s.run_with(&record, settings).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;
    s.control("/stall", json!({ "seconds": 120 })).await;
    let stalled = Instant::now();
    let r = s.wait_status(&record.id, ConnectionStatus::Error, &["network"]).await;
    assert!(stalled.elapsed() < Duration::from_secs(6), "shown after {:?}", stalled.elapsed());
    assert!(format!("{:?}", r.status_detail).contains("did not answer within 3 s"), "{:?}", r.status_detail);
    s.control("/stall", json!({ "seconds": 0 })).await;
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;
    running.stop().await;
}
