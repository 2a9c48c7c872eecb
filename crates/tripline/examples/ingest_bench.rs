//! Catch-up benchmark (run by `scripts/bench.sh`): N retained ReportEventStream events
//! in sfsim, a connection authorized through the real OAuth pages, and the connector
//! draining them from EARLIEST into SQLite. Prints events/s end to end.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use salesforce::login::LoginHost;
use salesforce::oauth::MONITORING_SCOPE;
use tripline::connection::ScopeMode;
use tripline::connector::{NewConnection, RunSettings, SalesforceApp};
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
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("bench.db"))?);
    let (client_id, client_secret, user, password) = {
        let o = org.sim.org();
        let s = o.service_user.clone();
        (o.app.client_id.clone(), o.app.client_secret.clone(), o.username(&s), o.passwords[s.as_str()].clone())
    };
    let app = SalesforceApp {
        client_id,
        client_secret,
        redirect_uri: CALLBACK.into(),
        pubsub: salesforce::pubsub::Endpoint { url: format!("http://{}", org.grpc_addr), ca_pem: None },
        allowed_origins: vec![org.base_url().to_owned()],
    };
    let login = LoginHost::parse(org.base_url(), &app.allowed_origins)?;
    let start = app.oauth(login.clone(), reqwest::Client::new()).start(MONITORING_SCOPE);
    let back = sfsim::browser::sign_in_and_allow(&start.url, &user, &password).await?;
    let params: std::collections::HashMap<String, String> =
        url::Url::parse(&back)?.query_pairs().into_owned().collect();
    let new = NewConnection {
        display_name: "bench".into(),
        scope: ScopeMode::All,
        scope_lines: None,
        corporate_cidrs: vec!["10.20.0.0/16".into()],
    };
    let record = tripline::connector::finish_authorization(
        &*store,
        &app,
        &login,
        &new,
        &start,
        &params["state"],
        &params["code"],
    )
    .await?;

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
