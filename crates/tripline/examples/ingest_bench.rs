//! Catch-up benchmark (run by `scripts/bench.sh`): N retained ReportEventStream events
//! in sfsim (40% exports, every one by a holder of Export Reports, so all in scope),
//! drained from EARLIEST into SQLite by Tripline's connector (a connection authorized
//! through the real OAuth pages, a fresh database each run) and, alternating in the
//! same run, by the hand-written Python pipeline of `bench/peer.py` when
//! `--python PATH` names its interpreter. Prints each run, then min / median / max
//! and the ratio.
//!
//! With `--store postgres` Tripline stores into PostgreSQL instead: a private server
//! (the machine's PostgreSQL binaries, durable settings: fsync and full page writes
//! on) started by the benchmark, a new database each run.
//!
//! `--connections C` runs C connections of the org at once (each drains the whole
//! backlog into the one database): the aggregate rate is C × events / time.
//!
//! `ingest_bench [--events N] [--runs R] [--python PATH] [--store sqlite|postgres] [--connections C]`

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tripline::connector::RunSettings;
use tripline::store::Store;
use tripline::store::sqlite::SqliteStore;

struct Run {
    /// What the pipeline says it stored.
    stored: String,
    events_per_s: f64,
    cpu_s_per_million: f64,
    memory_mb: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (mut events, mut runs, mut python, mut postgres) = (1_000_000_usize, 1_usize, None::<String>, false);
    let mut connections = 1_usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{arg} needs a value"));
        match arg.as_str() {
            "--events" => events = value()?.parse()?,
            "--runs" => runs = value()?.parse()?,
            "--python" => python = Some(value()?),
            "--connections" => connections = value()?.parse::<usize>()?.max(1),
            "--store" => {
                postgres = match value()?.as_str() {
                    "sqlite" => false,
                    "postgres" => true,
                    other => anyhow::bail!("--store is sqlite or postgres, not {other:?}"),
                }
            }
            other => anyhow::bail!(
                "unknown argument {other:?} (ingest_bench [--events N] [--runs R] [--python PATH] [--store sqlite|postgres] [--connections C])"
            ),
        }
    }
    let server = if postgres { Some(tripline::store::postgres::private::PrivateServer::start(true)?) } else { None };
    let backlog = support::backlog(events).await?;
    let (org, app, published, last) = (&backlog.org, &backlog.app, backlog.published, &backlog.last);
    println!("{published} retained events, {runs} run(s) each, alternating");
    // The connector's memory: anonymous memory (heap, not mapped files) above what the
    // process held with sfsim's log loaded. Later runs can reuse heap an earlier run
    // freed, so the maximum over the runs is the figure.
    let baseline = support::anon_rss_mb();

    let (mut ours, mut peers) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn Store> = match &server {
            Some(server) => Arc::new(tripline::store::postgres::PostgresStore::connect(
                &server.database()?,
                tripline::store::secrets::SecretBox::from_key(&[1; 32])?,
            )?),
            None => Arc::new(SqliteStore::create(&dir.path().join("bench.db"))?),
        };
        let mut records = Vec::new();
        for c in 0..connections {
            records.push(support::connect(&*store, app, org, &format!("bench {c}")).await?);
        }
        let record = records[0].clone();
        let r = tripline_run(&store, &records, &backlog, baseline).await?;
        println!(
            "run {run} tripline ({}, {connections} connection(s)): {:.0} events/s, {:.1} CPU s per 1M (sfsim{} included), connector memory {:.0} MB ({})",
            if postgres { "PostgreSQL" } else { "SQLite" },
            r.events_per_s,
            r.cpu_s_per_million,
            if postgres { ", not the PostgreSQL server," } else { "" },
            r.memory_mb,
            r.stored
        );
        ours.push(r);
        drop(store);
        if let Some(python) = &python {
            let token = record.access_token.clone();
            let r = peer_run(python, org, &token, record.org_id.as_str(), last, published, dir.path()).await?;
            println!(
                "run {run} python:   {:.0} events/s, {:.1} CPU s per 1M (sfsim included), peer memory {:.0} MB ({})",
                r.events_per_s, r.cpu_s_per_million, r.memory_mb, r.stored
            );
            peers.push(r);
        }
    }
    summary("tripline", &ours);
    if !peers.is_empty() {
        summary("python", &peers);
        let median = |runs: &[Run]| median(runs.iter().map(|r| r.events_per_s).collect());
        println!("ratio (median tripline / median python): {:.2}x", median(&ours) / median(&peers));
    }
    println!(
        "  peak RSS of this process (sfsim with its retained log, connector, SQLite): {:.0} MB",
        support::peak_rss_mb()
    );
    Ok(())
}

