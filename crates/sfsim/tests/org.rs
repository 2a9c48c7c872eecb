//! The generated org: deterministic per seed, saved and loaded as JSON, and changed by
//! the control API the way an admin would change a real org.

mod common;

use serde_json::{Value, json};
use sfsim::org::{Org, OrgSpec};

use common::{config, start};

#[test]
fn same_seed_same_org_and_json_round_trip() {
    let spec = OrgSpec { seed: 11, users: 80, callback_urls: vec![] };
    let a = Org::generate(&spec);
    let b = Org::generate(&spec);
    assert_eq!(a.id, b.id);
    assert_eq!(a.user_ids(), b.user_ids());
    assert_eq!(a.app.client_id, b.app.client_id);
    let other = Org::generate(&OrgSpec { seed: 12, ..spec.clone() });
    assert_ne!(a.id, other.id);

    let text = serde_json::to_string(&a.to_file()).expect("serialises");
    let loaded = Org::from_file(serde_json::from_str(&text).expect("parses")).expect("loads");
    assert_eq!(loaded.id, a.id);
    assert_eq!(loaded.user_ids(), a.user_ids());
    for object in ["User", "PermissionSetAssignment", "GroupMember", "PermissionSet"] {
        assert_eq!(loaded.table(object).len(), a.table(object).len(), "{object}");
    }
    let service = a.service_user.clone();
    assert_eq!(loaded.username(&service), a.username(&service));

    // A file with a wrong field is refused with its place named.
    let mut bad: Value = serde_json::from_str(&text).expect("json");
    bad["records"]["User"][0]["Shoe_Size"] = json!(44);
    let error = Org::from_file(serde_json::from_value(bad).expect("shape")).err().expect("refused");
    assert!(format!("{error:#}").contains("Shoe_Size"), "{error:#}");
}

#[test]
fn realistic_people_and_permissions() {
    let org = Org::generate(&OrgSpec { seed: 3, users: 300, callback_urls: vec![] });
    let users = org.user_ids();
    assert_eq!(users.len(), 301, "people plus the service account");
    let now = sfsim::now_ms();
    let exporters = users.iter().filter(|u| org.user_has_permission(u, "PermissionsExportReport", now)).count();
    assert!(exporters > 30 && exporters < 280, "some but not all can export: {exporters}");
    assert!(users.iter().any(|u| !org.user_active(u)), "some inactive");
    assert!(users.iter().any(|u| org.user_frozen(u)), "some frozen");
    assert!(!org.user_has_permission(&org.service_user, "PermissionsExportReport", now));
    assert!(org.user_has_permission(&org.service_user, "PermissionsCustomizeApplication", now));
    let names: Vec<String> = users.iter().map(|u| org.username(u)).collect();
    assert!(names.iter().all(|n| n.contains('@') && !n.starts_with("user")));
}

async fn scope_ids(org: &common::Org, token: &str) -> Vec<String> {
    let q = "SELECT Id FROM User WHERE IsActive = true AND Id IN (SELECT AssigneeId FROM PermissionSetAssignment WHERE PermissionSet.PermissionsExportReport = true)";
    let body: Value = org.query(token, q).await.json().await.expect("json");
    body["records"].as_array().expect("records").iter().map(|r| r["Id"].as_str().expect("id").to_owned()).collect()
}

#[tokio::test]
async fn admin_changes_show_in_queries() {
    let org = start(config(80)).await;
    let token = org.authorize().await.access;
    let user = org.exporter().await;
    let id = user["id"].as_str().expect("id").to_owned();
    assert!(scope_ids(&org, &token).await.contains(&id));

    org.control(&format!("/users/{id}/state"), json!({"active": false})).await;
    assert!(!scope_ids(&org, &token).await.contains(&id), "deactivated users drop out");
    org.control(&format!("/users/{id}/state"), json!({"active": true})).await;
    assert!(scope_ids(&org, &token).await.contains(&id));

    // Take Export Reports away from every permission set: nobody is in scope.
    let sets = org.control_get("/permission-sets").await;
    for ps in sets.as_array().expect("sets") {
        if ps["PermissionsExportReport"] == json!(true) {
            org.control(
                &format!("/permission-sets/{}", ps["Id"].as_str().expect("id")),
                json!({"PermissionsExportReport": false}),
            )
            .await;
        }
    }
    assert!(scope_ids(&org, &token).await.is_empty());
    let bad = org
        .http
        .post(org.url("/control/v1/permission-sets/005000000000000AAA"))
        .json(&json!({"PermissionsExportReport": true}))
        .send()
        .await
        .expect("call");
    assert_eq!(bad.status(), 404);

    // Group membership, direct and nested.
    let groups = org.control_get("/groups").await;
    let finance =
        groups.as_array().expect("groups").iter().find(|g| g["name"] == "Finance Team").expect("Finance Team");
    let gid = finance["id"].as_str().expect("id");
    org.control(&format!("/groups/{gid}/members"), json!({"add": [id.clone()]})).await;
    let q = format!("SELECT UserOrGroupId FROM GroupMember WHERE GroupId = '{gid}' AND UserOrGroupId = '{id}'");
    let found: Value = org.query(&token, &q).await.json().await.expect("json");
    assert_eq!(found["totalSize"], 1);
    org.control(&format!("/groups/{gid}/members"), json!({"remove": [id.clone()]})).await;
    let found: Value = org.query(&token, &q).await.json().await.expect("json");
    assert_eq!(found["totalSize"], 0);

    // The service account frozen: its token stops working; thawed: it works again.
    let service = org.info["service_account"]["user_id"].as_str().expect("id").to_owned();
    org.control(&format!("/users/{service}/state"), json!({"frozen": true})).await;
    assert_eq!(org.get(&token, "/services/data/v62.0/limits").await.status(), 401);
    org.control(&format!("/users/{service}/state"), json!({"frozen": false})).await;
    assert_eq!(org.get(&token, "/services/data/v62.0/limits").await.status(), 200);
}

