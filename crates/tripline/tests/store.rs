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
    /// Opens the same database again, as a second node would.
    again: Box<dyn Fn() -> Box<dyn Store>>,
    _home: Box<dyn std::any::Any>,
}

fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("t.db");
    let store = SqliteStore::create(&path).expect("store");
    let again = Box::new(move || Box::new(SqliteStore::open(&path).expect("store")) as Box<dyn Store>);
    Fixture { store: Box::new(store), again, _home: Box::new(dir) }
}

fn postgres() -> Fixture {
    let server = tripline::store::postgres::private::PrivateServer::start(false).expect("a private PostgreSQL");
    let url = server.database().expect("a database");
    let key = tripline::store::secrets::SecretBox::from_key(&[7; 32]).expect("key");
    let store = tripline::store::postgres::PostgresStore::connect(&url, key).expect("store");
    let again = Box::new(move || {
        let key = tripline::store::secrets::SecretBox::from_key(&[7; 32]).expect("key");
        Box::new(tripline::store::postgres::PostgresStore::connect(&url, key).expect("store")) as Box<dyn Store>
    });
    Fixture { store: Box::new(store), again, _home: Box::new(server) }
}

/// Each named test, on each database.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { let f = super::sqlite(); super::$name(&f) })*
        }
        mod postgres {
            $(#[test] fn $name() { let f = super::postgres(); super::$name(&f) })*
        }
    };
}

on_both!(
    keyset_paging_visits_every_result_once_in_order,
    dashboard_counts_take_each_stored_event_once,
    alerts_are_listed_newest_oldest_or_most_severe_first,
    exports_are_stored_once_and_their_chunks_merge_with_the_checkpoint,
    logins_make_sessions_once_and_checkpoints_say_where_a_stream_stands,
    a_lost_window_is_one_gap_until_it_is_re_read,
    names_are_unique_in_any_case,
    connections_keep_their_tokens_sealed_and_their_history,
    console_accounts_sessions_tokens_and_the_audit_log,
    rules_alerts_and_the_outbox,
    a_node_that_lost_its_lease_cannot_write,
    downloads_older_than_the_retention_are_removed_with_their_hours,
);

const TOPIC: &str = "/event/ReportEventStream";

fn all_events(from_ms: i64, to_ms: i64) -> SearchQuery {
    SearchQuery {
        from_ms,
        to_ms,
        filter: Filter::All(vec![]),
        sort: Sort::default(),
        page_size: 100,
        after: None,
        after_seq: None,
    }
}

