//! The store's behaviour, independent of Salesforce, on both databases: each test of
//! the suite runs once on SQLite (`sqlite::...`) and once on a private PostgreSQL
//! server (`postgres::...`); a few file-level ones are SQLite's own.

use sfwire::id::{SfId, prefix};
use tripline::events::{Attribution, Destination, FileEvent};
use tripline::risk::Severity;
use tripline::search::{Field, Filter, Op, SearchQuery, Sort};
use tripline::store::sqlite::SqliteStore;
use tripline::store::{ExportChunk, ReportBatch, Store};

/// A store of either kind, and what it lives in (dropped after it).
struct Fixture {
    store: Box<dyn Store>,
    _home: Box<dyn std::any::Any>,
}

fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::create(&dir.path().join("t.db")).expect("store");
    Fixture { store: Box::new(store), _home: Box::new(dir) }
}

fn postgres() -> Fixture {
    let server = tripline::store::postgres::private::PrivateServer::start(false).expect("a private PostgreSQL");
    let url = server.database().expect("a database");
    let key = tripline::store::secrets::SecretBox::from_key(&[7; 32]).expect("key");
    let store = tripline::store::postgres::PostgresStore::connect(&url, key).expect("store");
    Fixture { store: Box::new(store), _home: Box::new(server) }
}

/// Each named test, on each database.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { let f = super::sqlite(); super::$name(&*f.store) })*
        }
        mod postgres {
            $(#[test] fn $name() { let f = super::postgres(); super::$name(&*f.store) })*
        }
    };
}

on_both!(
    keyset_paging_visits_every_result_once_in_order,
    dashboard_counts_take_each_stored_event_once,
    alerts_are_listed_newest_oldest_or_most_severe_first,
);

fn event(i: i64, at: i64, user: &str, rows: i64) -> ExportChunk {
    ExportChunk {
        event_identifier: format!("ev-{i}"),
        file_event: FileEvent {
            seq: 0,
            id: format!("fe-{i}"),
            connection_id: "c".into(),
            observed_at: at,
            ingested_at: at,
            attribution: Attribution::LoginSession,
            user_id: SfId::generate(prefix::USER, "0A", u64::from(user.as_bytes()[0])),
            username: Some(format!("{user}@x.example")),
            email: None,
            user_name: None,
            report_id: None,
            report_name: None,
            report_description: None,
            report_type: None,
            report_format: None,
            export_format: None,
            operation: None,
            rows,
            columns: None,
            column_count: None,
            queried_entities: None,
            execution_id: None,
            chunk_count: 1,
            file_name: "report.csv".into(),
            source_ip: None,
            browser: None,
            platform: None,
            city: None,
            country: None,
            session_key: None,
            destination: Destination::Corporate,
            risk_score: 1,
            severity: Severity::Low,
            indicators: Vec::new(),
            raw: vec![tripline::events::Evidence::of(&serde_json::json!({"EventIdentifier": format!("ev-{i}")}))],
        },
    }
}

fn keyset_paging_visits_every_result_once_in_order(store: &dyn Store) {
    // 60 events, many sharing a timestamp, two users.
    let exports: Vec<ExportChunk> =
        (0..60).map(|i| event(i, 1_000 + i / 4, if i % 3 == 0 { "ann" } else { "bob" }, i * 10)).collect();
    let batch = ReportBatch { exports, ..ReportBatch::default() };
    let outcome = store.apply_reports("c", "/event/ReportEventStream", &batch, Some(b"r1")).expect("apply");
    assert_eq!(outcome.new_file_events, 60);
    // Applying the same events again changes nothing.
    let again = store.apply_reports("c", "/event/ReportEventStream", &batch, Some(b"r2")).expect("apply");
    assert_eq!((again.new_file_events, again.duplicates), (0, 60));

    for (field, descending) in
        [(Field::ObservedAt, true), (Field::ObservedAt, false), (Field::Rows, true), (Field::Username, false)]
    {
        let mut query = SearchQuery {
            from_ms: 1_000,
            to_ms: 1_015,
            filter: Filter::All(vec![]),
            sort: Sort { field, descending },
            page_size: 7,
            after: None,
            after_seq: None,
        };
        let mut seen = Vec::new();
        loop {
            let page = store.search(&query).expect("page");
            seen.extend(page.events.iter().map(|e| (e.observed_at, e.rows, e.seq)));
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        // [1000, 1015) holds events 0..=59 (observed 1000..=1014).
        assert_eq!(seen.len(), 60, "{field:?} {descending}");
        let mut seqs: Vec<i64> = seen.iter().map(|s| s.2).collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 60, "no event twice ({field:?})");
        if field == Field::ObservedAt {
            let times: Vec<i64> = seen.iter().map(|s| s.0).collect();
            let mut sorted = times.clone();
            sorted.sort_unstable();
            if descending {
                sorted.reverse();
            }
            assert_eq!(times, sorted);
        }
    }

    let ann = SearchQuery {
        from_ms: 0,
        to_ms: 10_000,
        filter: Filter::Term { field: Field::Username, op: Op::Is("ANN@x.example".into()) },
        sort: Sort::default(),
        page_size: 100,
        after: None,
        after_seq: None,
    };
    assert_eq!(store.search(&ann).expect("search").events.len(), 20);
    let not_ann = SearchQuery {
        filter: Filter::Term { field: Field::Username, op: Op::IsNot("ann@x.example".into()) },
        ..ann.clone()
    };
    assert_eq!(store.search(&not_ann).expect("search").events.len(), 40);
    let big = SearchQuery {
        filter: Filter::Any(vec![
            Filter::Term { field: Field::Rows, op: Op::Greater(500.0) },
            Filter::Term { field: Field::Username, op: Op::Matches("a*".into()) },
        ]),
        ..ann
    };
    assert_eq!(store.search(&big).expect("search").events.len(), 9 + 20 - 3);
}

