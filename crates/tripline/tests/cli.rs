//! `tripline search` as a person runs it: the real binary against a real database.

mod common;

use std::process::Command;

use serde_json::{Value, json};
use tripline::connection::ScopeMode;

use common::{Scenario, id};

fn search(s: &Scenario, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .arg("search")
        .arg("--database")
        .arg(s.dir.path().join("tripline.db"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn search_filters_formats_and_checkpoints() {
    let s = Scenario::new(60).await;
    let record = s.connect("CLI", ScopeMode::All).await;
    let running = s.run(&record).await;
    let exporters = s.exporters().await;
    let (a, b) = (&exporters[0], &exporters[1]);
    // The hostile report names of the org: a formula and markup.
    let reports = s.control_get("/reports").await;
    let formula = reports
        .as_array()
        .expect("reports")
        .iter()
        .find(|r| r["name"].as_str().is_some_and(|n| n.starts_with('=')))
        .expect("formula");
    s.export(&id(a), json!({"rows": 15_000, "report_id": formula["id"]})).await;
    s.export(&id(b), json!({"rows": 50})).await;
    s.wait_for("both", |e| e.len() == 2).await;

    let (ok, out, err) = search(&s, &["--since", "1h", "--format", "csv", "--min-rows", "1000"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "header and one row: {out}");
    assert!(lines[1].contains(",\"'=HYPERLINK("), "formula neutralised: {}", lines[1]);

    let username = a["username"].as_str().expect("username");
    let (ok, out, _) = search(&s, &["--user", &username.to_uppercase(), "--format", "jsonl"]);
    assert!(ok);
    let events: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["user"]["username"], username);
    assert_eq!(events[0]["report"]["chunk_count"], 2);

    let (ok, out, _) = search(&s, &["--report-name", "*hyperlink*", "--format", "json"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).expect("a JSON array").as_array().map(Vec::len), Some(1));

    // Incremental pulls: each event once per checkpoint name.
    let (_, first, _) = search(&s, &["--checkpoint", "siem", "--format", "jsonl"]);
    assert_eq!(first.lines().count(), 2);
    let (_, again, _) = search(&s, &["--checkpoint", "siem", "--format", "jsonl"]);
    assert_eq!(again.lines().count(), 0);
    s.export(&id(b), json!({"rows": 7})).await;
    s.wait_for("the third", |e| e.len() == 3).await;
    let (_, third, _) = search(&s, &["--checkpoint", "siem", "--format", "jsonl"]);
    assert_eq!(third.lines().count(), 1);

    let (ok, table, _) = search(&s, &["--since", "1h"]);
    assert!(ok && table.contains("3 file event(s)"), "{table}");
    let (ok, _, err) = search(&s, &["--since", "7x"]);
    assert!(!ok && err.contains("unit"), "{err}");
    let (ok, _, err) = search(&s, &["--columns", "time,nope"]);
    assert!(!ok && err.contains("unknown column"), "{err}");
    running.stop().await;
}

/// The README's first command: the demo connects to its emulated org through the real
/// sign-in pages, and downloads by its simulated people become searchable.
#[test]
fn the_demo_connects_and_stores_downloads() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().expect("dir");
    let database = dir.path().join("demo.db");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["demo", "--auto-connect", "--users", "80", "--activity", "200", "--listen", "127.0.0.1:0"])
        .args(["--sfsim-http", "127.0.0.1:0", "--sfsim-grpc", "127.0.0.1:0", "--database"])
        .arg(&database)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("demo starts");
    let stdout = demo.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let end = line.starts_with("Press Ctrl-C");
        lines.push(line);
        if end {
            break;
        }
    }
    assert!(lines.iter().any(|l| l.contains("added; downloads are arriving")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("console") && l.contains("http://127.0.0.1:")), "{lines:?}");
    let started = Instant::now();
    let mut found = String::new();
    while started.elapsed() < Duration::from_secs(30) {
        let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
            .args(["search", "--since", "1h", "--format", "jsonl", "--database"])
            .arg(&database)
            .output()
            .expect("search runs");
        found = String::from_utf8_lossy(&out.stdout).into_owned();
        if !found.trim().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    demo.kill().expect("stop the demo");
    demo.wait().expect("reaped");
    let first: Value = serde_json::from_str(found.lines().next().expect("a download was stored")).expect("json");
    assert_eq!(first["event"]["action"], "salesforce-report-download");
}

/// `tripline connections add` from a terminal: it prints where to authorize, listens on
/// the callback URL, and stores the connection once Salesforce answers.
#[tokio::test]
async fn connections_add_prints_the_address_and_completes_at_the_callback() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let s = Scenario::new(10).await;
    // A free port for this command's callback, registered on the connected app.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let callback = format!("http://127.0.0.1:{port}/oauth/salesforce/callback");
    s.control("/connected-app/callbacks", json!({ "url": callback })).await;
    let (client_id, client_secret) = s.org.connected_app();
    let mut add = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["connections", "add", "--name", "From the terminal", "--scope", "all"])
        .args(["--my-domain", s.org.base_url(), "--allow-origin", s.org.base_url()])
        .args(["--salesforce-client-id", &client_id, "--salesforce-client-secret", &client_secret])
        .args(["--redirect-uri", &callback, "--database"])
        .arg(s.dir.path().join("tripline.db"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("connections add starts");
    let mut lines = BufReader::new(add.stdout.take().expect("stdout")).lines().map_while(Result::ok);
    let url =
        lines.by_ref().find_map(|l| l.trim().starts_with("http").then(|| l.trim().to_owned())).expect("an address");
    let (user, password) = s.org.service_account();
    let answer = sfsim::browser::sign_in_and_allow(&url, &user, &password).await.expect("allowed");
    // The browser follows Salesforce's redirect to the command.
    let r = reqwest::get(&answer.url).await.expect("callback");
    assert!(r.status().is_success());
    let status = tokio::task::spawn_blocking(move || add.wait()).await.expect("joined").expect("exited");
    assert!(status.success());
    let rest: Vec<String> = lines.collect();
    assert!(rest.iter().any(|l| l.contains("\"From the terminal\" added")), "{rest:?}");
    let stored = s.store.connections().expect("connections");
    assert_eq!(stored.iter().map(|c| c.display_name.as_str()).collect::<Vec<_>>(), ["From the terminal"]);
}

fn alerts(s: &Scenario, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .arg("alerts")
        .args(args)
        .arg("--database")
        .arg(s.dir.path().join("tripline.db"))
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn alerts_are_listed_incrementally_shown_and_triaged_from_the_terminal() {
    use tripline::alerts::{AlertFilter, Conditions, RuleDraft};
    use tripline::risk::Severity;

    let s = Scenario::new(40).await;
    s.connect("CLI", ScopeMode::All).await;
    let draft = RuleDraft {
        name: "Any export".into(),
        description: String::new(),
        severity: Severity::Low,
        conditions: Conditions { min_rows: Some(0), ..Conditions::default() },
        channels: vec![],
        suppress_minutes: 0,
    };
    let rule = s.store.create_rule(&draft, "test").expect("rule");
    s.store.set_rule_enabled(rule.id, true, "test").expect("enabled");
    let served = s.serve().await;
    let exporters = s.exporters().await;
    let store = s.store.clone();
    let wait_alerts = |n: u64| {
        let store = store.clone();
        async move {
            for _ in 0..300 {
                if store.alerts(&AlertFilter { limit: 1, ..AlertFilter::default() }).expect("alerts").1 >= n {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            panic!("fewer than {n} alerts");
        }
    };
    s.export(&id(&exporters[0]), json!({"rows": 10})).await;
    s.export(&id(&exporters[1]), json!({"rows": 20})).await;
    wait_alerts(2).await;

    let (ok, out, err) = alerts(&s, &["list", "--checkpoint", "soar", "--format", "jsonl"]);
    assert!(ok, "{err}");
    let listed: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(listed.len(), 2);
    assert!(listed[0]["seq"].as_i64() < listed[1]["seq"].as_i64(), "oldest first");
    let (_, again, _) = alerts(&s, &["list", "--checkpoint", "soar", "--format", "jsonl"]);
    assert_eq!(again.lines().count(), 0, "each alert once per checkpoint");
    s.export(&id(&exporters[2]), json!({"rows": 30})).await;
    wait_alerts(3).await;
    let (_, third, _) = alerts(&s, &["list", "--checkpoint", "soar", "--format", "jsonl"]);
    assert_eq!(third.lines().count(), 1);

    let (ok, csv, _) = alerts(&s, &["list", "--format", "csv"]);
    assert!(ok);
    assert_eq!(csv.lines().count(), 4, "a header and three alerts: {csv}");
    assert!(csv.starts_with("created,severity,state,rule,username"));
    let (ok, table, _) = alerts(&s, &["list", "--severity", "high"]);
    assert!(ok && table.contains("0 alert(s)"), "{table}");

    let id = listed[0]["id"].as_str().expect("id");
    let (ok, _, err) = alerts(&s, &["update", id, "--state", "benign", "--note", "a scheduled job"]);
    assert!(ok, "{err}");
    let (ok, shown, _) = alerts(&s, &["show", id]);
    assert!(ok);
    let shown: Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(shown["state"], "benign");
    assert_eq!(shown["notes"][0]["text"], "a scheduled job");
    assert_eq!(shown["file_events"].as_array().map(Vec::len), Some(1));
    let (ok, _, err) = alerts(&s, &["update", id, "--state", "closed"]);
    assert!(!ok && err.contains("is not a alert state"), "{err}");
    let (ok, _, err) = alerts(&s, &["update", id, "--assignee", "nobody"]);
    assert!(!ok && err.contains("no console account"), "{err}");
    served.stop().await;
}
