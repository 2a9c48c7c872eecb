//! Console benchmark (run by `scripts/bench.sh`):
//!
//!   console_bench pages DB [--requests R]
//!       On a database of stored file events (`search_bench load`): the dashboard's
//!       counts built by the aggregator (timed), then each console page requested R
//!       times over HTTP by a signed-in admin; p50 / p95 / max of the server time
//!       (`Server-Timing` total, and its database part).
//!
//!   console_bench ingest [--events N] [--people P]
//!       Catch-up of N retained events by a connection of `tripline serve`'s server,
//!       once alone and once while P signed-in people search and open the dashboard
//!       in a loop; events/s of both, and the pages those people were served.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tripline::access::{Role, hash_password};
use tripline::connector::{RunSettings, SalesforceApp};
use tripline::server::Server;
use tripline::store::Store;
use tripline::store::sqlite::SqliteStore;

const PASSWORD: &str = "benchmark password";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    match args.first().map(String::as_str) {
        Some("pages") => {
            let db = args.get(1).ok_or_else(|| anyhow::anyhow!("console_bench pages DB"))?;
            pages(db, value("--requests").map_or(Ok(30), |v| v.parse())?).await
        }
        Some("ingest") => {
            ingest(
                value("--events").map_or(Ok(500_000), |v| v.parse())?,
                value("--people").map_or(Ok(20), |v| v.parse())?,
            )
            .await
        }
        _ => anyhow::bail!("console_bench pages DB [--requests R] | console_bench ingest [--events N] [--people P]"),
    }
}

/// A signed-in browser without a browser: cookies kept, redirects not followed.
async fn sign_in(base: &str, username: &str) -> anyhow::Result<reqwest::Client> {
    let http = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build()?;
    let r = http.post(format!("{base}/login")).form(&[("username", username), ("password", PASSWORD)]).send().await?;
    anyhow::ensure!(r.status() == reqwest::StatusCode::SEE_OTHER, "signing in as {username}: {}", r.status());
    Ok(http)
}

/// The server time of one page: (total ms, database ms), from `Server-Timing`.
async fn timed(http: &reqwest::Client, url: &str) -> anyhow::Result<(f64, f64, String)> {
    let r = http.get(url).send().await?;
    anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
    let timing = r.headers().get("server-timing").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let part = |name: &str| {
        timing
            .split(',')
            .find_map(|p| p.trim().strip_prefix(&format!("{name};dur=")).and_then(|v| v.parse::<f64>().ok()))
            .unwrap_or(f64::NAN)
    };
    Ok((part("total"), part("db"), r.text().await?))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The whole server on `store` (its stored connections running) on a free port, until
/// the returned sender is dropped.
async fn serve(
    store: Arc<dyn Store>,
    app: &SalesforceApp,
    settings: RunSettings,
) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let server = Server::start(store, app, settings).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    Ok((base, stop))
}

