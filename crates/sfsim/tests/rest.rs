//! REST, SOQL and the Metadata API against a running sfsim.

mod common;

use serde_json::{Value, json};

use common::{config, start};

const SCOPE: &str = "SELECT Id, Username, Email, Name, IsActive, Profile.Name FROM User WHERE IsActive = true AND Id IN (SELECT AssigneeId FROM PermissionSetAssignment WHERE PermissionSet.PermissionsExportReport = true)";

#[tokio::test]
async fn scope_query_matches_the_control_view() {
    let org = start(config(120)).await;
    let token = org.authorize().await.access;
    let body: Value = org.query(&token, SCOPE).await.json().await.expect("json");
    assert_eq!(body["done"], true);
    let records = body["records"].as_array().expect("records");
    assert_eq!(body["totalSize"], records.len());
    let first = &records[0];
    assert_eq!(first["attributes"]["type"], "User");
    assert!(
        first["attributes"]["url"].as_str().is_some_and(|u| u.starts_with("/services/data/v62.0/sobjects/User/005"))
    );
    assert_eq!(first["Profile"]["attributes"]["type"], "Profile");
    assert!(first["Profile"]["Name"].is_string());

    // The query counts assignments regardless of expiry (as the wire doc's query does);
    // the control view counts only unexpired ones, so it is a subset.
    let users = org.control_get("/users").await;
    let returned: Vec<&str> = records.iter().filter_map(|r| r["Id"].as_str()).collect();
    for u in users.as_array().expect("users") {
        if u["can_export_reports"] == json!(true) && u["active"] == json!(true) {
            assert!(returned.contains(&u["id"].as_str().expect("id")), "{u}");
        }
        if u["active"] == json!(false) {
            assert!(!returned.contains(&u["id"].as_str().expect("id")));
        }
    }
    let unexpired = format!(
        "{SCOPE} AND Id NOT IN (SELECT AssigneeId FROM PermissionSetAssignment WHERE ExpirationDate < {})",
        "2000-01-01T00:00:00Z"
    );
    assert_eq!(org.query(&token, &unexpired).await.status(), 200);
}

#[tokio::test]
async fn pages_of_results_follow_next_records_url() {
    let org = start(config(450)).await;
    let token = org.authorize().await.access;
    let first: Value = org
        .http
        .get(org.url("/services/data/v62.0/query"))
        .bearer_auth(&token)
        .header("Sforce-Query-Options", "batchSize=200")
        .query(&[("q", "SELECT Id, AssigneeId, PermissionSet.Name FROM PermissionSetAssignment ORDER BY Id")])
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("json");
    let total = first["totalSize"].as_u64().expect("total") as usize;
    assert!(total > 400, "enough records for three pages: {total}");
    let mut seen: Vec<String> = Vec::new();
    let mut page = first;
    loop {
        seen.extend(
            page["records"].as_array().expect("records").iter().map(|r| r["Id"].as_str().expect("id").to_owned()),
        );
        if page["done"] == true {
            break;
        }
        let next = page["nextRecordsUrl"].as_str().expect("nextRecordsUrl").to_owned();
        assert!(next.starts_with("/services/data/v62.0/query/01g"), "{next}");
        page = org.get(&token, &next).await.json().await.expect("json");
    }
    assert_eq!(seen.len(), total);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), total, "no record twice");
    let bogus = org.get(&token, "/services/data/v62.0/query/01gXXXXXXXXXXXXXXX-2000").await;
    assert_eq!(bogus.status(), 400);
}

async fn error_of(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("error json");
    (
        status,
        body[0]["errorCode"].as_str().unwrap_or_default().into(),
        body[0]["message"].as_str().unwrap_or_default().into(),
    )
}

#[tokio::test]
async fn errors_are_salesforce_shaped() {
    let org = start(config(40)).await;
    let token = org.authorize().await.access;
    let (s, code, msg) = error_of(org.query(&token, "SELECT Id FORM User").await).await;
    assert_eq!((s, code.as_str()), (400, "MALFORMED_QUERY"));
    assert!(msg.contains("unexpected token: 'FORM'"), "{msg}");
    let (s, code, msg) = error_of(org.query(&token, "SELECT Id, Shoe_Size FROM User").await).await;
    assert_eq!((s, code.as_str()), (400, "INVALID_FIELD"));
    assert!(msg.contains("No such column 'Shoe_Size' on entity 'User'"), "{msg}");
    let (_, code, _) = error_of(org.query(&token, "SELECT Id FROM Opportunityy").await).await;
    assert_eq!(code, "INVALID_TYPE");
    let (_, code, msg) = error_of(org.query(&token, "SELECT Id FROM User WHERE IsActive = 'yes'").await).await;
    assert_eq!(code, "INVALID_FIELD", "{msg}");
    let (_, code, _) =
        error_of(org.query(&token, "SELECT Id FROM ReportEvent WHERE Operation = 'ReportExported'").await).await;
    assert_eq!(code, "MALFORMED_QUERY", "big objects filter on their index only");
    let (_, code, _) = error_of(org.query(&token, "SELECT Id FROM ReportEvent ORDER BY EventDate").await).await;
    assert_eq!(code, "MALFORMED_QUERY");
    let (s, code, _) = error_of(org.get("not-a-token", "/services/data/v62.0/limits").await).await;
    assert_eq!((s, code.as_str()), (401, "INVALID_SESSION_ID"));
    let (s, _, _) = error_of(org.get(&token, "/services/data/v12.0/limits").await).await;
    assert_eq!(s, 404);

    org.control("/api-limit", json!({"remaining": 1})).await;
    assert_eq!(org.get(&token, "/services/data/v62.0/limits").await.status(), 200);
    let (s, code, _) = error_of(org.get(&token, "/services/data/v62.0/limits").await).await;
    assert_eq!((s, code.as_str()), (403, "REQUEST_LIMIT_EXCEEDED"));
    org.control("/api-limit", json!({"remaining": 1000})).await;

    // Revoked and expired sessions are 401 INVALID_SESSION_ID.
    org.control("/sessions/expire", json!({})).await;
    let (s, code, _) = error_of(org.get(&token, "/services/data/v62.0/limits").await).await;
    assert_eq!((s, code.as_str()), (401, "INVALID_SESSION_ID"));
}