#[test]
fn a_version_1_database_reads_back_in_todays_types() {
    use tripline::connection::{ConnectionStatus, ProblemSource};
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("v1.db");
    {
        let db = rusqlite::Connection::open(&path).expect("db");
        db.execute_batch(include_str!("../migrations/sqlite/0001_init.sql")).expect("schema 1");
        db.pragma_update(None, "user_version", 1).expect("version");
        // What a version-1 server wrote for a connection that could not start.
        db.execute_batch(
            r#"INSERT INTO connections VALUES ('c1', 'Old', '00D000000000001AAA', 'https://x', 'https://y', 'all', '[]',
                   '[]', 'r', 'a', '005000000000001AAA', 'error',
                   '{"kind":"error","source":"network","message":"unreachable"}', 1000);
               INSERT INTO status_history VALUES ('c1', 2000, 'error',
                   '{"kind":"error","source":"network","message":"unreachable"}', 'server');"#,
        )
        .expect("old rows");
    }
    let store = SqliteStore::open(&path).expect("migrated");
    let history = store.status_history("c1").expect("history");
    assert_eq!(history[0].status, ConnectionStatus::Error);
    let detail = history[0].detail.as_ref().expect("detail");
    assert_eq!((detail.since, detail.problems[0].source), (2000, ProblemSource::Network));
    assert_eq!(detail.problems[0].message, "unreachable");
}

#[test]
fn stored_data_of_an_unknown_shape_is_an_error_not_a_default() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("t.db");
    let store = SqliteStore::create(&path).expect("store");
    let batch = ReportBatch { exports: vec![event(1, 1_000, "ann", 5)], ..ReportBatch::default() };
    store.apply_reports("c", "/event/ReportEventStream", &batch, Some(b"r1")).expect("apply");
    let db = rusqlite::Connection::open(&path).expect("db");
    db.execute("UPDATE file_events SET severity = 'apocalyptic'", []).expect("tamper");
    let query = SearchQuery {
        from_ms: 0,
        to_ms: i64::MAX,
        filter: Filter::All(vec![]),
        sort: Sort::default(),
        page_size: 10,
        after: None,
        after_seq: None,
    };
    let err = store.search(&query).expect_err("an unknown severity is refused");
    assert!(matches!(err, tripline::store::StoreError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("apocalyptic"), "{err}");
    // A chunk of that export cannot be merged into raw evidence that does not parse.
    db.execute("UPDATE file_events SET severity = 'low', raw = 'not json'", []).expect("tamper");
    let mut chunk = event(2, 1_000, "ann", 5);
    chunk.file_event.id = "fe-1".into();
    let batch = ReportBatch { exports: vec![chunk], ..ReportBatch::default() };
    let err = store.apply_reports("c", "/event/ReportEventStream", &batch, Some(b"r2")).expect_err("refused");
    assert!(matches!(err, tripline::store::StoreError::Corrupt(_)), "{err:?}");
    let raw: String = db.query_row("SELECT raw FROM file_events", [], |r| r.get(0)).expect("raw");
    assert_eq!(raw, "not json", "the stored evidence is not overwritten");
}

#[test]
fn a_missing_database_is_an_error_and_created_only_when_asked() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tipo.db");
    let err = SqliteStore::open(&path).err().expect("no database there");
    assert!(err.to_string().contains("tipo.db"), "says where it looked: {err}");
    assert!(!path.exists(), "nothing was created");
    drop(SqliteStore::create(&path).expect("created"));
    drop(SqliteStore::open(&path).expect("now it opens"));
}

