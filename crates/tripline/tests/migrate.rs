//! `tripline migrate`: an embedded installation moved to PostgreSQL keeps every
//! event, connection, account, rule and alert; an interrupted copy resumes; a
//! database already in use is refused.

mod common;

use std::time::Duration;

use serde_json::json;
use tripline::alerts::{AlertFilter, Conditions, RuleDraft, Target, WebhookBody};
use tripline::connection::ScopeMode;
use tripline::risk::{Severity, WatchEntry, WatchKind};
use tripline::store::Store;
use tripline::store::postgres::PostgresStore;
use tripline::store::postgres::private::PrivateServer;
use tripline::store::secrets::SecretBox;

use common::{Scenario, id};

const KEY: [u8; 32] = [42; 32];

/// `tripline migrate` from the SQLite file at `from` to `to`.
fn migrate(from: &std::path::Path, to: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["migrate", "--from"])
        .arg(from)
        .args(["--to", to])
        .env("TRIPLINE_SECRET_KEY", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, KEY))
        .output()
        .expect("tripline migrate")
}

/// Everything a person would miss, as the store answers it.
fn contents(store: &dyn Store) -> serde_json::Value {
    let all = tripline::search::SearchQuery {
        from_ms: 0,
        to_ms: i64::MAX,
        filter: tripline::search::Filter::All(vec![]),
        sort: tripline::search::Sort::default(),
        page_size: 10_000,
        after: None,
        after_seq: None,
    };
    let events: Vec<serde_json::Value> = store
        .search(&all)
        .expect("search")
        .events
        .iter()
        .map(|e| {
            json!([
                e.seq,
                e.id,
                e.execution_id,
                e.chunk_count,
                e.rows,
                e.severity.as_str(),
                e.raw.len(),
                e.user_id.as_str()
            ])
        })
        .collect();
    let connections: Vec<serde_json::Value> = store
        .connections()
        .expect("connections")
        .iter()
        .map(|c| json!([c.id, c.display_name, c.refresh_token, c.access_token, c.status.as_str(), c.scope.name()]))
        .collect();
    let (alerts, total) = store.alerts(&AlertFilter { limit: 1_000, ..AlertFilter::default() }).expect("alerts");
    let alerts: Vec<serde_json::Value> =
        alerts.iter().map(|a| json!([a.seq, a.id, a.rule_id, a.events, a.rows, a.state.as_str()])).collect();
    let channels: Vec<serde_json::Value> =
        store.channels().expect("channels").iter().map(|c| json!([c.id, c.name, c.target])).collect();
    let first = store.connections().expect("connections").first().map(|c| c.id.clone()).unwrap_or_default();
    let checkpoints: Vec<String> = ["/event/ReportEventStream", "/event/LoginEventStream"]
        .iter()
        .map(|t| format!("{:?}", store.checkpoint(&first, t).expect("checkpoint")))
        .collect();
    json!({
        "events": events,
        "connections": connections,
        "accounts": store.accounts().expect("accounts").iter().map(|a| json!([a.id, a.username, a.role.as_str()])).collect::<Vec<_>>(),
        "rules": store.rules().expect("rules").iter().map(|r| json!([r.id, r.name, r.enabled, r.active_from_seq])).collect::<Vec<_>>(),
        "alerts": alerts,
        "alert_total": total,
        "channels": channels,
        "tokens": store.api_tokens().expect("tokens").iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        "searches": store.saved_searches().expect("searches").iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "watchlist": store.watchlist().expect("watchlist").iter().map(|w| w.username.clone()).collect::<Vec<_>>(),
        "dashboard": store.dashboard(0, 4_000_000_000_000, 10).expect("dashboard"),
        "audit": store.audit_log(100_000).expect("audit").len(),
        "checkpoints": checkpoints,
        "alert_position": store.alert_position().expect("position"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_installation_moves_to_postgres_whole_and_resumes_when_interrupted() {
    // An installation in use: a connection, people, a rule raising alerts, a channel.
    let s = Scenario::new(30).await;
    s.connect("Production", ScopeMode::All).await;
    let store = &*s.store;
    store.create_account("Ann.Admin", tripline::access::Role::Admin, "hash", "setup").expect("account");
    store.add_api_token("siem", "token-hash", None, "setup").expect("token");
    store.save_search("Big ones", "rows>1000", "ann").expect("search");
    let entry = WatchEntry {
        kind: WatchKind::Departing,
        username: "leaver@example.com".into(),
        departure: None,
        note: Some("notice given".into()),
        added_at: 1,
        added_by: "ann".into(),
    };
    store.add_watch_entries(&[entry], "ann").expect("watch list");
    let target = Target::Webhook {
        url: "http://127.0.0.1:9/hook".into(),
        secret: "a-secret-of-enough-length".into(),
        body: WebhookBody::Json,
    };
    let channel = store.save_channel(None, "SOC hook", &target, true, "ann").expect("channel");
    let rule = RuleDraft {
        name: "Every export".into(),
        description: String::new(),
        severity: Severity::Moderate,
        conditions: Conditions { min_rows: Some(0), ..Conditions::default() },
        channels: vec![channel.id],
        suppress_minutes: 0,
    };
    let rule = store.create_rule(&rule, "ann").expect("rule");
    store.set_rule_enabled(rule.id, true, "ann").expect("enabled");
    // Enough audit entries that one table takes several batches.
    for i in 0..4_500 {
        store.audit("tests", "test.entry", &format!("entry {i}")).expect("audit");
    }
    let served = s.serve().await;
    let exporters: Vec<String> = s.exporters().await.iter().map(id).collect();
    for (i, user) in exporters.iter().cycle().take(12).enumerate() {
        let rows = if i % 4 == 0 { 25_000 } else { 100 + i as u64 };
        s.export(user, json!({ "rows": rows })).await;
    }
    for _ in 0..300 {
        let alerts = store.alerts(&AlertFilter::default()).expect("alerts").1;
        let counted: u64 = store
            .dashboard(0, 4_000_000_000_000, 10)
            .expect("dashboard")
            .hours
            .iter()
            .map(|h| h.corporate + h.unmonitored)
            .sum();
        if alerts == 12 && counted == 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    served.stop().await;
    let before = contents(store);
    assert_eq!(before["alert_total"], 12, "{before}");
    let path = s.dir.path().join("tripline.db");

    // The copy is interrupted in the middle of the audit log...
    let server = PrivateServer::start(false).expect("PostgreSQL");
    let url = server.database().expect("a database");
    let source_key = SecretBox::of_sqlite(&path).expect("the source's key");
    {
        let target = PostgresStore::connect(&url, SecretBox::from_key(&KEY).expect("key")).expect("target");
        let stopped = target
            .import_sqlite(&path, &source_key, |p| !(p.table == "audit_log" && p.copied >= 2_000))
            .expect("copying");
        assert!(stopped.is_none(), "stopped as asked");
    }
    // ... and resumed by the command, which verifies what it copied.
    let output = migrate(&path, &url);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("continuing an interrupted copy") && stdout.contains("verified"), "{stdout}");
    assert!(stderr.contains("file_events") && stderr.contains("100%"), "a progress bar per table: {stderr}");

    let target = PostgresStore::connect(&url, SecretBox::from_key(&KEY).expect("key")).expect("target");
    let after = contents(&target);
    assert_eq!(after, before, "everything reads back the same from PostgreSQL");
    // New rows go on after the copied ones.
    let next = target.create_account("newcomer", tripline::access::Role::Viewer, "h", "ann").expect("account");
    assert!(before["accounts"].as_array().expect("accounts").iter().all(|a| a[0].as_i64() < Some(next.id)));

    // Migrating again into a database in use is refused, and changes nothing.
    let again = migrate(&path, &url);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds Tripline data"));
    assert_eq!(target.accounts().expect("accounts").len(), before["accounts"].as_array().map_or(0, Vec::len) + 1);
}