fn exports_are_stored_once_and_their_chunks_merge_with_the_checkpoint(f: &Fixture) {
    let store = &*f.store;
    use tripline::store::Checkpoint;
    let first = event(1, 1_000, "ann", 5);
    let batch = ReportBatch {
        exports: vec![first.clone()],
        out_of_scope: vec!["ev-outside".into()],
        quarantined: vec![tripline::connection::QuarantinedEvent {
            topic: TOPIC.into(),
            key: "k1".into(),
            received_at: 900,
            reason: "undecodable".into(),
            evidence: serde_json::json!({"payload": "AAE="}),
        }],
    };
    let outcome = store.apply_reports("c", TOPIC, &batch, Some(b"r1")).expect("apply");
    assert_eq!((outcome.new_file_events, outcome.out_of_scope), (1, 1));
    assert_eq!(outcome.new_seqs.len(), 1);
    // The second chunk of the same export (same file event id, another event).
    let mut second = event(2, 1_001, "ann", 9);
    second.file_event.id = first.file_event.id.clone();
    let batch = ReportBatch { exports: vec![second.clone()], ..ReportBatch::default() };
    let outcome = store.apply_reports("c", TOPIC, &batch, Some(b"r2")).expect("apply");
    assert_eq!((outcome.new_file_events, outcome.merged_chunks), (0, 1));
    // Replays of both chunks, and of what was out of scope or kept aside, add nothing.
    let replay = ReportBatch {
        exports: vec![first, second],
        out_of_scope: vec!["ev-outside".into()],
        quarantined: store.quarantine("c", 10).expect("kept aside").1,
    };
    let outcome = store.apply_reports("c", TOPIC, &replay, Some(b"r3")).expect("apply");
    assert_eq!((outcome.new_file_events, outcome.merged_chunks, outcome.duplicates), (0, 0, 2));
    assert_eq!(store.counter("c", "out_of_scope_exports").expect("counter"), 1);
    assert_eq!(store.quarantine("c", 10).expect("kept aside").0, 1);
    assert_eq!(store.checkpoint("c", TOPIC).expect("checkpoint"), Some(Checkpoint::At(b"r3".to_vec())));
    let stored = store.file_event("fe-1").expect("read").expect("stored");
    assert_eq!((stored.chunk_count, stored.rows, stored.raw.len()), (2, 9, 2));
    assert_eq!(store.search(&all_events(0, 10_000)).expect("search").events.len(), 1);
    let user = stored.user_id.clone();
    assert!(store.user_has_file_events("c", &user).expect("first export"));
    assert!(!store.user_has_file_events("other", &user).expect("per connection"));
    // A backfill (no checkpoint) leaves the stream's checkpoint where it was.
    let backfill = ReportBatch { exports: vec![event(3, 1_002, "bob", 1)], ..ReportBatch::default() };
    store.apply_reports("c", TOPIC, &backfill, None).expect("apply");
    assert_eq!(store.checkpoint("c", TOPIC).expect("checkpoint"), Some(Checkpoint::At(b"r3".to_vec())));
    // Chunks of a new export and a replay within one delivery: one file event.
    let (a, mut b) = (event(10, 2_000, "ann", 3), event(11, 2_001, "ann", 8));
    b.file_event.id = a.file_event.id.clone();
    let together = ReportBatch { exports: vec![event(12, 2_002, "bob", 1), a.clone(), b, a], ..ReportBatch::default() };
    let outcome = store.apply_reports("c", TOPIC, &together, Some(b"r4")).expect("apply");
    assert_eq!((outcome.new_file_events, outcome.merged_chunks, outcome.duplicates), (2, 1, 1));
    assert_eq!(outcome.new_seqs.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1], "by their first chunk");
    assert!(outcome.new_seqs[0].1 < outcome.new_seqs[1].1, "numbered in delivery order");
    let merged = store.file_event("fe-10").expect("read").expect("stored");
    assert_eq!((merged.chunk_count, merged.rows, merged.raw.len()), (2, 8, 2));
    // Stored order is `seq` order.
    let seqs: Vec<i64> = store.events_after(0, 10).expect("events").iter().map(|e| e.seq).collect();
    assert_eq!(seqs.len(), 4);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
}

fn logins_make_sessions_once_and_checkpoints_say_where_a_stream_stands(f: &Fixture) {
    let store = &*f.store;
    use tripline::people::{LoginRecord, Session};
    use tripline::store::Checkpoint;
    const LOGINS: &str = "/event/LoginEventStream";
    assert_eq!(store.checkpoint("c", LOGINS).expect("none yet"), None);
    store.mark_restart("c", LOGINS, 5_000).expect("restart");
    assert_eq!(store.checkpoint("c", LOGINS).expect("restarted"), Some(Checkpoint::RestartedAt(5_000)));
    let user = SfId::generate(prefix::USER, "0A", 1);
    let session = |key: &str, at: i64| Session {
        session_key: key.into(),
        login_key: Some(format!("lk-{key}")),
        user_id: user.clone(),
        username: Some("ann@x.example".into()),
        source_ip: Some("10.0.0.1".into()),
        browser: Some("Chrome".into()),
        platform: None,
        city: None,
        country: None,
        login_at: at,
    };
    let login = LoginRecord {
        event_identifier: "l1".into(),
        logout: false,
        success: true,
        status: Some("Success".into()),
        session: session("s1", 6_000),
    };
    assert_eq!(store.apply_logins("c", LOGINS, std::slice::from_ref(&login), &[], b"p1").expect("apply"), 1);
    assert_eq!(store.apply_logins("c", LOGINS, &[login], &[], b"p2").expect("replay"), 0);
    assert_eq!(store.checkpoint("c", LOGINS).expect("moved"), Some(Checkpoint::At(b"p2".to_vec())));
    let found = store.session("c", "s1").expect("read").expect("a session");
    assert_eq!((found.login_at, found.source_ip.as_deref()), (6_000, Some("10.0.0.1")));
    assert_eq!(store.session("other", "s1").expect("read"), None, "sessions are per connection");
    assert_eq!(store.person_sessions(user.as_str(), 5).expect("sessions").len(), 1);
}

