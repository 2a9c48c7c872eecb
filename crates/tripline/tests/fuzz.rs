//! Fuzzing of what reaches Tripline from outside, with proptest: API query bodies (as
//! JSON and as query trees run against a real store), page cursors, and the scope CSV
//! reader. Nothing may panic, and nothing may fail but with a clear refusal.
//!
//! `PROPTEST_CASES` sets how many cases each property runs (the test script keeps the
//! default small; `scripts/fuzz.sh` runs many more).

use proptest::prelude::*;
use serde_json::{Value, json};
use tripline::connector::scope_csv::{CsvKind, ScopeCsv};
use tripline::search::{Field, Filter, Op, SearchQuery, Sort};
use tripline::store::sqlite::SqliteStore;
use tripline::store::{Store, StoreError};

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Any JSON value, nested a few levels, with the API's own words mixed in.
fn json_value() -> impl Strategy<Value = Value> {
    let words = prop::sample::select(vec![
        "from_ms",
        "to_ms",
        "filter",
        "sort",
        "page_size",
        "after",
        "after_seq",
        "all",
        "any",
        "term",
        "field",
        "op",
        "value",
        "descending",
        "rows",
        "username",
        "is",
        "any_of",
        "matches",
        "greater",
        "within_last",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        words.clone().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((words.clone(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

fn op() -> impl Strategy<Value = Op> {
    let text = ".{0,8}";
    prop_oneof![
        text.prop_map(Op::Is),
        text.prop_map(Op::IsNot),
        prop::collection::vec(text, 0..4).prop_map(Op::AnyOf),
        any::<bool>().prop_map(Op::Exists),
        any::<f64>().prop_map(Op::Greater),
        any::<f64>().prop_map(Op::Less),
        any::<i64>().prop_map(Op::WithinLast),
        "[a-z*?%_\\\\]{0,8}".prop_map(Op::Matches),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    let term = (prop::sample::select(Field::ALL.to_vec()), op()).prop_map(|(field, op)| Filter::Term { field, op });
    term.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Filter::All),
            prop::collection::vec(inner, 0..5).prop_map(Filter::Any),
        ]
    })
}

fn query() -> impl Strategy<Value = SearchQuery> {
    (
        any::<i64>(),
        any::<i64>(),
        filter(),
        prop::sample::select(Field::ALL.to_vec()),
        any::<bool>(),
        0usize..20,
        prop::option::of(".{0,16}"),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(from_ms, to_ms, filter, field, descending, page_size, after, after_seq)| SearchQuery {
            from_ms,
            to_ms,
            filter,
            sort: Sort { field, descending },
            page_size,
            after,
            after_seq,
        })
}

/// A store with a few file events to run queries against.
fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::create(&dir.path().join("fuzz.db")).expect("store");
    (dir, store)
}

/// A search either answers or refuses the query as invalid; anything else (a SQL
/// error, a panic) is a defect.
fn answers_or_refuses(store: &SqliteStore, query: &SearchQuery) -> Result<(), TestCaseError> {
    match store.search(query) {
        Ok(_) | Err(StoreError::InvalidQuery(_)) => Ok(()),
        Err(other) => Err(TestCaseError::fail(format!("{query:?}: {other:?}"))),
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn any_json_body_parses_or_is_refused_with_a_message(body in json_value()) {
        if let Err(e) = serde_json::from_value::<SearchQuery>(body) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn any_query_tree_runs_or_is_refused_as_invalid(query in query()) {
        let (_dir, store) = store();
        answers_or_refuses(&store, &query)?;
        let mut sane = query.clone();
        sane.from_ms = 0;
        sane.to_ms = i64::MAX;
        sane.page_size = 10;
        answers_or_refuses(&store, &sane)?;
    }

    #[test]
    fn any_page_cursor_pages_or_is_refused(cursor in ".{0,40}", field in prop::sample::select(Field::ALL.to_vec())) {
        let (_dir, store) = store();
        let query = SearchQuery {
            from_ms: 0,
            to_ms: i64::MAX,
            filter: Filter::All(Vec::new()),
            sort: Sort { field, descending: true },
            page_size: 5,
            after: Some(cursor),
            after_seq: None,
        };
        answers_or_refuses(&store, &query)?;
    }

    #[test]
    fn any_scope_file_is_read_or_refused_by_line(bytes in prop::collection::vec(any::<u8>(), 0..400), users: bool) {
        let kind = if users { CsvKind::Users } else { CsvKind::Groups };
        let lines = bytes.iter().filter(|b| **b == b'\n').count() + 1;
        match ScopeCsv::parse(&bytes, kind) {
            Ok(csv) => {
                prop_assert!(!csv.entries.is_empty());
                for (line, entry) in &csv.entries {
                    prop_assert!(*line >= 1 && *line <= lines);
                    prop_assert!(!entry.is_empty() && !entry.chars().any(char::is_control));
                }
            }
            Err(e) => {
                prop_assert!(!e.problems.is_empty());
                prop_assert!(e.problems.iter().all(|(line, message)| *line <= lines && !message.is_empty()));
            }
        }
    }

    #[test]
    fn text_shaped_like_a_scope_file_is_read_or_refused(
        rows in prop::collection::vec(prop_oneof!["[a-z.]{1,8}@[a-z]{1,5}\\.com", "\"[^\"]{0,6}\"(,x)?", ".{0,10}"], 0..12),
    ) {
        let text = rows.join("\n");
        match ScopeCsv::parse(text.as_bytes(), CsvKind::Users) {
            Ok(csv) => prop_assert!(csv.entries.iter().all(|(_, e)| e.contains('@'))),
            Err(e) => prop_assert!(!e.problems.is_empty()),
        }
    }
}

#[test]
fn the_generators_reach_valid_queries() {
    // The fuzzing is only worth something if many generated queries are valid ones.
    let valid = json!({ "from_ms": 0, "to_ms": 5, "filter": { "any": [
        { "term": { "field": "rows", "op": "greater", "value": 3 } },
        { "term": { "field": "username", "op": "matches", "value": "a*" } } ] } });
    let query: SearchQuery = serde_json::from_value(valid).expect("valid");
    let (_dir, store) = store();
    assert!(store.search(&query).is_ok());
}
