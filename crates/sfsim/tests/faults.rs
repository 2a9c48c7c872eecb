//! The org misbehaving on purpose, seen from outside: refresh-token policies, sessions
//! ended by a password change or deactivation, IP restrictions, the concurrent-request
//! limit, and chaos mode.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use sfwire::eventbus::v1::TopicRequest;
use tonic::Code;

use common::{Org, config, start};

/// A refresh-token grant: (HTTP status, body).
async fn refresh(org: &Org, token: &str) -> (u16, Value) {
    let (id, secret) = (org.client_id(), org.client_secret());
    let r = org
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .await;
    (r.status().as_u16(), r.json().await.expect("json"))
}

fn expired(answer: &(u16, Value)) -> bool {
    answer.0 == 400
        && answer.1["error"] == "invalid_grant"
        && answer.1["error_description"] == "expired access/refresh token"
}

#[tokio::test]
async fn refresh_tokens_follow_the_apps_policy() {
    let org = start(config(30)).await;

    // Rotation: each use hands back a new token and spends the one used.
    org.control("/connected-app/refresh-tokens", json!({ "rotate": true })).await;
    let first = org.authorize().await.refresh;
    let (status, body) = refresh(&org, &first).await;
    assert_eq!(status, 200, "{body}");
    let second = body["refresh_token"].as_str().expect("a rotated refresh token").to_owned();
    assert_ne!(second, first);
    let session = body["access_token"].as_str().expect("access").to_owned();
    assert!(expired(&refresh(&org, &first).await), "the used token is spent");
    assert_eq!(org.get(&session, "/services/data/v62.0/limits").await.status(), 200, "its session lives on");
    let (status, body) = refresh(&org, &second).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["refresh_token"].is_string());

    // Valid until revoked, without rotation: the same token serves again and again.
    org.control("/connected-app/refresh-tokens", json!({ "expiry": { "kind": "until-revoked" } })).await;
    let lasting = org.authorize().await.refresh;
    for _ in 0..2 {
        let (status, body) = refresh(&org, &lasting).await;
        assert_eq!(status, 200);
        assert!(body.get("refresh_token").is_none(), "not rotated: {body}");
    }

    // Immediately expired: none can be used.
    org.control("/connected-app/refresh-tokens", json!({ "expiry": { "kind": "immediately" } })).await;
    assert!(expired(&refresh(&org, &lasting).await));

    // Expiring after a period, counted from the issue.
    org.control("/connected-app/refresh-tokens", json!({ "expiry": { "kind": "after", "seconds": 1 } })).await;
    let short = org.authorize().await.refresh;
    assert_eq!(refresh(&org, &short).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert!(expired(&refresh(&org, &short).await));

    // Expiring when unused: each use restarts the clock.
    org.control("/connected-app/refresh-tokens", json!({ "expiry": { "kind": "if-unused", "seconds": 1 } })).await;
    let idle = org.authorize().await.refresh;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(refresh(&org, &idle).await.0, 200, "used within the idle time");
    }
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert!(expired(&refresh(&org, &idle).await));

    // A policy the app cannot have is refused.
    let bad = org
        .http
        .post(org.url("/control/v1/connected-app/refresh-tokens"))
        .json(&json!({ "expiry": { "kind": "sometimes" } }))
        .send()
        .await
        .expect("call");
    assert!(bad.status().is_client_error());
}

#[tokio::test]
async fn a_password_change_or_deactivation_ends_the_sessions() {
    let org = start(config(30)).await;
    let service = org.info["service_account"]["user_id"].as_str().expect("id").to_owned();
    let tokens = org.authorize().await;
    let limits = "/services/data/v62.0/limits";

    org.control(&format!("/users/{service}/password"), json!({ "password": "Another-Secret-42" })).await;
    assert_eq!(org.get(&tokens.access, limits).await.status(), 401, "the session ended");
    let (status, body) = refresh(&org, &tokens.refresh).await;
    assert_eq!(status, 200, "the refresh token still works: {body}");
    let session = body["access_token"].as_str().expect("access").to_owned();
    assert_eq!(org.get(&session, limits).await.status(), 200);

    org.control(&format!("/users/{service}/state"), json!({ "active": false })).await;
    org.control(&format!("/users/{service}/state"), json!({ "active": true })).await;
    assert_eq!(
        org.get(&session, limits).await.status(),
        401,
        "deactivation ended it, reactivation does not bring it back"
    );
    assert_eq!(refresh(&org, &tokens.refresh).await.0, 200);
}

