//! The JSON API over a real socket, served as `tripline serve` assembles it: tokens,
//! search, streamed export, errors, connections, rescan, OpenAPI.

mod common;

use serde_json::{Value, json};
use tripline::connection::{ConnectionRecord, ScopeMode};

use common::{Scenario, Served, id};

/// A server with one connection, three exports by one user (5, 15,000 and 70 rows),
/// and an API token.
struct Api {
    s: Scenario,
    record: ConnectionRecord,
    served: Served,
    token: String,
    user: Value,
    http: reqwest::Client,
}

impl Api {
    async fn new() -> Api {
        let s = Scenario::new(40).await;
        let record = s.connect("API", ScopeMode::All).await;
        let served = s.serve().await;
        let user = s.exporters().await[0].clone();
        for rows in [5, 15_000, 70] {
            s.export(&id(&user), json!({ "rows": rows })).await;
        }
        s.wait_for("three exports", |e| e.len() == 3).await;
        let (token, hash) = tripline::api::new_token();
        s.store.add_api_token("tests", &hash, None, "tests").expect("token");
        Api { s, record, served, token, user, http: reqwest::Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.served.base)
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http.post(self.url(path)).bearer_auth(&self.token).json(body).send().await.expect("call")
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(&self.token).send().await.expect("call")
    }

    /// The user's exports, two to a page.
    fn by_user(&self) -> Value {
        json!({ "from_ms": 0, "to_ms": i64::MAX, "page_size": 2,
            "filter": { "all": [{ "term": { "field": "username", "op": "is", "value": self.user["username"] } }] } })
    }

    async fn stop(self) {
        self.served.stop().await;
    }
}

#[tokio::test]
async fn calls_without_a_known_token_are_refused() {
    let api = Api::new().await;
    let none = api.http.post(api.url("/search")).json(&api.by_user()).send().await.expect("call");
    assert_eq!(none.status(), 401);
    let wrong =
        api.http.post(api.url("/search")).bearer_auth("tl_nope").json(&api.by_user()).send().await.expect("call");
    assert_eq!(wrong.status(), 401);
    assert!(api.s.store.add_api_token("tests", "other", None, "tests").is_err(), "token names are unique");
    api.stop().await;
}

