//! OAuth 2.0 web server flow with PKCE against a running sfsim, over real sockets.

mod common;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use common::{CALLBACK, config, start};

#[tokio::test]
async fn web_server_flow_issues_tokens_salesforce_shaped() {
    let org = start(config(40)).await;
    let tokens = org.authorize().await;
    let body = &tokens.body;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["instance_url"], org.running.base_url());
    assert_eq!(body["scope"], "api refresh_token");
    assert!(body.get("expires_in").is_none(), "Salesforce sends no expires_in");
    let id = body["id"].as_str().expect("id");
    assert!(id.starts_with(&format!("{}/id/{}/005", org.running.base_url(), org.org_id())), "{id}");
    // signature = base64(HMAC-SHA256(client secret, id + issued_at))
    let issued_at = body["issued_at"].as_str().expect("issued_at as a string");
    let mut mac = Hmac::<Sha256>::new_from_slice(org.client_secret().as_bytes()).expect("key");
    mac.update(format!("{id}{issued_at}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(body["signature"], expected.as_str());

    let info: Value = org.get(&tokens.access, "/services/oauth2/userinfo").await.json().await.expect("userinfo");
    assert_eq!(info["organization_id"], org.org_id().as_str());
    assert_eq!(info["preferred_username"], org.service_login().0.as_str());
    assert!(info["user_id"].as_str().is_some_and(|u| u.starts_with("005") && u.len() == 18));
    let identity = org.get(&tokens.access, id.trim_start_matches(org.running.base_url())).await;
    assert_eq!(identity.status(), 200);
}

#[tokio::test]
async fn pkce_codes_and_refresh_are_enforced() {
    let org = start(config(40)).await;
    let (user, password) = org.service_login();
    let (id, secret) = (org.client_id(), org.client_secret());
    let query = org.authorize_as(&user, &password, "right-verifier-abcdefghijklmnopqrstuvwxyz0123456789").await;
    assert!(query.contains(&("state".into(), "st-123".into())), "state comes back");
    let code = query.iter().find(|(k, _)| k == "code").map(|(_, v)| v.clone()).expect("code");
    let exchange = |verifier: &'static str| {
        let code = code.clone();
        let (id, secret) = (id.clone(), secret.clone());
        let org = &org;
        async move {
            let r = org
                .token(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("client_id", &id),
                    ("client_secret", &secret),
                    ("redirect_uri", CALLBACK),
                    ("code_verifier", verifier),
                ])
                .await;
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = exchange("wrong-verifier-abcdefghijklmnopqrstuvwxyz0123456789").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert_eq!(body["error_description"], "invalid code verifier");
    // The failed attempt used the code up: codes are single-use.
    let (status, body) = exchange("right-verifier-abcdefghijklmnopqrstuvwxyz0123456789").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");

    let tokens = org.authorize().await;
    let bad_secret = org
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &tokens.refresh),
            ("client_id", &id),
            ("client_secret", "nope"),
        ])
        .await;
    assert_eq!(bad_secret.json::<Value>().await.expect("json")["error"], "invalid_client");
    let unsupported = org.token(&[("grant_type", "password"), ("client_id", &id)]).await;
    assert_eq!(unsupported.json::<Value>().await.expect("json")["error"], "unsupported_grant_type");

    let refresh = |token: String| {
        let (id, secret) = (id.clone(), secret.clone());
        let org = &org;
        async move {
            let r = org
                .token(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &token),
                    ("client_id", &id),
                    ("client_secret", &secret),
                ])
                .await;
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = refresh(tokens.refresh.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none());
    let fresh = body["access_token"].as_str().expect("new access token").to_owned();
    assert_eq!(org.get(&fresh, "/services/data/v62.0/limits").await.status(), 200);

    // Revoking the refresh token ends it and the sessions issued from it.
    let revoke = org
        .http
        .post(org.url("/services/oauth2/revoke"))
        .form(&[("token", &tokens.refresh)])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoke.status(), 200);
    let (status, body) = refresh(tokens.refresh.clone()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(org.get(&fresh, "/services/data/v62.0/limits").await.status(), 401);
}

