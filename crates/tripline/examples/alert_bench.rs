//! Alerting benchmarks (run by `scripts/bench.sh`):
//!
//! `alert_bench latency [--probes N] [--rate EVENTS_PER_S]` — the whole server (connector,
//! evaluator, deliverer) with the recommended rules enabled and one rule that matches
//! the probe exporter, a webhook channel to a receiver on loopback; sfsim's people make
//! about 1,000 events/s while every 50 ms one export by the probe user is published.
//! Prints the time from publishing to the receiver holding the alert: p50 / p99 / max.
//!
//! `alert_bench catchup [--events N] [--runs R]` — catch-up of N retained events from
//! EARLIEST with the evaluator running beside the connector, without rules and with 20
//! enabled rules, alternating; prints events/s of each and the ratio, and when the
//! evaluator had caught up too.
//!
//! `alert_bench backtest DB` — back-tests of typical rules over every event of a
//! `search_bench` database (10,000,000 events).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tripline::alerting::Alerting;
use tripline::alerts::recommended::recommended;
use tripline::alerts::{Conditions, RuleDraft, Target, Threshold, WebhookBody};
use tripline::connector::RunSettings;
use tripline::events::Destination;
use tripline::risk::{RiskIndicator, Severity};
use tripline::store::sqlite::SqliteStore;
use tripline::store::{AlertStore, Store};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    match args.first().map(String::as_str) {
        Some("latency") => {
            latency(
                value("--probes").map_or(Ok(300), |v| v.parse())?,
                value("--rate").map_or(Ok(1_000.0), |v| v.parse())?,
            )
            .await
        }
        Some("catchup") => {
            catchup(
                value("--events").map_or(Ok(1_000_000), |v| v.parse())?,
                value("--runs").map_or(Ok(3), |v| v.parse())?,
            )
            .await
        }
        Some("backtest") => backtest(args.get(1).ok_or_else(|| anyhow::anyhow!("backtest DB"))?),
        _ => {
            anyhow::bail!("alert_bench latency [--probes N] [--rate R] | catchup [--events N] [--runs R] | backtest DB")
        }
    }
}

fn draft(name: &str, severity: Severity, conditions: Conditions, suppress_minutes: u32) -> RuleDraft {
    RuleDraft {
        name: name.into(),
        description: String::new(),
        severity,
        conditions,
        channels: Vec::new(),
        suppress_minutes,
    }
}

/// Twenty rules of the kinds people write: the recommended ones and twelve more.
fn twenty_rules() -> Vec<RuleDraft> {
    let mut rules = recommended();
    let extra = [
        ("Rows at least 5,000", Conditions { min_rows: Some(5_000), ..Default::default() }),
        ("Rows at least 50,000", Conditions { min_rows: Some(50_000), ..Default::default() }),
        ("Pipeline reports", Conditions { report_name: Some("*pipeline*".into()), ..Default::default() }),
        ("Forecast reports", Conditions { report_name: Some("*forecast*".into()), ..Default::default() }),
        ("Contacts queried", Conditions { queried_objects: vec!["Contact".into()], ..Default::default() }),
        ("Excel files", Conditions { export_formats: vec!["Excel".into()], ..Default::default() }),
        ("Off hours", Conditions { indicators: vec![RiskIndicator::OffHours], ..Default::default() }),
        ("Moderate or worse", Conditions { min_severity: Some(Severity::Moderate), ..Default::default() }),
        (
            "Unmonitored and large",
            Conditions { destination: Some(Destination::Unmonitored), min_rows: Some(10_000), ..Default::default() },
        ),
        (
            "Five downloads in ten minutes",
            Conditions {
                threshold: Some(Threshold { window_minutes: 10, exports: Some(5), rows: None }),
                ..Default::default()
            },
        ),
        (
            "A million rows a day",
            Conditions {
                threshold: Some(Threshold { window_minutes: 24 * 60, exports: None, rows: Some(1_000_000) }),
                ..Default::default()
            },
        ),
        ("New address", Conditions { indicators: vec![RiskIndicator::NewSourceIp], ..Default::default() }),
    ];
    for (name, conditions) in extra {
        rules.push(draft(name, Severity::Moderate, conditions, 60));
    }
    assert_eq!(rules.len(), 20);
    rules
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64() * 1e3;
    (at(0.5), at(0.99), at(1.0))
}