#[tokio::test]
async fn search_pages_through_every_result() {
    let api = Api::new().await;
    let first: Value = api.post("/search", &api.by_user()).await.json().await.expect("json");
    assert_eq!(first["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(first["events"][0]["event"]["action"], "salesforce-report-download");
    let mut next = api.by_user();
    next["after"] = first["next"].clone();
    let second: Value = api.post("/search", &next).await.json().await.expect("json");
    assert_eq!(second["events"].as_array().map(Vec::len), Some(1));
    assert!(second["next"].is_null());
    api.stop().await;
}

#[tokio::test]
async fn export_streams_csv_and_json_lines() {
    let api = Api::new().await;
    let big = json!({ "from_ms": 0, "to_ms": i64::MAX, "filter": { "term": { "field": "rows", "op": "greater", "value": 10000 } } });
    let csv = api.post("/export?format=csv", &big).await;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.expect("body");
    assert_eq!(text.lines().count(), 2, "a header and the one large export: {text}");
    let jsonl = api.post("/export?format=jsonl", &api.by_user()).await;
    assert_eq!(jsonl.text().await.expect("body").lines().count(), 3, "every page, not just the first");
    api.stop().await;
}

#[tokio::test]
async fn invalid_queries_are_answered_400_with_the_error_shape() {
    let api = Api::new().await;
    for bad in [
        json!({ "to_ms": 5 }),
        json!({ "from_ms": 9, "to_ms": 5 }),
        json!({ "from_ms": 0, "to_ms": 5, "filter": { "term": { "field": "password", "op": "is", "value": "x" } } }),
        json!({ "from_ms": 0, "to_ms": 5, "after": "not a cursor" }),
    ] {
        let r = api.post("/search", &bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "invalid_query", "{bad}");
    }
    assert_eq!(api.post("/export?format=xlsx", &api.by_user()).await.status(), 400);
    api.stop().await;
}

#[tokio::test]
async fn a_misspelled_key_is_refused_not_ignored() {
    let api = Api::new().await;
    let misspelled = json!({ "from_ms": 0, "to_ms": i64::MAX,
        "filters": { "term": { "field": "rows", "op": "greater", "value": 10000 } } });
    for path in ["/search", "/export?format=csv"] {
        let r = api.post(path, &misspelled).await;
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.expect("json");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("filters"), "{path}: the key is named: {message}");
    }
    api.stop().await;
}

#[tokio::test]
async fn an_export_sorted_by_any_field_ends() {
    let api = Api::new().await;
    for field in ["email", "source_ip", "report_id", "file_name", "operation"] {
        let query =
            json!({ "from_ms": 0, "to_ms": i64::MAX, "page_size": 1, "sort": { "field": field, "descending": false } });
        let text = api.post("/export?format=jsonl", &query).await.text().await.expect("body");
        assert_eq!(text.lines().count(), 3, "sorted by {field}: each of the three exports once");
    }
    api.stop().await;
}

#[tokio::test]
async fn connections_show_their_status_and_never_their_secrets() {
    let api = Api::new().await;
    let r = api.http.get(api.url("/connections")).bearer_auth(&api.token).send().await.expect("call");
    let connections: Value = r.json().await.expect("json");
    assert_eq!(connections[0]["display_name"], "API");
    assert_eq!(connections[0]["status"], "monitoring");
    assert_eq!(connections[0]["scope"]["mode"], "all");
    assert!(connections[0].get("refresh_token").is_none() && connections[0].get("access_token").is_none());
    api.stop().await;
}

#[tokio::test]
async fn rescan_reports_the_monitored_users_of_a_running_connection() {
    let api = Api::new().await;
    let rescan = api.post(&format!("/connections/{}/rescan", api.record.id), &json!({})).await;
    assert_eq!(rescan.status(), 200);
    let body: Value = rescan.json().await.expect("json");
    let monitored = api.s.store.scope(&api.record.id).expect("scope").len() as u64;
    assert_eq!(body["monitored_users"].as_u64(), Some(monitored));
    assert_eq!(api.post("/connections/nope/rescan", &json!({})).await.status(), 404);
    api.stop().await;
}

#[tokio::test]
async fn the_openapi_document_needs_no_token() {
    let api = Api::new().await;
    let doc: Value = api.http.get(api.url("/openapi.json")).send().await.expect("call").json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/export"]["post"].is_object());
    api.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let api = Api::new().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = api
            .http
            .post(api.url("/search"))
            .header("authorization", format!("{scheme} {}", api.token))
            .json(&api.by_user())
            .send()
            .await
            .expect("call");
        assert_eq!(r.status(), 200, "{scheme}");
    }
    api.stop().await;
}

#[tokio::test]
async fn authentication_comes_before_any_other_check() {
    let api = Api::new().await;
    let r = api.http.post(api.url("/export?format=xlsx&bogus=1")).body("not json").send().await.expect("call");
    assert_eq!(r.status(), 401, "no token: 401, whatever else is wrong");
    let r = api.post("/export?format=csv&bogus=1", &api.by_user()).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("a JSON error, not plain text");
    assert_eq!(body["error"]["code"], "invalid_parameter");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("bogus"));
    api.stop().await;
}

#[tokio::test]
async fn every_error_has_one_json_shape_with_the_request_id() {
    let api = Api::new().await;
    let unknown = api.get("/nothing-here").await;
    assert_eq!(unknown.status(), 404);
    let id = unknown.headers()["x-request-id"].to_str().expect("id").to_owned();
    let body: Value = unknown.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["request_id"], id.as_str());
    let wrong_method = api.get("/search").await;
    assert_eq!(wrong_method.status(), 405);
    let body: Value = wrong_method.json().await.expect("json");
    assert_eq!(body["error"]["code"], "method_not_allowed");
    api.stop().await;
}