#[test]
fn a_database_named_like_a_key_file_keeps_its_key_apart() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tripline.key");
    let store = SqliteStore::create(&path).expect("store");
    store.add_api_token("t", "hash", None, "tests").expect("a write");
    drop(store);
    assert!(dir.path().join("tripline.key.key").is_file(), "the key is beside, not inside, the database");
    drop(SqliteStore::open(&path).expect("reopens: the database is still a database"));
}

#[test]
fn a_key_file_of_the_earlier_name_is_moved_and_still_opens_the_tokens() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tripline.db");
    drop(SqliteStore::create(&path).expect("store"));
    // As an earlier Tripline named it.
    std::fs::rename(dir.path().join("tripline.db.key"), dir.path().join("tripline.key")).expect("rename");
    drop(SqliteStore::open(&path).expect("opens"));
    assert!(dir.path().join("tripline.db.key").is_file() && !dir.path().join("tripline.key").exists());
}

fn dashboard_counts_take_each_stored_event_once(store: &dyn Store) {
    let hour = 3_600_000;
    let base = 500_000 * hour;
    let events: Vec<ExportChunk> =
        (0..7).map(|i| event(i, base + i * hour / 2, ["ann", "bob"][i as usize % 2], 10 * (i + 1))).collect();
    let batch = ReportBatch { exports: events, ..Default::default() };
    store.apply_reports("c", "/event/ReportEventStream", &batch, None).expect("stored");
    // In small steps, as after a crash between them: each event counted once.
    let mut added = 0;
    loop {
        let n = store.aggregate(3).expect("aggregate");
        added += n;
        if n == 0 {
            break;
        }
    }
    assert_eq!(added, 7);
    let d = store.dashboard(base, base + 24 * hour, 5).expect("dashboard");
    assert_eq!(d.hours.iter().map(|h| h.corporate + h.unmonitored).sum::<u64>(), 7);
    assert_eq!(d.hours.iter().map(|h| h.rows).sum::<u64>(), (1..=7).map(|i| 10 * i).sum::<u64>());
    assert_eq!(d.hours.len(), 4, "two events an hour");
    assert_eq!(d.top_users.iter().map(|u| u.downloads).collect::<Vec<_>>(), [4, 3]);
    assert_eq!(d.top_users[0].label, "ann@x.example");
    assert_eq!(d.severities, [(Severity::Low, 7)]);
    // A range that leaves out the first hour.
    let later = store.dashboard(base + hour, base + 24 * hour, 5).expect("dashboard");
    assert_eq!(later.hours.iter().map(|h| h.corporate).sum::<u64>(), 5);
}

fn alerts_are_listed_newest_oldest_or_most_severe_first(store: &dyn Store) {
    use tripline::alerts::engine::{Contribution, Decision, NewAlert};
    use tripline::alerts::{AlertFilter, AlertOrder};
    let events: Vec<ExportChunk> = (0..4).map(|i| event(i, 1_000 + i, "ann", 10)).collect();
    store
        .apply_reports("c", "/event/ReportEventStream", &ReportBatch { exports: events, ..Default::default() }, None)
        .expect("stored");
    let severities = [Severity::Moderate, Severity::Critical, Severity::Low, Severity::Critical];
    let decisions: Vec<Decision> = severities
        .iter()
        .enumerate()
        .map(|(i, severity)| {
            let seq = i as i64 + 1;
            Decision::Open(NewAlert {
                id: format!("a{seq}"),
                rule_id: 1,
                rule_name: "r".into(),
                severity: *severity,
                channels: vec![],
                connection_id: "c".into(),
                user_id: "005000000000001AAA".into(),
                username: None,
                events: vec![Contribution { seq, at: 1_000 + seq, rows: 10, severity: Severity::Low }],
            })
        })
        .collect();
    store.apply_alerts(4, &decisions).expect("raised");
    let ids = |order| {
        let (alerts, total) = store.alerts(&AlertFilter { order, limit: 10, ..Default::default() }).expect("alerts");
        assert_eq!(total, 4);
        alerts.into_iter().map(|a| a.id).collect::<Vec<_>>()
    };
    assert_eq!(ids(AlertOrder::Newest), ["a4", "a3", "a2", "a1"]);
    assert_eq!(ids(AlertOrder::Oldest), ["a1", "a2", "a3", "a4"]);
    assert_eq!(ids(AlertOrder::Severity), ["a4", "a2", "a1", "a3"], "critical (newest first), moderate, low");
}
