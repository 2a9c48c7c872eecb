//! Catch-up benchmark (run by `scripts/bench.sh`): N retained ReportEventStream events
//! in sfsim, a connection authorized through the real OAuth pages, and the connector
//! draining them from EARLIEST into SQLite. Prints events/s end to end.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tripline::connection::ScopeMode;
use tripline::connector::{NewConnection, RunSettings};
use tripline::store::Store;
use tripline::store::sqlite::SqliteStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    const CALLBACK: &str = "http://127.0.0.1:9/callback";
    let org =
        sfsim::start(sfsim::Config { users: 500, callback_urls: vec![CALLBACK.into()], ..Default::default() }).await?;
    org.sim.org().settings.set(sfsim::org::EventType::Report, None, Some(false));
    let sim = org.sim.clone();
    let published = tokio::task::spawn_blocking(move || sfsim::activity::preload(&sim, count, 3_600_000, 9)).await?;

    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::create(&dir.path().join("bench.db"))?);
    let app = tripline::emulated::app(&org, CALLBACK);
    let new = NewConnection {
        display_name: "bench".into(),
        scope: ScopeMode::All,
        scope_lines: None,
        corporate_cidrs: vec!["10.20.0.0/16".into()],
    };
    let record = tripline::emulated::authorize(&*store, &app, &org, &new).await?;

    let last = org.sim.topic(sfsim::org::EventType::Report).latest_replay().to_be_bytes().to_vec();
    let settings = RunSettings { monitor_from_ms: Some(0), ..Default::default() };
    let started = Instant::now();
    let running = tripline::connector::start(store.clone(), &record, &app, settings).await?;
    loop {
        let at = store.checkpoint(&record.id, sfwire::pubsub::REPORT_TOPIC)?;
        if at == Some(tripline::store::Checkpoint::At(last.clone())) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    running.stop().await;
    let stored = store
        .search(&tripline::search::SearchQuery {
            from_ms: 0,
            to_ms: i64::MAX,
            filter: tripline::search::Filter::All(vec![]),
            sort: Default::default(),
            page_size: 1,
            after: None,
            after_seq: None,
        })?
        .events
        .len();
    println!(
        "catch-up: {published} retained events from EARLIEST into SQLite in {:.2} s ({:.0} events/s end to end)",
        elapsed.as_secs_f64(),
        published as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  out-of-scope exports skipped: {}, stored file events: {}",
        store.counter(&record.id, "out_of_scope_exports")?,
        if stored > 0 { "yes" } else { "none" }
    );
    println!("  peak RSS (sfsim, connector and SQLite in one process): {:.0} MB", support::peak_rss_mb());
    Ok(())
}