#[tokio::test]
async fn oversized_filters_are_refused_briefly_and_internal_errors_stay_inside() {
    let api = Api::new().await;
    let values: Vec<String> = (0..2_000).map(|i| format!("user{i}@x.example")).collect();
    let huge = json!({ "from_ms": 0, "to_ms": i64::MAX, "filter": { "term": { "field": "email", "op": "any_of", "value": values } } });
    let r = api.post("/search", &huge).await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.expect("body");
    assert!(text.len() < 400 && !text.contains("SELECT"), "{text}");
    let pattern = json!({ "from_ms": 0, "to_ms": i64::MAX, "filter": { "term": { "field": "report_name", "op": "matches", "value": "*".repeat(60_000) } } });
    assert_eq!(api.post("/search", &pattern).await.status(), 400);
    let enormous = json!({ "from_ms": 0, "to_ms": 1, "after": "x".repeat(300_000) });
    let r = api.post("/search", &enormous).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.expect("json")["error"]["code"], "too_large");

    // A row the store cannot read: the client learns only that it failed, and the id.
    let db = rusqlite::Connection::open(api.s.dir.path().join("tripline.db")).expect("db");
    db.execute("UPDATE file_events SET severity = 'apocalyptic'", []).expect("tamper");
    let r = api.post("/search", &api.by_user()).await;
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "internal");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.contains("apocalyptic") && !message.contains("column"), "{message}");
    assert!(!body["error"]["request_id"].as_str().unwrap_or_default().is_empty());
    api.stop().await;
}

#[tokio::test]
async fn tokens_are_listed_revoked_and_expire_and_every_change_is_audited() {
    let api = Api::new().await;
    let (other, hash) = tripline::api::new_token();
    let past = chrono::Utc::now().timestamp_millis() - 1;
    api.s.store.add_api_token("expired", &hash, Some(past), "tests").expect("token");
    let expired = api.http.get(api.url("/tokens")).bearer_auth(&other).send().await.expect("call");
    assert_eq!(expired.status(), 401, "an expired token is refused");

    let list: Value = api.get("/tokens").await.json().await.expect("json");
    let names: Vec<&str> = list.as_array().expect("list").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["tests", "expired"]);
    assert!(list[0]["last_used_at"].is_i64(), "the calling token's use is recorded");
    assert!(list.to_string().find("tl_").is_none(), "tokens are never shown again");

    let (second, hash) = tripline::api::new_token();
    api.s.store.add_api_token("second", &hash, None, "tests").expect("token");
    let r = api.http.delete(api.url("/tokens/second")).bearer_auth(&api.token).send().await.expect("call");
    assert_eq!(r.status(), 200);
    let revoked = api.http.get(api.url("/tokens")).bearer_auth(&second).send().await.expect("call");
    assert_eq!(revoked.status(), 401, "a revoked token is refused");
    let missing = api.http.delete(api.url("/tokens/nobody")).bearer_auth(&api.token).send().await.expect("call");
    assert_eq!(missing.status(), 404);

    let audit: Value = api.get("/audit").await.json().await.expect("json");
    let revoke =
        audit.as_array().expect("entries").iter().find(|e| e["action"] == "api-token.revoke").expect("audited");
    assert_eq!((revoke["actor"].as_str(), revoke["target"].as_str()), (Some("token tests"), Some("second")));
    assert_eq!(api.get("/audit?limit=0").await.status(), 400);
    api.stop().await;
}

#[tokio::test]
async fn repeated_failed_authentication_is_throttled() {
    let api = Api::new().await;
    for _ in 0..10 {
        let r = api.http.get(api.url("/tokens")).bearer_auth("tl_guess").send().await.expect("call");
        assert_eq!(r.status(), 401);
    }
    let r = api.get("/tokens").await;
    assert_eq!(r.status(), 429, "even a valid token waits while the address is throttled");
    assert!(r.headers().contains_key("retry-after"));
    api.stop().await;
}