/// The connectors from EARLIEST until each report checkpoint reaches the backlog's
/// last event.
async fn tripline_run(
    store: &Arc<dyn Store>,
    records: &[tripline::connection::ConnectionRecord],
    backlog: &support::Backlog,
    baseline_mb: f64,
) -> anyhow::Result<Run> {
    let published = backlog.published * records.len();
    let settings = RunSettings { monitor_from_ms: Some(0), ..Default::default() };
    let cpu_before = support::cpu_seconds();
    let started = Instant::now();
    let mut running = Vec::new();
    for record in records {
        running.push(tripline::connector::start(store.clone(), record, &backlog.app, settings.clone()).await?);
    }
    let mut anon_peak = baseline_mb;
    loop {
        anon_peak = anon_peak.max(support::anon_rss_mb());
        let mut all = true;
        for record in records {
            all &= backlog.caught_up(&**store, &record.id)?;
        }
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = support::cpu_seconds() - cpu_before;
    for r in running {
        r.stop().await;
    }
    let all = tripline::search::SearchQuery {
        from_ms: 0,
        to_ms: i64::MAX,
        filter: tripline::search::Filter::All(vec![]),
        sort: tripline::search::Sort::default(),
        page_size: 1,
        after: None,
        after_seq: None,
    };
    let files = store.count(&all, u64::MAX)?;
    Ok(Run {
        stored: format!("{files} file events stored"),
        events_per_s: published as f64 / elapsed,
        cpu_s_per_million: cpu / published as f64 * 1e6,
        memory_mb: anon_peak - baseline_mb,
    })
}

/// `bench/peer.py` on the same org, timed by itself from its first request.
async fn peer_run(
    python: &str,
    org: &sfsim::Running,
    token: &str,
    org_id: &str,
    last: &[u8],
    published: usize,
    dir: &std::path::Path,
) -> anyhow::Result<Run> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let hex = hex::encode(last);
    let cpu_before = support::cpu_seconds();
    let mut command = std::process::Command::new(python);
    command
        .arg(root.join("bench/peer.py"))
        .args(["--pubsub", &org.grpc_addr.to_string(), "--token", token, "--instance-url", org.base_url()])
        .args(["--tenant", org_id, "--until", &hex])
        .arg("--db")
        .arg(dir.join("peer.db"))
        .arg("--proto")
        .arg(root.join("proto"));
    let child = tokio::task::spawn_blocking(move || command.output()).await??;
    let sfsim_cpu = support::cpu_seconds() - cpu_before;
    anyhow::ensure!(child.status.success(), "the peer failed: {}", String::from_utf8_lossy(&child.stderr));
    let figures: serde_json::Value = serde_json::from_slice(&child.stdout)?;
    let number = |key: &str| figures[key].as_f64().ok_or_else(|| anyhow::anyhow!("the peer printed no {key}"));
    anyhow::ensure!(number("received")? as usize == published, "the peer read {} of {published}", figures["received"]);
    Ok(Run {
        stored: format!("{} export events stored", figures["stored"]),
        events_per_s: published as f64 / number("seconds")?,
        cpu_s_per_million: (number("cpu_seconds")? + sfsim_cpu) / published as f64 * 1e6,
        memory_mb: number("peak_rss_mb")?,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn summary(name: &str, runs: &[Run]) {
    let mut rates: Vec<f64> = runs.iter().map(|r| r.events_per_s).collect();
    rates.sort_by(f64::total_cmp);
    let cpu = median(runs.iter().map(|r| r.cpu_s_per_million).collect());
    let memory = runs.iter().map(|r| r.memory_mb).fold(0.0, f64::max);
    println!(
        "{name}: events/s min {:.0} / median {:.0} / max {:.0}; CPU s per 1M (median) {cpu:.1}; memory (max) {memory:.0} MB",
        rates[0],
        median(rates.clone()),
        rates[rates.len() - 1],
    );
}