fn a_lost_window_is_one_gap_until_it_is_re_read(f: &Fixture) {
    let store = &*f.store;
    store.record_gap("c", TOPIC, 1_000, None, "streaming off", false).expect("open gap");
    store.record_gap("c", TOPIC, 1_000, Some(2_000), "streaming off", false).expect("same window");
    store.record_gap("c", TOPIC, 5_000, Some(6_000), "lost", false).expect("another");
    assert_eq!(store.gaps("c").expect("gaps").len(), 2);
    store.resolve_gaps("c", TOPIC, 0, 3_000).expect("re-read");
    let gaps = store.gaps("c").expect("gaps");
    assert_eq!((gaps[0].from_ms, gaps[0].to_ms, gaps[0].recovered), (1_000, Some(2_000), true));
    assert!(gaps[0].reason.contains("re-read later"), "{}", gaps[0].reason);
    assert!(!gaps[1].recovered);
}

fn connection(id: &str, name: &str) -> tripline::connection::ConnectionRecord {
    tripline::connection::ConnectionRecord {
        id: id.into(),
        display_name: name.into(),
        org_id: SfId::generate(prefix::ORGANIZATION, "0A", 1),
        instance_url: "https://x.my.salesforce.com".into(),
        login_url: "https://x.my.salesforce.com".into(),
        scope: tripline::connection::ScopeMode::All,
        corporate_cidrs: vec!["10.0.0.0/8".into()],
        refresh_token: "refresh-secret".into(),
        access_token: "access-secret".into(),
        service_user_id: SfId::generate(prefix::USER, "0A", 9),
        status: tripline::connection::ConnectionStatus::Initializing,
        status_detail: None,
        created_at: 1,
        scope_scanned_at: None,
        reconciled_to: None,
    }
}

fn conflict<T: std::fmt::Debug>(result: tripline::store::Result<T>) {
    assert!(matches!(result, Err(tripline::store::StoreError::Conflict(_))), "{result:?}");
}

fn names_are_unique_in_any_case(f: &Fixture) {
    let store = &*f.store;
    use tripline::access::Role;
    use tripline::alerts::{RuleDraft, Target, WebhookBody};
    store.create_connection(&connection("c1", "Production")).expect("added");
    conflict(store.create_connection(&connection("c2", "PRODUCTION")));
    store.create_account("Admin", Role::Admin, "hash", "tests").expect("account");
    conflict(store.create_account("admin", Role::Viewer, "hash", "tests"));
    assert_eq!(store.account_credentials("ADMIN").expect("read").expect("found").0.username, "Admin");
    store.save_search("Big exports", "rows>1000", "admin").expect("saved");
    conflict(store.save_search("big EXPORTS", "rows>1", "admin"));
    store.add_api_token("ci", "h1", None, "admin").expect("token");
    conflict(store.add_api_token("ci", "h2", None, "admin"));
    let draft = RuleDraft {
        name: "Mass export".into(),
        description: String::new(),
        severity: Severity::High,
        conditions: Default::default(),
        channels: vec![],
        suppress_minutes: 60,
    };
    store.create_rule(&draft, "admin").expect("rule");
    conflict(store.create_rule(&RuleDraft { name: "MASS EXPORT".into(), ..draft }, "admin"));
    let target = Target::Webhook { url: "http://127.0.0.1:9/hook".into(), secret: "s".into(), body: WebhookBody::Json };
    store.save_channel(None, "SOC", &target, true, "admin").expect("channel");
    conflict(store.save_channel(None, "soc", &target, true, "admin"));
    // Nothing of the refused writes was kept.
    assert_eq!(store.connections().expect("list").len(), 1);
    assert_eq!(store.accounts().expect("list").len(), 1);
    assert_eq!(store.saved_searches().expect("list").len(), 1);
    assert_eq!(store.api_tokens().expect("list").len(), 1);
    assert_eq!(store.rules().expect("list").len(), 1);
    assert_eq!(store.channels().expect("list").len(), 1);
}

