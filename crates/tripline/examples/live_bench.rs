//! Live latency benchmark (run by `scripts/bench.sh`): sfsim's people sign in, run and
//! export reports at about 1,000 events/s while the connector streams them into SQLite;
//! every 50 ms one more export is published, and the time until Forensic Search finds
//! it is measured (polled on a read connection every 0.5 ms). Prints p50 / p99 / max.
//!
//! `live_bench [--probes N] [--rate EVENTS_PER_S]`

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tripline::connector::RunSettings;
use tripline::search::{Field, Filter, Op, SearchQuery};
use tripline::store::Store;
use tripline::store::sqlite::SqliteStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (mut probes, mut rate) = (400_usize, 1_000.0_f64);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{arg} needs a value"));
        match arg.as_str() {
            "--probes" => probes = value()?.parse()?,
            "--rate" => rate = value()?.parse()?,
            other => anyhow::bail!("unknown argument {other:?} (live_bench [--probes N] [--rate EVENTS_PER_S])"),
        }
    }
    let org =
        sfsim::start(sfsim::Config { users: 500, callback_urls: vec![support::CALLBACK.into()], ..Default::default() })
            .await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("live.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::create(&path)?);
    let app = tripline::emulated::app(&org, support::CALLBACK);
    let record = support::connect(&*store, &app, &org, "live").await?;
    let running = tripline::connector::start(store.clone(), &record, &app, RunSettings::default()).await?;
    // The probe exporter: someone holding Export Reports.
    let exporter = {
        let api = tripline::connector::api_for(&record, &app, reqwest::Client::new())?;
        tripline::connector::scope::export_holders(&api).await?.into_iter().next().expect("an exporter").user_id
    };
    let probe_user = exporter;
    // The background starts, and the connector settles into it.
    org.people.set_rate(rate);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let reader = SqliteStore::open(&path)?;
    let topic = org.sim.topic(sfsim::org::EventType::Report);
    let (first_replay, started) = (topic.latest_replay(), Instant::now());
    let mut latencies = Vec::with_capacity(probes);
    for i in 0..probes {
        let rows = 5_000 + i as u64;
        let request = sfsim::activity::ExportRequest { rows: Some(rows), ..Default::default() };
        let published_at = chrono::Utc::now().timestamp_millis();
        org.people.export(&org.sim, &probe_user, &request).map_err(|e| anyhow::anyhow!(e))?;
        let published = Instant::now();
        let query = SearchQuery {
            from_ms: published_at - 60_000,
            to_ms: i64::MAX,
            filter: Filter::All(vec![
                Filter::Term { field: Field::UserId, op: Op::Is(probe_user.to_string()) },
                Filter::Term { field: Field::Rows, op: Op::Is(rows.to_string()) },
            ]),
            sort: Default::default(),
            page_size: 1,
            after: None,
            after_seq: None,
        };
        loop {
            if !reader.search(&query)?.events.is_empty() {
                latencies.push(published.elapsed());
                break;
            }
            anyhow::ensure!(published.elapsed() < Duration::from_secs(10), "probe {i} not stored within 10 s");
            std::thread::sleep(Duration::from_micros(500));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let background = (topic.latest_replay() - first_replay) as f64 / started.elapsed().as_secs_f64();
    running.stop().await;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "live: {probes} exports published among {background:.0} report events/s of background activity; \
         publish to searchable: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.50),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