#[tokio::test]
async fn ip_restrictions_refuse_clients_outside_the_ranges() {
    let org = start(config(30)).await;
    let tokens = org.authorize().await;
    let limits = "/services/data/v62.0/limits";
    let ranges = |start: &str, end: &str| json!({ "ranges": [{ "start": start, "end": end }] });

    org.control("/connected-app/ip-restrictions", ranges("10.0.0.0", "10.255.255.255")).await;
    let r = org.get(&tokens.access, limits).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.expect("json")[0]["errorCode"], "INVALID_SESSION_ID");
    let (status, body) = refresh(&org, &tokens.refresh).await;
    assert_eq!(
        (status, body["error"].as_str(), body["error_description"].as_str()),
        (400, Some("invalid_grant"), Some("ip restricted"))
    );
    let mut client = org.grpc().await;
    let topic = TopicRequest { topic_name: "/event/ReportEventStream".into() };
    let status = client.get_topic(org.request(&tokens.access, topic.clone())).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);

    // Loopback allowed: the same tokens work again.
    org.control("/connected-app/ip-restrictions", ranges("127.0.0.1", "127.0.0.1")).await;
    assert_eq!(org.get(&tokens.access, limits).await.status(), 200);
    assert!(client.get_topic(org.request(&tokens.access, topic)).await.is_ok());
    assert_eq!(refresh(&org, &tokens.refresh).await.0, 200);

    let backwards = org
        .http
        .post(org.url("/control/v1/connected-app/ip-restrictions"))
        .json(&ranges("10.0.0.9", "10.0.0.1"))
        .send()
        .await
        .expect("call");
    assert_eq!(backwards.status(), 400);
    org.control("/connected-app/ip-restrictions", json!({ "ranges": null })).await;
}

#[tokio::test]
async fn requests_beyond_the_concurrent_limit_are_refused() {
    let org = start(config(30)).await;
    let token = org.authorize().await.access;
    org.control("/concurrency", json!({ "max_requests": 1 })).await;
    org.control("/stall", json!({ "seconds": 2 })).await;
    let held = {
        let (http, url, token) = (org.http.clone(), org.url("/services/data/v62.0/limits"), token.clone());
        tokio::spawn(async move { http.get(url).bearer_auth(token).send().await.expect("held").status() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = org.get(&token, "/services/data/v62.0/limits").await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body[0]["errorCode"], "REQUEST_LIMIT_EXCEEDED");
    assert_eq!(body[0]["message"], "ConcurrentPerOrgLongTxn Limit exceeded.");
    assert_eq!(held.await.expect("joined"), 200, "the request holding the slot is served");
    org.control("/concurrency", json!({ "max_requests": null })).await;
    assert_eq!(org.get(&token, "/services/data/v62.0/limits").await.status(), 200);
}

/// The first `n` faults chaos injects with `seed`.
async fn chaos_run(seed: u64, n: usize) -> Vec<Value> {
    let org = start(config(20)).await;
    let faults = json!(["stream-reset", "sessions-expired", "migration"]);
    org.control("/chaos", json!({ "rate": 600, "seed": seed, "faults": faults })).await;
    for _ in 0..100 {
        let log = org.control_get("/chaos").await;
        let injected = log["injected"].as_array().expect("log").clone();
        if injected.len() >= n {
            org.control("/chaos", json!({ "rate": 0 })).await;
            return injected.iter().take(n).map(|i| i["fault"].clone()).collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chaos injected fewer than {n} faults in 10 s");
}

#[tokio::test]
async fn chaos_injects_logged_faults_and_replays_from_its_seed() {
    let (a, b) = tokio::join!(chaos_run(9, 6), chaos_run(9, 6));
    assert_eq!(a, b, "the same seed, the same faults");
    assert!(
        a.iter().all(|f| ["stream-reset", "sessions-expired", "migration"].contains(&f.as_str().unwrap_or_default()))
    );
    let org = start(config(20)).await;
    for bad in [json!({ "rate": -1 }), json!({ "rate": 1, "faults": [] }), json!({ "rate": 1, "faults": ["meteor"] })] {
        let r = org.http.post(org.url("/control/v1/chaos")).json(&bad).send().await.expect("call");
        assert!(r.status().is_client_error(), "{bad} refused");
    }
}