fn connections_keep_their_tokens_sealed_and_their_history(f: &Fixture) {
    let store = &*f.store;
    use tripline::connection::{ConnectionStatus, Problem, ProblemSource, StatusDetail};
    store.create_connection(&connection("c1", "Production")).expect("added");
    let read = store.connection("c1").expect("read");
    assert_eq!((read.refresh_token.as_str(), read.access_token.as_str()), ("refresh-secret", "access-secret"));
    store.set_tokens("c1", "access-2", None).expect("refreshed");
    store.set_tokens("c1", "access-3", Some("refresh-2")).expect("rotated");
    let read = store.connection("c1").expect("read");
    assert_eq!((read.refresh_token.as_str(), read.access_token.as_str()), ("refresh-2", "access-3"));
    let detail = StatusDetail { problems: vec![Problem::error(ProblemSource::Network, "unreachable")], since: 7 };
    store.set_status("c1", ConnectionStatus::Error, Some(&detail), "server").expect("status");
    store.set_status("c1", ConnectionStatus::Monitoring, None, "server").expect("status");
    let history = store.status_history("c1").expect("history");
    assert_eq!(
        history.iter().map(|h| h.status).collect::<Vec<_>>(),
        [ConnectionStatus::Error, ConnectionStatus::Monitoring]
    );
    assert_eq!(history[0].detail.as_ref().expect("detail").problems[0].source, ProblemSource::Network);
    store.set_corporate_ranges(&["192.168.0.0/16".into()], "admin").expect("ranges");
    assert_eq!(store.corporate_ranges().expect("ranges"), Some(vec!["192.168.0.0/16".to_owned()]));
    assert_eq!(store.connection("c1").expect("read").corporate_cidrs, ["192.168.0.0/16"]);
    store.reauthorize("c1", "refresh-3", "access-4", "https://y.my.salesforce.com", "admin").expect("again");
    let read = store.connection("c1").expect("read");
    assert_eq!(
        (read.status, read.instance_url.as_str()),
        (ConnectionStatus::Initializing, "https://y.my.salesforce.com")
    );
    assert!(matches!(store.connection("nope"), Err(tripline::store::StoreError::NotFound(_))));
    store.delete_connection("c1", "admin").expect("removed");
    assert!(store.connections().expect("list").is_empty());
    assert!(store.status_history("c1").expect("history").is_empty());
}

fn console_accounts_sessions_tokens_and_the_audit_log(f: &Fixture) {
    let store = &*f.store;
    use tripline::access::Role;
    let ann = store.create_account("ann", Role::Analyst, "hash-1", "setup").expect("account");
    let expires = 4_000_000_000_000; // in 2096
    store.create_console_session("t1", ann.id, "csrf", expires).expect("session");
    store.create_console_session("t2", ann.id, "csrf", expires).expect("session");
    assert_eq!(store.console_session("t1", 5_000).expect("read").expect("live").account.role, Role::Analyst);
    assert!(store.console_session("t1", expires).expect("read").is_none(), "expired");
    store.end_console_session("t1").expect("signed out");
    assert!(store.console_session("t1", 5_000).expect("read").is_none());
    store.set_account_role(ann.id, Role::Admin, "setup").expect("role");
    store.set_account_password(ann.id, "hash-2", "setup").expect("password");
    assert!(store.console_session("t2", 5_000).expect("read").is_none(), "a new password ends every session");
    let (account, hash) = store.account_credentials("ann").expect("read").expect("found");
    assert_eq!((account.role, hash.as_str()), (Role::Admin, "hash-2"));
    store.add_api_token("ci", "h1", Some(99), "ann").expect("token");
    store.touch_api_token("ci", 50).expect("used");
    let token = store.api_token("h1").expect("read").expect("found");
    assert_eq!((token.last_used_at, token.expires_at, token.revoked_at), (Some(50), Some(99), None));
    store.revoke_api_token("ci", "ann").expect("revoked");
    assert!(store.api_token("h1").expect("read").expect("kept").revoked_at.is_some());
    store.delete_account(ann.id, "setup").expect("removed");
    assert!(store.accounts().expect("list").is_empty());
    let actions: Vec<String> = store.audit_log(20).expect("log").into_iter().map(|e| e.action).collect();
    assert_eq!(actions[0], "account.delete", "newest first: {actions:?}");
    for done in
        ["account.create (analyst)", "account.role (admin)", "account.password", "api-token.create", "api-token.revoke"]
    {
        assert!(actions.iter().any(|a| a == done), "{done} in {actions:?}");
    }
}