#[tokio::test]
async fn a_sixth_token_revokes_the_oldest() {
    let org = start(config(40)).await;
    let first = org.authorize().await;
    let mut later = Vec::new();
    for _ in 0..5 {
        later.push(org.authorize().await);
    }
    assert_eq!(org.get(&first.access, "/services/data/v62.0/limits").await.status(), 401, "oldest revoked");
    for t in &later {
        assert_eq!(org.get(&t.access, "/services/data/v62.0/limits").await.status(), 200);
    }
}

#[tokio::test]
async fn sign_in_failures_deny_and_bad_clients() {
    let org = start(config(40)).await;
    let (user, _) = org.service_login();
    let base = [
        ("response_type", "code"),
        ("client_id", &org.client_id()),
        ("redirect_uri", CALLBACK),
        ("scope", "api refresh_token"),
        ("state", "s1"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let mut login = base.to_vec();
    login
        .extend([("action", "login"), ("username", user.as_str()), ("pw", "wrong")].map(|(k, v)| (k.into(), v.into())));
    let page = org.http.post(org.url("/services/oauth2/authorize")).form(&login).send().await.expect("login");
    // Sign-in pages may not be framed by another site.
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["content-security-policy"], "frame-ancestors 'none'");
    assert!(page.text().await.expect("html").contains("Please check your username and password"));

    // Deny: back to the client with access_denied and the state.
    let (user, password) = org.service_login();
    let mut login = base.to_vec();
    login.extend(
        [("action", "login"), ("username", user.as_str()), ("pw", password.as_str())]
            .map(|(k, v)| (k.into(), v.into())),
    );
    org.http.post(org.url("/services/oauth2/authorize")).form(&login).send().await.expect("login");
    let mut deny = base.to_vec();
    deny.push(("action".into(), "deny".into()));
    let r = org.http.post(org.url("/services/oauth2/authorize")).form(&deny).send().await.expect("deny");
    let location = r.headers()["location"].to_str().expect("location").to_owned();
    let q = common::url_query(&location);
    assert!(q.contains(&("error".into(), "access_denied".into())), "{location}");
    assert!(q.contains(&("state".into(), "s1".into())));

    // An unregistered redirect URI is refused on the page, never redirected to.
    let mut evil = base.to_vec();
    evil[2].1 = "https://evil.example/cb".into();
    let r = org.http.get(org.url("/services/oauth2/authorize")).query(&evil).send().await.expect("authorize");
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());

    // A frozen user cannot sign in; a user's markup-laden input is escaped.
    let frozen_user = org.exporter().await;
    org.control(&format!("/users/{}/state", frozen_user["id"].as_str().expect("id")), json!({"frozen": true})).await;
    let mut login = base.to_vec();
    let name = frozen_user["username"].as_str().expect("username");
    let pw = frozen_user["password"].as_str().expect("password");
    login.extend([("action", "login"), ("username", name), ("pw", pw)].map(|(k, v)| (k.into(), v.into())));
    let html = org
        .http
        .post(org.url("/services/oauth2/authorize"))
        .form(&login)
        .send()
        .await
        .expect("login")
        .text()
        .await
        .expect("html");
    assert!(html.contains("Please check your username and password"));
    let mut xss = base.to_vec();
    xss[4].1 = "\"><script>alert(1)</script>".into();
    let html = org
        .http
        .get(org.url("/services/oauth2/authorize"))
        .query(&xss)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(!html.contains("<script>alert(1)"), "state is escaped");
}

/// The SOAP `login()` envelope a client sends.
fn soap_login(username: &str, password: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8" ?><env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com"><n1:username>{username}</n1:username><n1:password>{password}</n1:password></n1:login></env:Body></env:Envelope>"#
    )
}

/// The text of the first `<name>` element.
fn element(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = xml.find(&open).map(|i| i + open.len()).unwrap_or_else(|| panic!("no <{name}> in {xml}"));
    xml[start..].split('<').next().expect("text").to_owned()
}