#[tokio::test]
async fn logins_for_people_and_sessions_on_their_exports() {
    let org = start(config(60)).await;
    let token = org.authorize().await.access;
    let user = org.exporter().await;
    let id = user["id"].as_str().expect("id");
    let login = org.control(&format!("/users/{id}/login"), json!({"source_ip": "203.0.113.9"})).await;
    let session_key = login["session"]["session_key"].as_str().expect("session key").to_owned();
    let q = format!("SELECT EventIdentifier, SessionKey, SourceIp, Status FROM LoginEvent WHERE UserId = '{id}'");
    let stored: Value = org.query(&token, &q).await.json().await.expect("json");
    assert_eq!(stored["records"][0]["SessionKey"], session_key.as_str());
    assert_eq!(stored["records"][0]["SourceIp"], "203.0.113.9");
    assert_eq!(stored["records"][0]["EventIdentifier"], login["event_identifier"]);

    org.control(&format!("/users/{id}/export"), json!({"rows": 10})).await;
    let q = format!("SELECT SessionKey, SourceIp FROM ReportEvent WHERE UserId = '{id}'");
    let exports: Value = org.query(&token, &q).await.json().await.expect("json");
    assert_eq!(exports["records"][0]["SessionKey"], session_key.as_str(), "the export carries the login's session");

    let out = org.control(&format!("/users/{id}/logout"), json!({})).await;
    assert_eq!(out["was_logged_in"], true);
    let unknown = org.http.post(org.url("/control/v1/users/nobody@nowhere/login")).send().await.expect("call");
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn access_tokens_end_with_the_session_timeout() {
    let mut cfg = config(30);
    cfg.session_timeout = std::time::Duration::from_millis(700);
    let org = start(cfg).await;
    let tokens = org.authorize().await;
    assert_eq!(org.get(&tokens.access, "/services/data/v62.0/limits").await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    assert_eq!(org.get(&tokens.access, "/services/data/v62.0/limits").await.status(), 401);
    // The refresh token still gets a new session.
    let (id, secret) = (org.client_id(), org.client_secret());
    let r = org
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &tokens.refresh),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn simulated_people_work_and_can_be_paused() {
    let mut cfg = config(80);
    cfg.activity_rate = 400.0;
    let org = start(cfg).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let topics = org.control_get("/org").await["pubsub"]["topics"].clone();
    let retained = |name: &str| {
        topics
            .as_array()
            .expect("topics")
            .iter()
            .find(|t| t["topic"] == name)
            .map_or(0, |t| t["retained"].as_u64().unwrap_or(0))
    };
    assert!(retained("/event/LoginEventStream") > 0, "{topics}");
    assert!(retained("/event/ReportEventStream") > 50, "{topics}");

    let token = org.authorize().await.access;
    let q = "SELECT Operation FROM ReportEvent WHERE EventDate > 2020-01-01T00:00:00Z";
    let body: Value = org.query(&token, q).await.json().await.expect("json");
    let ops: Vec<&str> =
        body["records"].as_array().expect("records").iter().filter_map(|r| r["Operation"].as_str()).collect();
    assert!(ops.iter().any(|o| o.starts_with("ReportRun")), "runs as well as exports");
    assert!(ops.iter().any(|o| sfwire::pubsub::is_export_operation(o)), "exports as well as runs");

    let status = org.control("/activity", json!({"paused": true})).await;
    assert_eq!(status["paused"], true);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let before = org.control_get("/org").await["pubsub"]["topics"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(org.control_get("/org").await["pubsub"]["topics"], before, "paused: nothing new");
}