fn rules_alerts_and_the_outbox(f: &Fixture) {
    let store = &*f.store;
    use tripline::alerts::engine::{Contribution, Decision, NewAlert};
    use tripline::alerts::{AlertState, AlertUpdate, RuleDraft, Target, WebhookBody};
    use tripline::store::Attempt;
    let exports: Vec<ExportChunk> = (0..3).map(|i| event(i, 1_000 + i, "ann", 10)).collect();
    store.apply_reports("c", TOPIC, &ReportBatch { exports, ..Default::default() }, None).expect("stored");
    let target = Target::Webhook { url: "http://127.0.0.1:9/hook".into(), secret: "s".into(), body: WebhookBody::Json };
    let channel = store.save_channel(None, "SOC", &target, true, "admin").expect("channel");
    assert_eq!(store.channel(channel.id).expect("read").target, target, "the sealed target reads back");
    let draft = RuleDraft {
        name: "Any export".into(),
        description: "d".into(),
        severity: Severity::High,
        conditions: Default::default(),
        channels: vec![channel.id],
        suppress_minutes: 60,
    };
    let rule = store.create_rule(&draft, "admin").expect("rule");
    assert!(!rule.enabled);
    let rule = store.set_rule_enabled(rule.id, true, "admin").expect("enabled");
    assert_eq!((rule.enabled, rule.active_from_seq), (true, 3), "applies to events stored from now on");
    let contribution = |seq: i64| Contribution { seq, at: 1_000 + seq, rows: 10, severity: Severity::High };
    let open = Decision::Open(NewAlert {
        id: "a1".into(),
        rule_id: rule.id,
        rule_name: rule.name.clone(),
        severity: Severity::High,
        channels: vec![channel.id],
        connection_id: "c".into(),
        user_id: "005000000000001AAA".into(),
        username: Some("ann@x.example".into()),
        events: vec![contribution(1)],
    });
    let grow = Decision::Grow { alert_id: "a1".into(), event: contribution(2) };
    store.apply_alerts(2, &[open.clone(), grow]).expect("raised");
    store.apply_alerts(2, &[open]).expect("a replay raises nothing");
    assert_eq!(store.alert_position().expect("position"), 2);
    let (alert, _) = store.alert("a1").expect("read").expect("raised");
    assert_eq!((alert.events, alert.rows, alert.state), (2, 20, AlertState::Open));
    assert_eq!(store.alert_events("a1", 10).expect("events").len(), 2);
    assert_eq!(store.uncovered(0, 10_000, 10).expect("uncovered").1, 0, "the two high events are covered");
    // The outbox: one message for the channel, failing once, then delivered.
    let due = store.due_deliveries(i64::MAX, 10).expect("due");
    assert_eq!(due.len(), 1);
    store.record_attempt(due[0].id, &Attempt::Failed { error: "refused".into(), retry_at: Some(5) }).expect("failed");
    assert_eq!(store.next_delivery_at().expect("next"), Some(5));
    assert_eq!(store.channel_health().expect("health")[&channel.id].last_error.as_deref(), Some("refused"));
    store.record_attempt(due[0].id, &Attempt::Delivered).expect("delivered");
    assert!(store.due_deliveries(i64::MAX, 10).expect("due").is_empty());
    let health = store.channel_health().expect("health")[&channel.id].clone();
    assert_eq!((health.pending, health.delivered, health.failed), (0, 1, 0));
    // Triage: a closed alert that matches again opens a new one.
    let update =
        AlertUpdate { state: Some(AlertState::FalsePositive), assignee: Some("ann".into()), note: Some("test".into()) };
    store.update_alert("a1", &update, "ann").expect("closed");
    let reopened =
        store.apply_alerts(3, &[Decision::Grow { alert_id: "a1".into(), event: contribution(3) }]).expect("grew");
    assert_eq!(reopened.len(), 1);
    let (new, _) = store.alert(&reopened[0].new).expect("read").expect("opened");
    assert_eq!((new.state, new.events), (AlertState::Open, 1));
    let (_, notes) = store.alert("a1").expect("read").expect("kept");
    assert_eq!(notes[0].text, "test");
    let counts = store.alert_counts(0, i64::MAX).expect("counts");
    assert_eq!(counts, [(Severity::High, 2, 1)]);
}

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

