//! The store's behaviour, independent of Salesforce: paging visits every result once.

use tripline::search::{Field, Filter, Op, SearchQuery, Sort};
use tripline::store::sqlite::SqliteStore;
use tripline::store::{ExportChunk, FileEventRow, ReportBatch, Store};

fn event(i: i64, at: i64, user: &str, rows: i64) -> ExportChunk {
    ExportChunk {
        event_identifier: format!("ev-{i}"),
        file_event: FileEventRow {
            id: format!("fe-{i}"),
            connection_id: "c".into(),
            observed_at: at,
            attribution: "login-session".into(),
            user_id: format!("005{user}"),
            username: Some(format!("{user}@x.example")),
            rows,
            chunk_count: 1,
            file_name: "report.csv".into(),
            destination: "corporate".into(),
            severity: "low".into(),
            raw: vec![serde_json::json!({"EventIdentifier": format!("ev-{i}")})],
            ..FileEventRow::default()
        },
    }
}

#[test]
fn keyset_paging_visits_every_result_once_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&dir.path().join("t.db")).expect("store");
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