#[tokio::test]
async fn every_documented_path_is_served() {
    let api = Api::new().await;
    let doc: Value = api.http.get(api.url("/openapi.json")).send().await.expect("call").json().await.expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    assert_eq!(paths.len(), 21, "{:?}", paths.keys());
    for (path, methods) in paths {
        for method in methods.as_object().expect("methods").keys() {
            // The connection's id is real; other placeholders name nothing (404 is right).
            let mut concrete = path.replace("{id}", &api.record.id);
            for placeholder in ["{name}", "{alert}", "{rule}", "{kind}", "{username}"] {
                concrete = concrete.replace(placeholder, "nobody");
            }
            let url = format!("{}{concrete}", api.served.base);
            let request = match method.as_str() {
                "get" => api.http.get(&url),
                "post" => api.http.post(&url).json(&api.by_user()),
                "put" => api.http.put(&url).json(&api.by_user()),
                "patch" => api.http.patch(&url).json(&json!({ "surprise": 1 })),
                "delete" => api.http.delete(&url),
                other => panic!("undocumented method {other}"),
            };
            let status = request.bearer_auth(&api.token).send().await.expect("call").status().as_u16();
            let names_nothing = concrete.contains("nobody");
            assert!(status != 405 && (status != 404 || names_nothing), "{method} {path}: {status}");
            assert!(status < 500, "{method} {path}: {status}");
        }
    }
    let fields = doc["components"]["schemas"]["Field"]["enum"].as_array().expect("fields").len();
    assert_eq!(fields, tripline::search::Field::ALL.len());
    assert_eq!(
        doc["components"]["schemas"]["SearchQuery"]["properties"]["sort"]["required"],
        json!(["field", "descending"])
    );
    api.stop().await;
}

