//! Forensic Search benchmark (run by `scripts/bench.sh`), in three processes so that
//! each peak memory figure is its own:
//!   search_bench load DB N   — N synthetic file events over 90 days (2,000 people)
//!   search_bench query DB    — p50/p99 of typical searches through `Store::search`
//!   search_bench export DB N — the newest N events as CSV, paged as the CLI does
//!   search_bench postgres DB — the same database moved into PostgreSQL (a private,
//!                              durable server) by `tripline migrate`'s copy, timed,
//!                              then the same searches and export there

mod support;

use std::io::Write;
use std::time::Instant;

use rusqlite::params;
use tripline::search::output::{Format, Writer};
use tripline::search::{Field, Filter, Op, SearchQuery, Sort};
use tripline::store::Store;
use tripline::store::sqlite::SqliteStore;

const DAY: i64 = 86_400_000;
const USERS: u64 = 2_000;
const REPORTS: [&str; 8] = [
    "Pipeline by Stage",
    "All Contacts with Email",
    "Q3 Closed Won Opportunities",
    "Top 100 Accounts",
    "Renewals Next 90 Days",
    "Customer Phone List",
    "Forecast by Rep",
    "Enterprise Pipeline Review",
];

struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn user(i: u64) -> (String, String) {
    (sfwire::id::SfId::generate(sfwire::id::prefix::USER, "5i", i).to_string(), format!("user{i}@bench.example"))
}

fn load(path: &str, n: u64) -> anyhow::Result<()> {
    drop(SqliteStore::create(path.as_ref())?); // the product's schema
    let mut db = rusqlite::Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "OFF")?;
    db.execute_batch("DROP INDEX file_events_time; DROP INDEX file_events_user_time;")?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut rng = Lcg(42);
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let tx = db.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO file_events (id, connection_id, observed_at, ingested_at, attribution, user_id, username, email, user_name,
                 report_id, report_name, report_type, export_format, operation, rows, chunk_count, file_name, source_ip, destination,
                 risk_score, severity, indicators, raw)
                 VALUES (?1, 'bench', ?2, ?2, 'login-session', ?3, ?4, ?4, ?5, '00O000000000001AAA', ?6, 'saved', 'CSV',
                 'ReportExported', ?7, 1, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            for _ in 0..100_000.min(n - done) {
                let i = done;
                done += 1;
                // Evenly over 90 days, oldest first, as ingest would append them.
                let at = now - 90 * DAY + (i as i64) * (90 * DAY) / n as i64;
                let u = rng.below(USERS);
                let (user_id, username) = user(u);
                let report = REPORTS[rng.below(REPORTS.len() as u64) as usize];
                let rows = if rng.below(10) == 0 { 10_000 + rng.below(200_000) } else { 1 + rng.below(5_000) } as i64;
                let corporate = rng.below(5) != 0;
                let ip = if corporate {
                    format!("10.20.{}.{}", rng.below(256), rng.below(256))
                } else {
                    format!("81.2.{}.{}", rng.below(256), rng.below(256))
                };
                let raw = format!(
                    "[{{\"EventIdentifier\":\"{i:032x}\",\"UserId\":\"{user_id}\",\"Username\":\"{username}\",\"Operation\":\"ReportExported\",\"Name\":\"{report}\",\"RowsProcessed\":{rows}.0,\"SourceIp\":\"{ip}\",\"EventDate\":{at}}}]"
                );
                insert.execute(params![
                    format!("{i:032x}"),
                    at,
                    user_id,
                    username,
                    format!("User {u}"),
                    report,
                    rows,
                    format!("report{at:013}.csv"),
                    ip,
                    if corporate { "corporate" } else { "unmonitored" },
                    if rows >= 10_000 { 3 } else { 0 },
                    if rows >= 10_000 { "moderate" } else { "no-risk" },
                    if rows >= 10_000 { "[\"large-export\"]" } else { "[]" },
                    raw,
                ])?;
            }
        }
        tx.commit()?;
    }
    let inserted = started.elapsed();
    db.execute_batch(
        "CREATE INDEX file_events_time ON file_events (observed_at);
         CREATE INDEX file_events_user_time ON file_events (user_id, observed_at);",
    )?;
    for u in 0..USERS {
        let (id, name) = user(u);
        db.execute(
            "INSERT OR IGNORE INTO known_users (user_id, username, email, name) VALUES (?1, ?2, ?2, ?3)",
            params![id, name, format!("User {u}")],
        )?;
    }
    db.execute_batch("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")?;
    println!(
        "load: {n} file events in {:.1} s, indexes built in {:.1} s more",
        inserted.as_secs_f64(),
        started.elapsed().as_secs_f64() - inserted.as_secs_f64()
    );
    Ok(())
}