#[tokio::test]
async fn soap_login_gives_a_session_the_other_apis_accept_and_refuses_bad_credentials() {
    let org = start(config(20)).await;
    let (username, password) = org.service_login();
    let http = reqwest::Client::new();
    let post = |body: String| {
        http.post(org.url("/services/Soap/u/62.0"))
            .header("content-type", "text/xml; charset=UTF-8")
            .header("SOAPAction", "login")
            .body(body)
            .send()
    };
    let r = post(soap_login(&username, &password)).await.expect("login");
    assert_eq!(r.status(), 200);
    let xml = r.text().await.expect("text");
    let session = element(&xml, "sessionId");
    let server = element(&xml, "serverUrl");
    assert_eq!(server, format!("{}/services/Soap/u/62.0/{}", org.running.base_url(), org.org_id()));
    assert!(element(&xml, "userId").starts_with("005"));
    assert_eq!(element(&xml, "userName"), username);
    assert_eq!(element(&xml, "organizationId"), org.org_id());
    // The session id is a bearer token for REST.
    let query = org.get(&session, "/services/data/v62.0/query?q=SELECT+Id+FROM+User+LIMIT+1").await;
    assert_eq!(query.status(), 200);

    let r = post(soap_login(&username, "wrong password")).await.expect("refused");
    assert_eq!(r.status(), 500);
    let xml = r.text().await.expect("text");
    assert_eq!(element(&xml, "faultcode"), "sf:INVALID_LOGIN");
    assert_eq!(element(&xml, "sf:exceptionCode"), "INVALID_LOGIN");
    // A frozen user cannot sign in, whatever the password.
    let service = org.running.sim.org().service_user.to_string();
    org.control(&format!("/users/{service}/state"), json!({"frozen": true})).await;
    let r = post(soap_login(&username, &password)).await.expect("frozen");
    assert_eq!(r.status(), 500);
    let r = post("<not xml".into()).await.expect("garbage");
    assert_eq!(r.status(), 500);
}

#[tokio::test]
async fn client_credentials_run_as_the_apps_user_without_a_refresh_token() {
    let org = start(config(20)).await;
    let http = reqwest::Client::new();
    let grant = |secret: String| {
        http.post(org.url("/services/oauth2/token"))
            .form(&[
                ("grant_type", "client_credentials".to_owned()),
                ("client_id", org.client_id()),
                ("client_secret", secret),
            ])
            .send()
    };
    let r = grant(org.client_secret()).await.expect("token");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().expect("token").to_owned();
    let info: Value = org.get(&token, "/services/oauth2/userinfo").await.json().await.expect("userinfo");
    assert_eq!(info["preferred_username"], org.service_login().0.as_str(), "the app's run-as user");
    let r = grant("not the secret".into()).await.expect("refused");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn a_user_without_api_enabled_can_use_no_api() {
    use sfwire::eventbus::v1::TopicRequest;

    let org = start(config(20)).await;
    let tokens = org.authorize().await;
    let (username, password) = org.service_login();
    let sets = org.control_get("/permission-sets").await;
    let profile_set = sets
        .as_array()
        .expect("sets")
        .iter()
        .find(|s| s["Label"] == json!("Tripline Monitoring") || s["Name"] == json!("Tripline Monitoring"))
        .map(|s| s["Id"].as_str().expect("id").to_owned())
        .expect("the service account's profile set");
    org.control(&format!("/permission-sets/{profile_set}"), json!({"PermissionsApiEnabled": false})).await;

    let r = org.query(&tokens.access, "SELECT Id FROM User LIMIT 1").await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body[0]["errorCode"], "API_CURRENTLY_DISABLED");
    assert_eq!(body[0]["message"], "API is disabled for this User");

    let soap = reqwest::Client::new()
        .post(org.url("/services/Soap/u/62.0"))
        .header("content-type", "text/xml; charset=UTF-8")
        .header("SOAPAction", "login")
        .body(soap_login(&username, &password))
        .send()
        .await
        .expect("login");
    assert_eq!(soap.status(), 500);
    assert_eq!(element(&soap.text().await.expect("xml"), "sf:exceptionCode"), "API_CURRENTLY_DISABLED");

    let refused = org
        .grpc()
        .await
        .get_topic(org.request(&tokens.access, TopicRequest { topic_name: "/event/ReportEventStream".into() }))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(refused.message().contains("API is disabled"), "{}", refused.message());

    // Given back: the same token works again (the session was never ended).
    org.control(&format!("/permission-sets/{profile_set}"), json!({"PermissionsApiEnabled": true})).await;
    assert_eq!(org.query(&tokens.access, "SELECT Id FROM User LIMIT 1").await.status(), 200);
}
