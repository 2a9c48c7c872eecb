//! The connector end to end against sfsim: authorization, scope, attribution, chunks,
//! and resuming without loss or duplicates.

mod common;

use std::time::Duration;

use serde_json::json;
use tripline::connection::{ConnectionStatus, ScopeMode};
use tripline::events::{Attribution, Destination};
use tripline::risk::RiskIndicator;

use common::{Scenario, id, no_body};

#[tokio::test]
async fn exports_become_attributed_file_events_once() {
    let s = Scenario::new(80).await;
    let record = s.connect("Acme production", ScopeMode::All).await;
    assert_eq!(s.store.connection(&record.id).expect("stored").status, ConnectionStatus::Initializing);
    let running = s.run(&record).await;
    assert_eq!(s.store.connection(&record.id).expect("stored").status, ConnectionStatus::Monitoring);

    let exporters = s.exporters().await;
    // A user who signs in now: attributed through the login session.
    let fresh = exporters.iter().find(|u| u["logged_in"] == false).expect("someone signed out");
    let fresh_id = id(fresh);
    s.control(&format!("/users/{fresh_id}/login"), json!({"source_ip": "203.0.113.50"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the login stream is separate
    let outcome = s.export(&fresh_id, json!({"rows": 25_000, "file_format": "Excel"})).await;
    // A user signed in before the connection existed: attributed by user lookup.
    let early = exporters.iter().find(|u| u["logged_in"] == true).expect("someone already signed in");
    let early_id = id(early);
    s.export(&early_id, json!({"rows": 42, "file_format": "CSV"})).await;
    // Runs are not downloads; users without Export Reports are not monitored.
    s.export(&fresh_id, json!({"operation": "ReportRunFromLightning"})).await;
    let outsider = s
        .users()
        .await
        .into_iter()
        .find(|u| u["can_export_reports"] == false && u["active"] == true)
        .expect("outsider");
    s.export(&id(&outsider), no_body()).await;

    let events = s.wait_for("two exports", |e| e.len() == 2 && e.iter().any(|x| x.chunk_count == 3)).await;
    let big = events.iter().find(|e| e.user_id.as_str() == fresh_id).expect("the big export");
    assert_eq!(big.attribution, Attribution::LoginSession);
    assert_eq!(big.chunk_count, 3, "three chunks, one file event");
    assert_eq!(big.rows, 25_000);
    assert_eq!(big.execution_id.as_deref(), outcome["execution_identifier"].as_str());
    assert_eq!(big.source_ip.as_deref(), Some("203.0.113.50"));
    assert_eq!(big.destination, Destination::Unmonitored);
    assert_eq!(big.raw.len(), 3, "the raw events are kept");
    assert!(big.file_name.ends_with(".xlsx"), "{}", big.file_name);
    assert!(big.indicators.contains(&RiskIndicator::LargeExport));
    assert_eq!(big.username.as_deref(), fresh["username"].as_str());
    assert_eq!(big.email.as_deref(), fresh["email"].as_str());
    let small = events.iter().find(|e| e.user_id.as_str() == early_id).expect("the early user's export");
    assert_eq!(small.attribution, Attribution::UserLookup);
    assert!(small.file_name.starts_with("report") && small.file_name.ends_with(".csv"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.store.counter(&record.id, "out_of_scope_exports").expect("counter"), 1);
    running.stop().await;
}

#[tokio::test]
async fn a_restart_resumes_from_the_checkpoint() {
    let s = Scenario::new(60).await;
    let record = s.connect("Resume", ScopeMode::All).await;
    let running = s.run(&record).await;
    let user = id(&s.exporters().await[0]);
    s.export(&user, json!({"rows": 10})).await;
    s.wait_for("the first export", |e| e.len() == 1).await;
    running.stop().await;

    // Exports while Tripline is down arrive after it restarts, each once.
    s.export(&user, json!({"rows": 11})).await;
    s.export(&user, json!({"rows": 12_345})).await;
    let running = s.run(&record).await;
    let events = s.wait_for("all three", |e| e.len() == 3).await;
    assert_eq!(events.iter().map(|e| e.rows).collect::<Vec<_>>(), [10, 11, 12_345]);
    assert_eq!(events[2].chunk_count, 2);
    // Dropped streams replay from the checkpoint: still nothing twice.
    s.control("/streams/drop", no_body()).await;
    s.export(&user, json!({"rows": 13})).await;
    s.wait_for("the fourth", |e| e.len() == 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.events().len(), 4);
    running.stop().await;
}

#[tokio::test]
async fn a_first_export_and_a_new_source_address_are_known_after_a_restart() {
    use tripline::risk::RiskIndicator::{FirstExportByUser, NewSourceIp};
    let s = Scenario::new(60).await;
    let record = s.connect("Firsts", ScopeMode::All).await;
    let user = id(&s.exporters().await[0]);
    let running = s.run(&record).await;
    s.export(&user, json!({"rows": 10, "source_ip": "203.0.113.7"})).await;
    s.wait_for("the first export", |e| e.len() == 1).await;
    running.stop().await;

    // A new process knows only the store: the same address again is nothing new, a
    // second address is.
    let running = s.run(&record).await;
    s.export(&user, json!({"rows": 11, "source_ip": "203.0.113.7"})).await;
    s.export(&user, json!({"rows": 12, "source_ip": "203.0.113.8"})).await;
    let events = s.wait_for("all three", |e| e.len() == 3).await;
    assert_eq!(
        events.iter().map(|e| e.source_ip.as_deref()).collect::<Vec<_>>(),
        [Some("203.0.113.7"), Some("203.0.113.7"), Some("203.0.113.8")]
    );
    let has = |i: usize, indicator| events[i].indicators.contains(&indicator);
    // (A first export comes from a new address by definition, and is counted once.)
    assert!(has(0, FirstExportByUser) && !has(0, NewSourceIp), "{:?}", events[0].indicators);
    assert!(!has(1, FirstExportByUser) && !has(1, NewSourceIp), "{:?}", events[1].indicators);
    assert!(!has(2, FirstExportByUser) && has(2, NewSourceIp), "{:?}", events[2].indicators);
    running.stop().await;
}

#[tokio::test]
async fn exports_made_as_streaming_went_off_while_tripline_was_down_are_read_back() {
    let s = Scenario::new(60).await;
    let record = s.connect("Down", ScopeMode::All).await;
    let user = id(&s.exporters().await[0]);
    let running = s.run(&record).await;
    s.export(&user, json!({"rows": 10})).await;
    s.wait_for("the first export", |e| e.len() == 1).await;
    running.stop().await;

    // Streaming goes off while Tripline is down, and an export is made: it is in no
    // stream, only in ReportEvent, and older than the next process.
    s.control("/event-settings", json!({"event": "ReportEventStream", "streaming": false})).await;
    s.export(&user, json!({"rows": 11})).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let running = s.run(&record).await;
    s.wait_status(&record.id, tripline::connection::ConnectionStatus::Error, &["event-manager"]).await;
    s.control("/event-settings", json!({"event": "ReportEventStream", "streaming": true})).await;
    let events = s.wait_for("both", |e| e.len() == 2).await;
    assert_eq!(events.iter().map(|e| e.rows).collect::<Vec<_>>(), [10, 11]);
    running.stop().await;
}

#[tokio::test]
async fn scope_by_users_and_groups() {
    let s = Scenario::new(120).await;
    let exporters = s.exporters().await;
    let chosen = &exporters[0];
    let other = &exporters[1];
    // A listed user without Export Reports is not monitored.
    let outsider = s.users().await.into_iter().find(|u| u["can_export_reports"] == false).expect("outsider");
    let by_email = ScopeMode::Users(vec![
        chosen["email"].as_str().expect("email").to_uppercase(),
        outsider["username"].as_str().expect("username").to_owned(),
    ]);
    let record = s.connect("Chosen users", by_email).await;
    let running = s.run(&record).await;
    let scope = s.store.scope(&record.id).expect("scope");
    assert_eq!(scope.len(), 1, "{scope:?}");
    s.export(&id(other), json!({"rows": 5})).await;
    s.export(&id(chosen), json!({"rows": 6})).await;
    let events = s.wait_for("the chosen user's export", |e| !e.is_empty()).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].user_id.as_str(), id(chosen));
    running.stop().await;

    // Groups: "All Sales" nests the regional groups; the cycle does not hang the scan.
    let record = s.connect("Sales", ScopeMode::Groups(vec!["All_Sales".into()])).await;
    let context = s.run(&record).await;
    let scope = s.store.scope(&record.id).expect("scope");
    assert!(!scope.is_empty());
    let groups = s.control_get("/groups").await;
    let finance = groups.as_array().expect("groups").iter().find(|g| g["name"] == "Finance Team").expect("finance");
    let finance_members: Vec<&str> =
        finance["members"].as_array().expect("members").iter().filter_map(|m| m.as_str()).collect();
    assert!(scope.iter().all(|u| !finance_members.contains(&u.user_id.as_str())), "finance is not under All Sales");
    context.stop().await;
}

#[tokio::test]
async fn tokens_are_encrypted_at_rest() {
    let s = Scenario::new(20).await;
    let record = s.connect("Secrets", ScopeMode::All).await;
    let stored = s.store.connection(&record.id).expect("stored");
    assert_eq!(stored.refresh_token, record.refresh_token, "decrypted on read");
    let mut bytes = Vec::new();
    for name in ["tripline.db", "tripline.db-wal"] {
        if let Ok(b) = std::fs::read(s.dir.path().join(name)) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty());
    let needle = record.refresh_token.as_bytes();
    assert!(!bytes.windows(needle.len()).any(|w| w == needle), "the refresh token is not on disk in clear");
    #[cfg(unix)]
    for name in ["tripline.db", "tripline.db-wal", "tripline.db.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.dir.path().join(name)).expect(name).permissions().mode();
        assert_eq!(mode & 0o077, 0, "{name} is readable by its owner only: {mode:o}");
    }
}

#[tokio::test]
async fn unknown_scope_entries_are_refused_by_line_and_nothing_is_saved() {
    use tripline::connector::NewConnection;
    use tripline::connector::scope_csv::{CsvKind, ScopeCsv};

    let s = Scenario::new(30).await;
    let exporter = s.exporters().await[0]["username"].as_str().expect("username").to_owned();
    let file = format!("username\n{exporter}\nghost@nowhere.example\n");
    let csv = ScopeCsv::parse(file.as_bytes(), CsvKind::Users).expect("well formed");
    let error = s.try_connect(&NewConnection::from_csv("Ghosts", &csv, vec![])).await.expect_err("unknown user");
    assert!(error.to_string().contains("line 3"), "{error}");
    assert!(s.store.connections().expect("list").is_empty(), "nothing saved");

    let groups = ScopeCsv::parse(b"Group Name\nAll Sales\nNo Such Group\n", CsvKind::Groups).expect("well formed");
    let error = s.try_connect(&NewConnection::from_csv("Groups", &groups, vec![])).await.expect_err("unknown group");
    assert!(error.to_string().contains("line 3") && error.to_string().contains("No Such Group"), "{error}");

    let good = ScopeCsv::parse(format!("{exporter}\n").as_bytes(), CsvKind::Users).expect("well formed");
    let record = s.try_connect(&NewConnection::from_csv("Good", &good, vec![])).await.expect("saved");
    assert_eq!(record.scope.entries(), [exporter]);
}

#[tokio::test]
async fn lost_replay_ids_are_backfilled_or_reported() {
    let s = Scenario::new(40).await;
    let record = s.connect("Backfill", ScopeMode::All).await;
    let running = s.run(&record).await;
    let user = id(&s.exporters().await[0]);
    s.export(&user, json!({"rows": 10})).await;
    s.wait_for("the first export", |e| e.len() == 1).await;
    running.stop().await;

    // While Tripline is down, exports happen and the stream forgets them.
    s.export(&user, json!({"rows": 20})).await;
    s.export(&user, json!({"rows": 30_000})).await;
    s.control("/retention", json!({"seconds": 1})).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let running = s.run(&record).await;
    let events = s.wait_for("recovery from ReportEvent", |e| e.len() == 3).await;
    assert_eq!(events.iter().map(|e| (e.rows, e.chunk_count)).collect::<Vec<_>>(), [(10, 1), (20, 1), (30_000, 3)]);
    let gaps = s.store.gaps(&record.id).expect("gaps");
    assert!(gaps.iter().any(|g| g.topic == "/event/ReportEventStream" && g.recovered), "{gaps:?}");
    running.stop().await;

    // Without storing, the same loss cannot be recovered: it is recorded, not skipped.
    s.control("/event-settings", json!({"event": "ReportEvent", "storing": false})).await;
    s.control("/retention", json!({"seconds": 3600})).await;
    let running = s.run(&record).await;
    s.export(&user, json!({"rows": 40})).await;
    s.wait_for("the fourth export", |e| e.len() == 4).await;
    running.stop().await;
    s.export(&user, json!({"rows": 50})).await;
    s.export(&user, json!({"rows": 60})).await;
    s.control("/retention", json!({"seconds": 1})).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let running = s.run(&record).await;
    for _ in 0..100 {
        if s.store.gaps(&record.id).expect("gaps").iter().any(|g| !g.recovered && g.topic == "/event/ReportEventStream")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gaps = s.store.gaps(&record.id).expect("gaps");
    let lost = gaps.iter().find(|g| !g.recovered && g.topic == "/event/ReportEventStream").expect("an unrecovered gap");
    assert!(lost.reason.contains("could not be recovered"), "{lost:?}");
    assert_eq!(s.events().len(), 4);
    // The loss shows on the connection as a warning; monitoring goes on.
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &["event-stream"]).await;
    running.stop().await;
}

#[tokio::test]
async fn permission_revoked_then_restored_follows_the_rescan() {
    use tripline::connector::RunSettings;

    let s = Scenario::new(60).await;
    let record = s.connect("Rescan", ScopeMode::All).await;
    let settings = RunSettings { rescan_every: Duration::from_millis(200), ..RunSettings::default() };
    let running = s.run_with(&record, settings).await;
    // Someone whose only Export Reports grant is a permission set (not their profile).
    let exporter_set = s.permission_set("Report Exporter").await;
    let user = s
        .users()
        .await
        .into_iter()
        .find(|u| u["can_export_reports"] == false && u["active"] == true && u["frozen"] == false)
        .expect("a user");
    let user_id = id(&user);
    s.control(&format!("/users/{user_id}/permission-sets"), json!({ "permission_set": exporter_set })).await;
    let in_scope =
        |s: &Scenario| s.store.scope(&record.id).expect("scope").iter().any(|u| u.user_id.as_str() == user_id);
    for _ in 0..100 {
        if in_scope(&s) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(in_scope(&s), "granted: now monitored");
    s.export(&user_id, json!({"rows": 1})).await;
    s.wait_for("the granted user's export", |e| e.iter().any(|x| x.user_id.as_str() == user_id)).await;

    s.control(&format!("/users/{user_id}/permission-sets/remove"), json!({ "permission_set": exporter_set })).await;
    for _ in 0..100 {
        if !in_scope(&s) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!in_scope(&s), "revoked: no longer monitored");
    s.export(&user_id, json!({"rows": 2})).await;
    for _ in 0..100 {
        if s.store.counter(&record.id, "out_of_scope_exports").expect("counter") >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.events_of(&user_id).len(), 1, "the export after revocation is not stored");
    assert!(s.store.counter(&record.id, "out_of_scope_exports").expect("counter") >= 1);

    // An expired grant does not count either.
    s.control(
        &format!("/users/{user_id}/permission-sets"),
        json!({ "permission_set": exporter_set, "expires": "2001-01-01T00:00:00Z" }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!in_scope(&s), "an expired assignment grants nothing");
    s.control(&format!("/users/{user_id}/permission-sets"), json!({ "permission_set": exporter_set })).await;
    for _ in 0..100 {
        if in_scope(&s) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(in_scope(&s), "restored: monitored again");
    running.stop().await;
}

#[tokio::test]
async fn pause_resume_and_deauthorize() {
    use tripline::connector::lifecycle;

    let s = Scenario::new(20).await;
    let record = s.connect("Lifecycle", ScopeMode::All).await;
    lifecycle::pause(&*s.store, &record.id, "tests").expect("pause");
    assert_eq!(s.store.connection(&record.id).expect("record").status, ConnectionStatus::Paused);
    assert!(lifecycle::resume(&*s.store, "nope", "tests").is_err());
    lifecycle::resume(&*s.store, &record.id, "tests").expect("resume");
    assert!(lifecycle::resume(&*s.store, &record.id, "tests").is_err(), "only a paused connection resumes");
    assert_eq!(s.store.connection(&record.id).expect("record").status, ConnectionStatus::Initializing);

    lifecycle::deauthorize(&*s.store, &record.id, &s.app.allowed_origins, "tests").await.expect("deauthorize");
    assert_eq!(s.store.connection(&record.id).expect("record").status, ConnectionStatus::Deauthorized);
    let api = tripline::connector::api_for(&record, &s.app, reqwest::Client::new()).expect("api");
    s.control("/sessions/expire", no_body()).await;
    let refused = api.query("SELECT Id FROM Organization").await.expect_err("revoked at Salesforce");
    assert!(refused.needs_person(), "{refused}");
    assert!(lifecycle::pause(&*s.store, &record.id, "tests").is_err());
    let history: Vec<ConnectionStatus> =
        s.store.status_history(&record.id).expect("history").into_iter().map(|h| h.status).collect();
    use ConnectionStatus::{Deauthorized, Initializing, Paused};
    assert_eq!(history, [Initializing, Paused, Initializing, Deauthorized]);
    let audited: Vec<String> = s.store.audit_log(10).expect("audit").into_iter().rev().map(|e| e.action).collect();
    assert_eq!(audited, ["connection.pause", "connection.resume", "connection.deauthorize"]);
}

#[tokio::test]
async fn a_connection_that_cannot_start_says_why_and_keeps_its_history() {
    use tripline::connection::ProblemSource;
    use tripline::connector::{RunSettings, SalesforceApp};
    use tripline::server::Server;

    let s = Scenario::new(20).await;
    let record = s.connect("Not allowed here", ScopeMode::All).await;
    let before = s.store.status_history(&record.id).expect("history");
    // A server started without --allow-origin for the emulated org.
    let strict = SalesforceApp { allowed_origins: Vec::new(), ..s.app.clone() };
    let server = Server::start(s.store.clone(), &strict, RunSettings::default()).await.expect("server");
    assert!(server.fleet.contexts().await.is_empty());
    let stored = s.store.connection(&record.id).expect("record");
    assert_eq!(stored.status, ConnectionStatus::Error);
    let detail = stored.status_detail.expect("detail");
    assert_eq!(detail.problems.len(), 1, "{detail:?}");
    assert_eq!(detail.problems[0].source, ProblemSource::Configuration);
    assert!(detail.problems[0].message.contains("--allow-origin"), "{detail:?}");
    let after = s.store.status_history(&record.id).expect("history");
    assert_eq!(after[..before.len()], before[..], "earlier history is kept");
    assert_eq!(after.len(), before.len() + 1);
}

#[tokio::test]
async fn an_event_that_cannot_be_read_is_kept_aside_once_and_the_stream_goes_on() {
    let s = Scenario::new(40).await;
    let record = s.connect("Damaged", ScopeMode::All).await;
    let running = s.run(&record).await;
    let user = id(&s.exporters().await[0]);
    s.control("/streams/corrupt", json!({ "event": "report" })).await;
    s.export(&user, json!({ "rows": 7 })).await;
    s.wait_for("the export behind the damaged event", |e| e.len() == 1).await;
    let (count, newest) = s.store.quarantine(&record.id, 5).expect("quarantine");
    assert_eq!(count, 1);
    assert!(newest[0].reason.contains("cannot be decoded"), "{:?}", newest[0]);
    assert!(newest[0].evidence["payload_base64"].is_string(), "the bytes are kept as evidence");
    let shown = s.wait_status(&record.id, ConnectionStatus::Monitoring, &["event-stream"]).await;
    assert!(format!("{:?}", shown.status_detail).contains("kept aside"));
    running.stop().await;

    // Read again from EARLIEST: the damaged event is still kept once, the export stored once.
    let now = chrono::Utc::now().timestamp_millis();
    s.store.mark_restart(&record.id, "/event/ReportEventStream", now).expect("restart");
    let running = s.run(&record).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.store.quarantine(&record.id, 5).expect("quarantine").0, 1);
    assert_eq!(s.events().len(), 1);
    running.stop().await;
}

#[tokio::test]
async fn exports_wait_for_the_first_scope_scan_and_none_is_lost() {
    let s = Scenario::new(40).await;
    let record = s.connect("No scope yet", ScopeMode::All).await;
    let user = id(&s.exporters().await[0]);
    // The first scan cannot run: the org's API allowance is spent.
    s.control("/api-limit", json!({ "remaining": 0 })).await;
    let running = s.run(&record).await;
    for rows in [1, 2, 3] {
        s.export(&user, json!({ "rows": rows })).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(s.events().is_empty(), "nothing is judged against a scope nobody has seen");
    s.control("/api-limit", json!({ "remaining": 100_000 })).await;
    let events = s.wait_for("the three held exports", |e| e.len() == 3).await;
    let mut rows: Vec<i64> = events.iter().map(|e| e.rows).collect();
    rows.sort_unstable();
    assert_eq!(rows, [1, 2, 3]);
    running.stop().await;
}

#[tokio::test]
async fn exports_made_while_streaming_was_off_are_read_back_when_it_returns() {
    let s = Scenario::new(40).await;
    let record = s.connect("Streaming off", ScopeMode::All).await;
    let running = s.run(&record).await;
    let user = id(&s.exporters().await[0]);
    s.export(&user, json!({ "rows": 1 })).await;
    s.wait_for("the first export", |e| e.len() == 1).await;
    s.control("/event-settings", json!({ "event": "ReportEventStream", "streaming": false })).await;
    s.wait_status(&record.id, ConnectionStatus::Error, &["event-manager"]).await;
    for rows in [2, 3, 4] {
        s.export(&user, json!({ "rows": rows })).await;
    }
    s.control("/event-settings", json!({ "event": "ReportEventStream", "streaming": true })).await;
    let events = s.wait_for("the exports made while streaming was off", |e| e.len() == 4).await;
    let mut rows: Vec<i64> = events.iter().map(|e| e.rows).collect();
    rows.sort_unstable();
    assert_eq!(rows, [1, 2, 3, 4]);
    s.wait_status(&record.id, ConnectionStatus::Monitoring, &[]).await;
    let gaps = s.store.gaps(&record.id).expect("gaps");
    assert_eq!(gaps.len(), 1, "one window, one gap: {gaps:?}");
    assert!(gaps[0].recovered && gaps[0].reason.contains("streaming"), "{gaps:?}");
    running.stop().await;
}

#[tokio::test]
async fn a_window_that_cannot_be_read_back_is_one_gap_however_often_it_is_tried() {
    let s = Scenario::new(30).await;
    let record = s.connect("Unreachable", ScopeMode::All).await;
    let running = s.run(&record).await;
    // No report event yet: the report stream restarts from EARLIEST and re-reads the
    // window since its restart mark at each reconnect; with the API spent, it cannot.
    s.control("/api-limit", json!({ "remaining": 0 })).await;
    for _ in 0..5 {
        s.control("/streams/drop", no_body()).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let unrecovered =
        |s: &Scenario| s.store.gaps(&record.id).expect("gaps").into_iter().filter(|g| !g.recovered).count();
    assert_eq!(unrecovered(&s), 1, "{:?}", s.store.gaps(&record.id));
    // Once the window can be read, the gap clears.
    s.control("/api-limit", json!({ "remaining": 100_000 })).await;
    s.control("/streams/drop", no_body()).await;
    for _ in 0..100 {
        if unrecovered(&s) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(unrecovered(&s), 0, "{:?}", s.store.gaps(&record.id));
    running.stop().await;
}

#[tokio::test]
async fn reconciliation_finds_an_export_the_stream_never_carried() {
    use tripline::connector::RunSettings;

    let s = Scenario::new(30).await;
    let record = s.connect("Reconciled", ScopeMode::All).await;
    // Health checks too slow to notice a short outage; reconciliation often.
    let settings = RunSettings {
        check_every: Duration::from_secs(600),
        reconcile_every: Duration::from_millis(300),
        reconcile_lag: Duration::ZERO,
        ..RunSettings::default()
    };
    let running = s.run_with(&record, settings).await;
    let user = id(&s.exporters().await[0]);
    s.control("/event-settings", json!({ "event": "ReportEventStream", "streaming": false })).await;
    s.export(&user, json!({ "rows": 9 })).await;
    s.control("/event-settings", json!({ "event": "ReportEventStream", "streaming": true })).await;
    let events = s.wait_for("the export only ReportEvent holds", |e| e.len() == 1).await;
    assert_eq!(events[0].rows, 9);
    let gaps = s.store.gaps(&record.id).expect("gaps");
    assert!(gaps.iter().any(|g| g.recovered && g.reason.contains("reconciliation")), "{gaps:?}");
    running.stop().await;
}