#[tokio::test]
async fn sobjects_groups_and_stored_report_events() {
    let org = start(config(60)).await;
    let token = org.authorize().await.access;
    let user = org.exporter().await;
    let id = user["id"].as_str().expect("id");
    let record: Value =
        org.get(&token, &format!("/services/data/v62.0/sobjects/User/{}", &id[..15])).await.json().await.expect("json");
    assert_eq!(record["Id"], id);
    assert_eq!(record["Username"], user["username"]);

    // Nested public groups, with a cycle, as GroupMember rows.
    let groups: Value = org
        .query(&token, "SELECT Id, Name, DeveloperName FROM Group WHERE Type = 'Regular'")
        .await
        .json()
        .await
        .expect("json");
    let names: Vec<&str> =
        groups["records"].as_array().expect("records").iter().filter_map(|g| g["Name"].as_str()).collect();
    assert!(names.contains(&"All Sales") && names.contains(&"Regional Managers"), "{names:?}");
    assert!(!names.contains(&"VP Sales"), "role groups are not Regular");
    let nested: Value = org
        .query(&token, "SELECT GroupId, UserOrGroupId FROM GroupMember WHERE UserOrGroupId LIKE '00G%'")
        .await
        .json()
        .await
        .expect("json");
    assert!(nested["totalSize"].as_u64().expect("n") >= 6);

    // An export is stored in ReportEvent (storing is on) and found by UserId.
    let outcome = org.control(&format!("/users/{id}/export"), json!({"rows": 25_000})).await;
    assert_eq!(outcome["event_identifiers"].as_array().expect("ids").len(), 3, "25,000 rows: three chunks");
    let q = format!(
        "SELECT EventIdentifier, Operation, RowsProcessed, ExecutionIdentifier, Sequence, EventDate FROM ReportEvent WHERE UserId = '{id}'"
    );
    let stored: Value = org.query(&token, &q).await.json().await.expect("json");
    assert_eq!(stored["totalSize"], 3, "{stored}");
    for r in stored["records"].as_array().expect("records") {
        assert_eq!(r["RowsProcessed"], 25_000.0);
        assert_eq!(r["ExecutionIdentifier"], outcome["execution_identifier"]);
        assert!(r["EventDate"].as_str().is_some_and(|d| d.ends_with("+0000")));
    }
    let since = "SELECT Id FROM ReportEvent WHERE EventDate > 2020-01-01T00:00:00Z";
    assert_eq!(org.query(&token, since).await.status(), 200);

    // Licence off: the big object disappears.
    org.control("/licence", json!({"enabled": false})).await;
    let (_, code, _) = error_of(org.query(&token, since).await).await;
    assert_eq!(code, "INVALID_TYPE");
}

fn read_metadata(session: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:met="http://soap.sforce.com/2006/04/metadata">
  <soapenv:Header><met:SessionHeader><met:sessionId>{session}</met:sessionId></met:SessionHeader></soapenv:Header>
  <soapenv:Body><met:readMetadata><met:type>RealTimeEventSettings</met:type><met:fullNames>RealTimeEvent</met:fullNames></met:readMetadata></soapenv:Body>
</soapenv:Envelope>"#
    )
}

#[tokio::test]
async fn event_manager_settings_through_read_metadata() {
    let org = start(config(40)).await;
    let token = org.authorize().await.access;
    let post = |body: String| {
        org.http
            .post(org.url("/services/Soap/m/62.0"))
            .header("content-type", "text/xml; charset=utf-8")
            .header("SOAPAction", "\"\"")
            .body(body)
            .send()
    };
    let xml = post(read_metadata(&token)).await.expect("soap").text().await.expect("xml");
    assert!(xml.contains("<entityName>ReportEventStream</entityName><isEnabled>true</isEnabled>"), "{xml}");
    org.control("/event-settings", json!({"event": "LogoutEventStream", "streaming": false})).await;
    let xml = post(read_metadata(&token)).await.expect("soap").text().await.expect("xml");
    assert!(xml.contains("<entityName>LogoutEventStream</entityName><isEnabled>false</isEnabled>"), "{xml}");
    assert!(xml.contains("<entityName>LoginEventStream</entityName><isEnabled>true</isEnabled>"));

    let fault = post(read_metadata("bogus")).await.expect("soap");
    assert_eq!(fault.status(), 500);
    assert!(fault.text().await.expect("xml").contains("sf:INVALID_SESSION_ID"));
    let garbage = post("<not-soap".into()).await.expect("soap");
    assert_eq!(garbage.status(), 500);
}