async fn latency(probes: usize, rate: f64) -> anyhow::Result<()> {
    let org =
        sfsim::start(sfsim::Config { users: 500, callback_urls: vec![support::CALLBACK.into()], ..Default::default() })
            .await?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::create(&dir.path().join("alerts.db"))?);
    let app = tripline::emulated::app(&org, support::CALLBACK);
    let record = support::connect(&*store, &app, &org, "latency").await?;
    let probe_user = {
        let api = tripline::connector::api_for(&record, &app, reqwest::Client::new())?;
        tripline::connector::scope::export_holders(&api).await?.into_iter().next().expect("an exporter")
    };
    // The receiver notes when each alert arrives, by its rows (each probe's are unique).
    let arrived: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let kept = arrived.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                let at = Instant::now();
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
                    && let Some(rows) = v["alert"]["rows"].as_i64()
                {
                    kept.lock().expect("lock").insert(rows, at);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let target = Target::Webhook { url, secret: "benchmark-signing-secret".into(), body: WebhookBody::Json };
    let channel = store.save_channel(None, "bench", &target, true, "bench")?;
    for d in recommended() {
        let rule = store.create_rule(&d, "bench")?;
        store.set_rule_enabled(rule.id, true, "bench")?;
    }
    let mut probe = draft(
        "Probe exports",
        Severity::High,
        Conditions { include_users: vec![probe_user.username.to_lowercase()], ..Default::default() },
        0,
    );
    probe.channels = vec![channel.id];
    let rule = store.create_rule(&probe, "bench")?;
    store.set_rule_enabled(rule.id, true, "bench")?;

    let server = tripline::server::Server::start(store.clone(), &app, RunSettings::default()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    org.people.set_rate(rate);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let topic = org.sim.topic(sfsim::org::EventType::Report);
    let (first_replay, started) = (topic.latest_replay(), Instant::now());
    let mut latencies = Vec::with_capacity(probes);
    let mut published_ms = Vec::with_capacity(probes);
    for i in 0..probes {
        let rows = 5_000 + i as u64;
        let request = sfsim::activity::ExportRequest { rows: Some(rows), ..Default::default() };
        let published = Instant::now();
        published_ms.push((rows as i64, chrono::Utc::now().timestamp_millis()));
        org.people.export(&org.sim, &probe_user.user_id, &request).map_err(|e| anyhow::anyhow!(e))?;
        loop {
            if let Some(at) = arrived.lock().expect("lock").get(&(rows as i64)) {
                latencies.push(at.duration_since(published));
                break;
            }
            anyhow::ensure!(published.elapsed() < Duration::from_secs(10), "probe {i} not delivered within 10 s");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let background = (topic.latest_replay() - first_replay) as f64 / started.elapsed().as_secs_f64();
    org.people.set_rate(0.0);
    let _ = stop.send(());
    serving.await??;
    let (p50, p99, max) = percentiles(latencies);
    // Where the time went: publish → stored (the file event's ingest time) → alert raised.
    let db = rusqlite::Connection::open(dir.path().join("alerts.db"))?;
    let (mut stored, mut raised) = (Vec::new(), Vec::new());
    for (rows, at) in &published_ms {
        let (ingested, created): (i64, i64) = db.query_row(
            "SELECT f.ingested_at, a.created_at FROM file_events f JOIN alerts a
             ON a.rule_name = 'Probe exports' AND a.rows = f.rows WHERE f.rows = ?1",
            [rows],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        stored.push(Duration::from_millis((ingested - at).max(0) as u64));
        raised.push(Duration::from_millis((created - ingested).max(0) as u64));
    }
    let (s50, s99, _) = percentiles(stored);
    let (r50, r99, _) = percentiles(raised);
    println!(
        "  of which publish to stored: p50 {s50:.0} ms, p99 {s99:.0} ms; stored to alert raised: p50 {r50:.0} ms, p99 {r99:.0} ms"
    );
    let alerts = store.alerts(&tripline::alerts::AlertFilter { limit: 1, ..Default::default() })?.1;
    println!(
        "alert latency: {probes} probe exports among {background:.0} report events/s of background, 9 enabled rules \
         ({alerts} alerts raised in all); publish to webhook receiver: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    );
    Ok(())
}

/// One catch-up: the connector from EARLIEST with the evaluator beside it; the time
/// until the report checkpoint reaches the last event, and until the evaluator has
/// evaluated every stored event.
async fn catchup_run(backlog: &support::Backlog, rules: &[RuleDraft]) -> anyhow::Result<(f64, Option<f64>, u64)> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::create(&dir.path().join("catchup.db"))?);
    let record = support::connect(&*store, &backlog.app, &backlog.org, "catchup").await?;
    for d in rules {
        let rule = store.create_rule(d, "bench")?;
        store.set_rule_enabled(rule.id, true, "bench")?;
    }
    let settings = RunSettings { monitor_from_ms: Some(0), ..Default::default() };
    let alerting = Arc::new(Alerting::new(store.clone(), settings.stored.clone()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let evaluator = tokio::spawn(alerting.clone().run(stopped));
    let started = Instant::now();
    let running = tripline::connector::start(store.clone(), &record, &backlog.app, settings).await?;
    while !backlog.caught_up(&*store, &record.id)? {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ingest = started.elapsed().as_secs_f64();
    running.stop().await;
    let evaluated = if rules.is_empty() {
        None
    } else {
        let last: i64 = rusqlite::Connection::open(dir.path().join("catchup.db"))?.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM file_events",
            [],
            |r| r.get(0),
        )?;
        alerting.evaluated(last).await;
        Some(started.elapsed().as_secs_f64())
    };
    let _ = stop.send(true);
    evaluator.await?;
    let alerts = store.alerts(&tripline::alerts::AlertFilter { limit: 1, ..Default::default() })?.1;
    Ok((ingest, evaluated, alerts))
}

async fn catchup(events: usize, runs: usize) -> anyhow::Result<()> {
    let backlog = support::backlog(events).await?;
    let published = backlog.published as f64;
    println!("{} retained events, {runs} run(s) each, alternating", backlog.published);
    let rules = twenty_rules();
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let (t, _, _) = catchup_run(&backlog, &[]).await?;
        println!("run {run} no rules:  {:.0} events/s", published / t);
        without.push(published / t);
        let (t, evaluated, alerts) = catchup_run(&backlog, &rules).await?;
        println!(
            "run {run} 20 rules:  {:.0} events/s; every event evaluated after {:.1} s (ingest took {t:.1} s); {alerts} alerts",
            published / t,
            evaluated.unwrap_or_default()
        );
        with.push(published / t);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (median(without), median(with));
    println!("median: no rules {a:.0} events/s, 20 rules {b:.0} events/s: {:.1}% slower", (1.0 - b / a) * 100.0);
    Ok(())
}

fn backtest(path: &str) -> anyhow::Result<()> {
    let store = SqliteStore::open(path.as_ref())?;
    let total = store.events_after(0, 1)?.len();
    anyhow::ensure!(total > 0, "the database holds no events (search_bench load it first)");
    let cases = [
        ("rows >= 100,000", Conditions { min_rows: Some(100_000), ..Default::default() }, 0),
        (
            "unmonitored device, suppressed per hour",
            Conditions { destination: Some(Destination::Unmonitored), ..Default::default() },
            60,
        ),
        (
            "more than 20 downloads per person within an hour",
            Conditions {
                threshold: Some(Threshold { window_minutes: 60, exports: Some(20), rows: None }),
                ..Default::default()
            },
            60,
        ),
    ];
    for (name, conditions, suppress) in cases {
        let d = draft(name, Severity::High, conditions, suppress);
        let rule = tripline::alerts::Rule {
            id: 1,
            name: d.name,
            description: String::new(),
            severity: d.severity,
            enabled: true,
            conditions: d.conditions,
            channels: Vec::new(),
            suppress_minutes: d.suppress_minutes,
            active_from_seq: 0,
            updated_at: 0,
            updated_by: String::new(),
        };
        let started = Instant::now();
        let result = tripline::alerting::backtest(&store, &rule, 0, i64::MAX)?;
        println!(
            "backtest {name:?}: {} events read, {} matched, {} alerts, in {:.1} s",
            result.events,
            result.matched,
            result.alerts,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