fn keyset_paging_visits_every_result_once_in_order(f: &Fixture) {
    let store = &*f.store;
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

fn dashboard_counts_take_each_stored_event_once(f: &Fixture) {
    let store = &*f.store;
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

fn alerts_are_listed_newest_oldest_or_most_severe_first(f: &Fixture) {
    let store = &*f.store;
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

fn node(name: &str, incarnation: &str) -> tripline::store::Node {
    tripline::store::Node {
        name: name.into(),
        incarnation: incarnation.into(),
        started_at: 1,
        heartbeat_at: 0,
        address: Some(format!("http://{name}.example:8080")),
    }
}

fn a_node_that_lost_its_lease_cannot_write(f: &Fixture) {
    use tripline::store::{Checkpoint, StoreError};
    let (a, b) = (&*f.store, (f.again)());
    let (node_a, node_b, node_b_again) = (node("a", "1"), node("b", "1"), node("b", "2"));
    let fenced = |result: tripline::store::Result<tripline::store::ReportOutcome>| {
        assert!(matches!(result, Err(StoreError::Fenced(_))), "{result:?}");
    };
    // A holds the connection; B cannot take it while the lease lasts.
    let lease = a.claim("c", &node_a, 60_000).expect("claim").expect("free");
    assert_eq!(lease.token, 1);
    assert_eq!(b.claim("c", &node_b, 60_000).expect("claim"), None);
    assert_eq!(a.claim("c", &node_a, 60_000).expect("renew").expect("held").token, 1, "renewed, same token");
    let batch = ReportBatch { exports: vec![event(1, 1_000, "ann", 5)], ..ReportBatch::default() };
    a.apply_reports("c", TOPIC, &batch, Some(b"a1")).expect("the holder writes");
    // A stops renewing (paused); once the lease runs out B takes it over.
    a.claim("c", &node_a, 1).expect("renew").expect("held");
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(b.claim("c", &node_b, 60_000).expect("claim").expect("expired").token, 2);
    // A, continued, cannot write: not an event, not a checkpoint, not a gap.
    let batch = ReportBatch { exports: vec![event(2, 1_001, "ann", 5)], ..ReportBatch::default() };
    fenced(a.apply_reports("c", TOPIC, &batch, Some(b"a2")));
    assert!(matches!(a.mark_restart("c", TOPIC, 5), Err(StoreError::Fenced(_))));
    assert!(matches!(a.record_gap("c", TOPIC, 1, None, "x", false), Err(StoreError::Fenced(_))));
    assert!(a.file_event("fe-2").expect("read").is_none(), "nothing of the refused write was kept");
    assert_eq!(a.checkpoint("c", TOPIC).expect("checkpoint"), Some(Checkpoint::At(b"a1".to_vec())));
    assert_eq!(a.claim("c", &node_a, 60_000).expect("claim"), None, "B holds it now");
    b.apply_reports("c", TOPIC, &batch, Some(b"b1")).expect("the new holder writes");
    // B restarted (a new incarnation) takes its lease back at once; the old one is fenced.
    let restarted_b = (f.again)();
    assert_eq!(restarted_b.claim("c", &node_b_again, 60_000).expect("claim").expect("same node").token, 3);
    let later = ReportBatch { exports: vec![event(3, 1_002, "ann", 5)], ..ReportBatch::default() };
    fenced(b.apply_reports("c", TOPIC, &later, Some(b"b2")));
    // Released, the lease is free for another node at once, at a higher token.
    restarted_b.request_restart("c", true).expect("asked");
    assert!(restarted_b.claim("c", &node_b_again, 60_000).expect("claim").expect("held").restart);
    restarted_b.release("c", &node_b_again).expect("released");
    let taken = a.claim("c", &node_a, 60_000).expect("claim").expect("released");
    assert_eq!((taken.token, taken.restart), (4, false));
    a.apply_reports("c", TOPIC, &later, Some(b"a3")).expect("the holder writes again");
    // Connections no node claimed are not fenced (a single node's tests and tools).
    a.apply_reports("other", TOPIC, &ReportBatch::default(), Some(b"o1")).expect("unclaimed");
    // Nodes and leases as the status page shows them.
    a.heartbeat(&node_a).expect("beat");
    b.heartbeat(&node_b_again).expect("beat");
    let names: Vec<String> = a.nodes().expect("nodes").into_iter().map(|n| n.name).collect();
    assert_eq!(names.len(), 2);
    let leases = a.leases().expect("leases");
    assert_eq!((leases[0].key.as_str(), leases[0].node.as_str(), leases[0].token), ("c", "a", 4));
}

fn downloads_older_than_the_retention_are_removed_with_their_hours(f: &Fixture) {
    let store = &*f.store;
    let day = 86_400_000;
    let (january, march) = (10 * day, 70 * day); // 1970-01-11, 1970-03-12
    let mut exports: Vec<ExportChunk> = (0..3).map(|i| event(i, january + i * 3_600_000, "ann", 10)).collect();
    exports.extend((3..5).map(|i| event(i, march + i, "bob", 20)));
    store.apply_reports("c", TOPIC, &ReportBatch { exports, ..Default::default() }, None).expect("stored");
    while store.aggregate(100).expect("aggregate") > 0 {}
    assert_eq!(store.retention().expect("retention"), None, "kept for ever until set");
    store.set_retention(Some(30), "admin").expect("set");
    assert_eq!(store.retention().expect("retention"), Some(30));
    assert!(
        store.audit_log(5).expect("audit").iter().any(|e| e.action == "settings.retention" && e.target == "30 days")
    );
    // Everything before 1970-02-15 goes: January whole, on either store.
    let mut removed = 0;
    loop {
        let n = store.remove_before(45 * day).expect("removed");
        if n == 0 {
            break;
        }
        removed += n;
    }
    assert_eq!(removed, 3);
    let left: Vec<String> =
        store.search(&all_events(0, 100 * day)).expect("search").events.into_iter().map(|e| e.id).collect();
    assert_eq!(left, ["fe-4", "fe-3"], "newest first");
    let dashboard = store.dashboard(0, 100 * day, 10).expect("dashboard");
    assert!(dashboard.hours.iter().all(|h| h.hour >= march - day), "January's hours are gone: {:?}", dashboard.hours);
    assert_eq!(dashboard.hours.iter().map(|h| h.corporate + h.unmonitored).sum::<u64>(), 2);
    // A late download of a removed month is stored again.
    let late = ReportBatch { exports: vec![event(9, january, "ann", 1)], ..Default::default() };
    assert_eq!(store.apply_reports("c", TOPIC, &late, None).expect("stored").new_file_events, 1);
    store.set_retention(None, "admin").expect("for ever");
    assert_eq!(store.retention().expect("retention"), None);
}

/// TLS to PostgreSQL: asked for with `sslmode=require`, the server's certificate is
/// checked (refused when no trusted CA issued it), and a server without TLS is refused.
#[test]
fn postgres_over_tls_checks_the_servers_certificate() {
    use tripline::store::postgres::PostgresStore;
    use tripline::store::postgres::private::PrivateServer;
    use tripline::store::secrets::SecretBox;
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
    let key32 = || SecretBox::from_key(&[7; 32]).expect("key");
    let server = PrivateServer::start_tls(&cert, &key).expect("a PostgreSQL server with TLS");
    let url = format!("{}?sslmode=require", server.database().expect("a database"));
    let store = PostgresStore::connect_with_ca(&url, key32(), Some(&cert)).expect("TLS with the trusted certificate");
    store.audit("tests", "test.tls", "over TLS").expect("a write over TLS");
    let refused = PostgresStore::connect(&url, key32()).err().expect("a certificate no trusted CA issued");
    assert!(format!("{refused:?}").to_lowercase().contains("certificate"), "{refused:?}");
    let plain = PrivateServer::start(false).expect("a PostgreSQL server without TLS");
    let url = format!("{}?sslmode=require", plain.database().expect("a database"));
    assert!(PostgresStore::connect_with_ca(&url, key32(), Some(&cert)).is_err(), "TLS required, not offered");
}