async fn pages(db: &str, requests: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db.as_ref())?);
    println!("open and migrate: {:.1} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let mut counted = 0;
    loop {
        let n = store.aggregate(100_000)?;
        counted += n;
        if n == 0 {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("dashboard counts: {counted} events aggregated in {secs:.1} s ({:.0} events/s)", counted as f64 / secs);
    if store.accounts()?.is_empty() {
        store.create_account("bench", Role::Admin, &hash_password(PASSWORD).map_err(anyhow::Error::msg)?, "bench")?;
    }
    let app = SalesforceApp {
        client_id: String::new(),
        client_secret: String::new(),
        redirect_uri: support::CALLBACK.into(),
        pubsub: salesforce::pubsub::Endpoint { url: String::new(), ca_pem: None },
        allowed_origins: Vec::new(),
    };
    let (base, _server) = serve(store.clone(), &app, RunSettings::default()).await?;
    let http = sign_in(&base, "bench").await?;
    // Ids to open: the newest event and its user.
    let newest = store
        .search(&tripline::search::SearchQuery {
            from_ms: 0,
            to_ms: i64::MAX,
            filter: tripline::search::Filter::All(Vec::new()),
            sort: Default::default(),
            page_size: 1,
            after: None,
            after_seq: None,
        })?
        .events
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the database has no events"))?;
    let first_page = timed(&http, &format!("{base}/search")).await?.2;
    let next = first_page
        .split("href=\"/search?")
        .filter_map(|s| s.split('"').next())
        .find(|link| link.contains("after="))
        .map(|link| link.replace("&amp;", "&"))
        .ok_or_else(|| anyhow::anyhow!("the first page has no next page"))?;
    let user = newest.username.clone().unwrap_or_default();
    let pages: Vec<(&str, String)> = vec![
        ("dashboard, 24 h", "/".into()),
        ("dashboard, 7 days", "/?range=7d".into()),
        ("dashboard, 30 days", "/?range=30d".into()),
        ("search, 7 days, first page (with its count)", "/search".into()),
        ("search, 7 days, page 2", format!("/search?{next}")),
        ("search, one user, 30 days", format!("/search?range=30d&g=A&f=username&o=is&v={user}")),
        ("search, report name pattern, 7 days", "/search?range=7d&g=A&f=report_name&o=matches&v=*Pipeline*".into()),
        ("search, rows > 100,000, 90 days", "/search?range=90d&g=A&f=rows&o=above&v=100000".into()),
        ("download detail", format!("/search/events/{}", newest.id)),
        ("users", "/users".into()),
        ("users by downloads", "/users?sort=downloads".into()),
        ("one user's page", format!("/users/{}", newest.user_id)),
        ("data connections", "/admin/connections".into()),
        ("audit log", "/admin/audit".into()),
    ];
    println!("{requests} requests per page, one at a time; server time from Server-Timing (ms)");
    println!("{:<46} {:>8} {:>8} {:>8} {:>10}", "page", "p50", "p95", "max", "db p95");
    for (name, path) in &pages {
        let (mut totals, mut dbs) = (Vec::new(), Vec::new());
        for _ in 0..requests {
            let (total, db, _) = timed(&http, &format!("{base}{path}")).await?;
            totals.push(total);
            dbs.push(db);
        }
        totals.sort_by(f64::total_cmp);
        dbs.sort_by(f64::total_cmp);
        println!(
            "{name:<46} {:>8.1} {:>8.1} {:>8.1} {:>10.1}",
            percentile(&totals, 0.5),
            percentile(&totals, 0.95),
            totals[totals.len() - 1],
            percentile(&dbs, 0.95)
        );
    }
    Ok(())
}

async fn ingest(events: usize, people: usize) -> anyhow::Result<()> {
    let backlog = support::backlog(events).await?;
    let (org, app, published) = (&backlog.org, &backlog.app, backlog.published);
    println!("{published} retained events; catch-up alone, then with {people} people using the console");
    for with_people in [0, people] {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::create(&dir.path().join("bench.db"))?);
        let record = support::connect(&*store, app, org, "bench").await?;
        store.create_account("bench", Role::Admin, &hash_password(PASSWORD).map_err(anyhow::Error::msg)?, "bench")?;
        let settings = RunSettings { monitor_from_ms: Some(0), ..Default::default() };
        let started = Instant::now();
        let (base, server) = serve(store.clone(), app, settings).await?;
        // The people: each signs in, then searches, pages and opens the dashboard.
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let slowest = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for i in 0..with_people {
            let (base, stop, served, slowest) = (base.clone(), stop.clone(), served.clone(), slowest.clone());
            tasks.push(tokio::spawn(async move {
                let http = sign_in(&base, "bench").await?;
                let paths = [
                    "/search".to_owned(),
                    "/search?range=24h&g=A&f=rows&o=above&v=1000".to_owned(),
                    "/".to_owned(),
                    format!(
                        "/search?range=24h&g=A&f=report_name&o=matches&v=*{}*",
                        ["Pipeline", "Accounts", "Rep"][i % 3]
                    ),
                    "/users".to_owned(),
                ];
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    let (total, _, _) = timed(&http, &format!("{base}{}", paths[n % paths.len()])).await?;
                    served.fetch_add(1, Ordering::Relaxed);
                    slowest.fetch_max((total * 1000.0) as u64, Ordering::Relaxed);
                    n += 1;
                }
                anyhow::Ok(())
            }));
        }
        while !backlog.caught_up(&*store, &record.id)? {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await??;
        }
        drop(server);
        let pages = served.load(Ordering::Relaxed);
        println!(
            "{with_people:>3} people: {:.0} events/s ({published} in {elapsed:.1} s); {pages} pages served ({:.0}/s), slowest {:.0} ms server time",
            published as f64 / elapsed,
            pages as f64 / elapsed,
            slowest.load(Ordering::Relaxed) as f64 / 1000.0
        );
    }
    Ok(())
}