#[tokio::test]
async fn rules_are_managed_back_tested_and_raise_alerts_that_are_triaged_and_paged() {
    let api = Api::new().await;
    let send = |method: reqwest::Method, path: &str, body: Value| {
        api.http.request(method, api.url(path)).bearer_auth(&api.token).json(&body).send()
    };
    // A misspelled condition is refused, not ignored.
    let typo = json!({ "name": "Big", "severity": "high", "conditions": { "min_row": 10_000 } });
    let r = api.post("/rules", &typo).await;
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.expect("json")["error"]["message"].as_str().expect("message").contains("min_row"));
    let draft =
        json!({ "name": "Big", "severity": "high", "conditions": { "min_rows": 10_000 }, "suppress_minutes": 0 });
    let rule: Value = api.post("/rules", &draft).await.json().await.expect("rule");
    assert_eq!(rule["enabled"], false, "a new rule starts disabled");
    let rule_id = rule["id"].as_i64().expect("id");
    assert_eq!(api.post("/rules", &draft).await.status(), 409, "the name is taken");

    // The back-test sees the stored 15,000-row export.
    let window = json!({ "from_ms": 0, "to_ms": i64::MAX });
    let tested: Value = api.post(&format!("/rules/{rule_id}/backtest"), &window).await.json().await.expect("json");
    assert_eq!(tested["result"]["alerts"], 1);
    assert_eq!(tested["result"]["matched"], 1);
    assert_eq!(tested["result"]["events"], 3);

    assert_eq!(api.post(&format!("/rules/{rule_id}/enable"), &json!({})).await.status(), 200);
    for rows in [20_000, 30_000] {
        api.s.export(&id(&api.user), json!({ "rows": rows })).await;
    }
    // Both exports raise their alert; only then is the list paged.
    for _ in 0..200 {
        let all: Value = api.get("/alerts").await.json().await.expect("json");
        if all["alerts"].as_array().is_some_and(|a| a.len() == 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let alerts: Value = api.get("/alerts?limit=1").await.json().await.expect("json");
    assert!(alerts["next"].is_i64(), "a full page names the next: {alerts}");
    assert_eq!(alerts["alerts"].as_array().expect("alerts").len(), 1, "one to a page: {alerts}");
    let first = alerts["alerts"][0].clone();
    assert_eq!(first["rule"]["name"], "Big");
    let second: Value = api.get(&format!("/alerts?limit=1&after={}", alerts["next"])).await.json().await.expect("json");
    assert_eq!(second["alerts"].as_array().expect("alerts").len(), 1);
    assert_ne!(second["alerts"][0]["id"], first["id"]);
    assert_eq!(first["rows"].as_i64().expect("rows") + second["alerts"][0]["rows"].as_i64().expect("rows"), 50_000);
    let after_both = second["alerts"][0]["seq"].as_i64().expect("seq");
    let none: Value = api.get(&format!("/alerts?after={after_both}")).await.json().await.expect("json");
    assert_eq!(none["alerts"], json!([]));
    assert_eq!(api.get("/alerts?state=opn").await.status(), 400);

    let alert_id = first["id"].as_str().expect("id");
    let triage = json!({ "state": "true-positive", "note": "Confirmed with the manager" });
    let r = send(reqwest::Method::PATCH, &format!("/alerts/{alert_id}"), triage).await.expect("call");
    assert_eq!(r.status(), 200);
    let shown: Value = api.get(&format!("/alerts/{alert_id}")).await.json().await.expect("json");
    assert_eq!(shown["state"], "true-positive");
    assert_eq!(shown["notes"][0]["text"], "Confirmed with the manager");
    assert_eq!(shown["file_events"].as_array().expect("events").len(), 1);
    let nobody = send(reqwest::Method::PATCH, &format!("/alerts/{alert_id}"), json!({ "assignee": "nobody" }));
    assert_eq!(nobody.await.expect("call").status(), 404);

    // Risk settings: read, a bad one refused, a good one saved; watch lists.
    let mut risk: Value = api.get("/risk").await.json().await.expect("json");
    risk["time_zone"] = json!("Mars/Olympus");
    assert_eq!(send(reqwest::Method::PUT, "/risk", risk.clone()).await.expect("call").status(), 400);
    risk["time_zone"] = json!("Europe/Berlin");
    assert_eq!(send(reqwest::Method::PUT, "/risk", risk).await.expect("call").status(), 200);
    let bad = json!({ "subject": "{usr} exported", "body": "{events}" });
    assert_eq!(send(reqwest::Method::PUT, "/templates", bad).await.expect("call").status(), 400);
    let good = json!({ "subject": "{user} exported {rows} rows", "body": "{events}" });
    assert_eq!(send(reqwest::Method::PUT, "/templates", good.clone()).await.expect("call").status(), 200);
    assert_eq!(api.get("/templates").await.json::<Value>().await.expect("json"), good);
    let entries = json!([{ "kind": "departing", "username": "Ann@Example.com", "departure": "2026-12-31" }]);
    let added: Value = api.post("/watchlists", &entries).await.json().await.expect("json");
    assert_eq!(added["added"], 1);
    let listed: Value = api.get("/watchlists").await.json().await.expect("json");
    assert_eq!(listed[0]["username"], "ann@example.com");
    let r = send(reqwest::Method::DELETE, "/watchlists/departing/ann@example.com", json!(null)).await.expect("call");
    assert_eq!(r.status(), 200);
    let audit: Value = api.get("/audit").await.json().await.expect("json");
    let actions: Vec<&str> = audit.as_array().expect("audit").iter().filter_map(|e| e["action"].as_str()).collect();
    for action in
        ["rule.create", "rule.enable", "alert.state (true-positive)", "settings.risk", "watchlist.remove (departing)"]
    {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    api.stop().await;
}
