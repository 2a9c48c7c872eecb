//! The JSON API over a real socket: tokens, search, streamed export, errors, OpenAPI.

mod common;

use serde_json::{Value, json};
use tripline::connection::ScopeMode;

use common::{Scenario, id};

#[tokio::test]
async fn search_and_export_through_the_api() {
    let s = Scenario::new(40).await;
    let record = s.connect("API", ScopeMode::All).await;
    let running = s.run(&record).await;
    let user = &s.exporters().await[0];
    for rows in [5, 15_000, 70] {
        s.export(&id(user), json!({ "rows": rows })).await;
    }
    s.wait_for("three exports", |e| e.len() == 3).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let base = format!("http://{}/api/v1", listener.local_addr().expect("addr"));
    let app = tripline::api::router(s.store.clone(), vec![running.context.clone()]);
    tokio::spawn(axum::serve(listener, app).into_future());
    let (token, hash) = tripline::api::new_token();
    s.store.add_api_token("tests", &hash).expect("token");
    assert!(s.store.add_api_token("tests", "other").is_err(), "names are unique");

    let http = reqwest::Client::new();
    let query = json!({ "from_ms": 0, "to_ms": i64::MAX, "page_size": 2,
        "filter": { "all": [{ "term": { "field": "username", "op": "is", "value": user["username"] } }] } });
    let unauthorized = http.post(format!("{base}/search")).json(&query).send().await.expect("call");
    assert_eq!(unauthorized.status(), 401);
    let wrong = http.post(format!("{base}/search")).bearer_auth("tl_nope").json(&query).send().await.expect("call");
    assert_eq!(wrong.status(), 401);

    let first: Value = http
        .post(format!("{base}/search"))
        .bearer_auth(&token)
        .json(&query)
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("json");
    assert_eq!(first["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(first["events"][0]["event"]["action"], "salesforce-report-download");
    let mut next = query.clone();
    next["after"] = first["next"].clone();
    let second: Value = http
        .post(format!("{base}/search"))
        .bearer_auth(&token)
        .json(&next)
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("json");
    assert_eq!(second["events"].as_array().map(Vec::len), Some(1));
    assert!(second["next"].is_null());

    let big = json!({ "from_ms": 0, "to_ms": i64::MAX, "filter": { "term": { "field": "rows", "op": "greater", "value": 10000 } } });
    let csv = http.post(format!("{base}/export?format=csv")).bearer_auth(&token).json(&big).send().await.expect("call");
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.expect("body");
    assert_eq!(text.lines().count(), 2, "{text}");
    let jsonl =
        http.post(format!("{base}/export?format=jsonl")).bearer_auth(&token).json(&query).send().await.expect("call");
    assert_eq!(jsonl.text().await.expect("body").lines().count(), 3);

    for bad in [
        json!({ "to_ms": 5 }),
        json!({ "from_ms": 9, "to_ms": 5 }),
        json!({ "from_ms": 0, "to_ms": 5, "filter": { "term": { "field": "password", "op": "is", "value": "x" } } }),
    ] {
        let r = http.post(format!("{base}/search")).bearer_auth(&token).json(&bad).send().await.expect("call");
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "invalid_query");
    }
    let r =
        http.post(format!("{base}/export?format=xlsx")).bearer_auth(&token).json(&query).send().await.expect("call");
    assert_eq!(r.status(), 400);

    let connections: Value = http
        .get(format!("{base}/connections"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("json");
    assert_eq!(connections[0]["display_name"], "API");
    assert!(connections[0].get("refresh_token").is_none(), "secrets never leave");

    let rescan =
        http.post(format!("{base}/connections/{}/rescan", record.id)).bearer_auth(&token).send().await.expect("call");
    assert_eq!(rescan.status(), 200);
    let body: Value = rescan.json().await.expect("json");
    assert_eq!(body["monitored_users"].as_u64(), Some(s.store.scope(&record.id).expect("scope").len() as u64));
    let missing = http.post(format!("{base}/connections/nope/rescan")).bearer_auth(&token).send().await.expect("call");
    assert_eq!(missing.status(), 404);

    let doc: Value = http.get(format!("{base}/openapi.json")).send().await.expect("call").json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/export"]["post"].is_object());
    running.stop().await;
}