fn query(path: &str) -> anyhow::Result<()> {
    searches(&SqliteStore::open(path.as_ref())?)
}

fn searches(store: &dyn Store) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut rng = Lcg(7);
    type Make = fn(&mut Lcg, i64) -> SearchQuery;
    let cases: [(&str, Make); 4] = [
        ("one user, last 30 days", |r, now| SearchQuery {
            from_ms: now - 30 * DAY,
            filter: Filter::Term { field: Field::Username, op: Op::Is(user(r.below(USERS)).1) },
            ..base_query()
        }),
        ("report name pattern, last 7 days", |r, now| SearchQuery {
            from_ms: now - 7 * DAY,
            filter: Filter::Term {
                field: Field::ReportName,
                op: Op::Matches(["*Pipeline*", "*Contacts*", "*Accounts*", "*Rep"][r.below(4) as usize].into()),
            },
            ..base_query()
        }),
        ("rows >= 10,000, last 90 days", |_, now| SearchQuery {
            from_ms: now - 90 * DAY,
            filter: Filter::Term { field: Field::Rows, op: Op::Greater(9_999.5) },
            ..base_query()
        }),
        ("first page, last 24 hours", |_, now| SearchQuery { from_ms: now - DAY, ..base_query() }),
    ];
    for (name, make) in cases {
        let mut times = Vec::new();
        for _ in 0..300 {
            let q = make(&mut rng, now);
            let started = Instant::now();
            let page = store.search(&q)?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(!page.events.is_empty(), "{name}: no results");
        }
        times.sort_by(f64::total_cmp);
        println!(
            "search {name:<34} p50 {:>7.2} ms   p99 {:>7.2} ms",
            times[times.len() / 2],
            times[times.len() * 99 / 100]
        );
    }
    Ok(())
}

fn base_query() -> SearchQuery {
    SearchQuery {
        from_ms: 0,
        to_ms: i64::MAX,
        filter: Filter::All(vec![]),
        sort: Sort::default(),
        page_size: 100,
        after: None,
        after_seq: None,
    }
}

fn export(path: &str, n: usize) -> anyhow::Result<()> {
    export_from(&SqliteStore::open(path.as_ref())?, n)
}

/// The SQLite database moved to PostgreSQL, then searched and exported there.
fn postgres(path: &str) -> anyhow::Result<()> {
    use tripline::store::postgres::PostgresStore;
    use tripline::store::secrets::SecretBox;
    let server = tripline::store::postgres::private::PrivateServer::start(true)?;
    let store = PostgresStore::connect(&server.database()?, SecretBox::from_key(&[1; 32])?)?;
    let started = Instant::now();
    let report = store
        .import_sqlite(path.as_ref(), &SecretBox::from_key(&[1; 32])?, |_| true)?
        .ok_or_else(|| anyhow::anyhow!("the copy stopped"))?;
    let rows: u64 = report.tables.iter().map(|(_, n)| n).sum();
    println!("migrate: {rows} rows into PostgreSQL, copied and verified in {:.1} s", started.elapsed().as_secs_f64());
    searches(&store)?;
    export_from(&store, 1_000_000)
}

fn export_from(store: &dyn Store, n: usize) -> anyhow::Result<()> {
    let out = std::io::BufWriter::new(std::fs::File::create("/dev/null")?);
    let mut writer = Writer::new(out, Format::Csv, None);
    writer.header()?;
    let mut query = SearchQuery { page_size: 1000, ..base_query() };
    let started = Instant::now();
    let mut rows = 0;
    let mut own_peak = support::anon_rss_mb();
    while rows < n {
        let page = store.search(&query)?;
        rows += page.events.len();
        writer.rows(&page.events)?;
        own_peak = own_peak.max(support::anon_rss_mb());
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let written = writer.finish()?;
    let s = started.elapsed().as_secs_f64();
    println!(
        "export: {written} events as CSV in {s:.2} s ({:.0} rows/s), peak RSS {:.0} MB \
         (the program's own memory, without the mapped database file: {own_peak:.0} MB)",
        written as f64 / s,
        support::peak_rss_mb()
    );
    std::io::stdout().flush()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: search_bench load DB N | query DB | export DB N | postgres DB";
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("load"), Some(db)) => load(db, args.get(3).and_then(|n| n.parse().ok()).unwrap_or(10_000_000)),
        (Some("query"), Some(db)) => query(db),
        (Some("export"), Some(db)) => export(db, args.get(3).and_then(|n| n.parse().ok()).unwrap_or(1_000_000)),
        (Some("postgres"), Some(db)) => postgres(db),
        _ => anyhow::bail!(usage),
    }
}
