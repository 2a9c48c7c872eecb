//! The console over HTTP, as a browser without JavaScript uses it: every route refuses
//! the wrong role and every form its missing token, sessions are cookies with the
//! right flags, sign-in is throttled, Salesforce text renders inert. (The browser
//! walks are in `e2e/`, in a real Chromium.)

mod common;

use common::Scenario;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use sfwire::id::{SfId, prefix};
use tripline::access::{Role, hash_password};
use tripline::connection::ScopeMode;
use tripline::console::{Access, ConsoleSettings, route_table};
use tripline::events::{Attribution, Destination, Evidence, FileEvent};
use tripline::people::SalesforceUser;
use tripline::risk::Severity;
use tripline::store::{ExportChunk, ReportBatch};

const PASSWORD: &str = "correct horse battery";

/// A cookie-keeping client that does not follow redirects.
fn client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn account(s: &Scenario, username: &str, role: Role) {
    s.store.create_account(username, role, &hash_password(PASSWORD).expect("hash"), "test").expect("account");
}

/// Signs in; the client keeps the session cookie. Returns the session's CSRF token.
async fn sign_in(base: &str, http: &reqwest::Client, username: &str) -> String {
    let r = http
        .post(format!("{base}/login"))
        .form(&[("username", username), ("password", PASSWORD), ("next", "/")])
        .send()
        .await
        .expect("sign in");
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signing in as {username}");
    let page = http.get(format!("{base}/")).send().await.expect("home").text().await.expect("text");
    csrf_of(&page)
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().expect("value").to_owned()
}

/// A route's path with its parameters filled in.
fn concrete(path: &str, connection: &str) -> String {
    path.replace("{id}", connection).replace("{action}", "pause").replace("{name}", "console.css")
}

#[tokio::test]
async fn every_route_refuses_the_wrong_role_and_every_form_its_missing_token() {
    let s = Scenario::new(10).await;
    let record = s.connect("Acme", ScopeMode::All).await;
    account(&s, "vera", Role::Viewer);
    account(&s, "ana", Role::Analyst);
    account(&s, "adam", Role::Admin);
    let served = s.serve().await;
    let base = &served.base;
    let anonymous = client();
    let viewer = client();
    sign_in(base, &viewer, "vera").await;
    let analyst = client();
    sign_in(base, &analyst, "ana").await;
    let admin = client();
    let csrf = sign_in(base, &admin, "adam").await;

    let routes = route_table();
    assert!(routes.len() >= 15, "{routes:?}");
    let mut public: Vec<String> =
        routes.iter().filter(|r| r.access == Access::Public).map(|r| format!("{} {}", r.method, r.path)).collect();
    public.sort();
    let expected = ["GET /assets/{name}", "GET /favicon.ico", "GET /login", "GET /setup", "POST /login", "POST /setup"];
    assert_eq!(public, expected, "only sign-in, setup and assets answer without a session");
    for route in &routes {
        let url = format!("{base}{}", concrete(route.path, &record.id));
        let send = |http: &reqwest::Client, form: Vec<(&str, &str)>| {
            let request = http.request(route.method.clone(), &url);
            let request = if route.method == reqwest::Method::GET { request } else { request.form(&form) };
            request.send()
        };
        let Access::Signed(needed) = route.access else { continue };
        // No session: pages send to the sign-in, forms are refused.
        let r = send(&anonymous, Vec::new()).await.expect("anonymous");
        if route.method == reqwest::Method::GET {
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "{route:?}");
            let to = r.headers()[LOCATION].to_str().expect("location");
            assert!(to.starts_with("/login?next="), "{route:?} -> {to}");
        } else {
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{route:?}");
        }
        // A role below the one needed is refused.
        for (http, role) in [(&viewer, Role::Viewer), (&analyst, Role::Analyst)] {
            if !role.includes(needed) {
                let r = send(http, vec![("csrf", "x")]).await.expect("lower role");
                assert_eq!(r.status(), StatusCode::FORBIDDEN, "{role:?} at {route:?}");
            }
        }
        // A form without its token, or with another one, changes nothing.
        if route.method != reqwest::Method::GET {
            for form in [Vec::new(), vec![("csrf", "not-the-token")]] {
                let r = send(&admin, form).await.expect("no token");
                assert_eq!(r.status(), StatusCode::FORBIDDEN, "{route:?}");
            }
        }
    }
    // The refused pause did nothing; with the token it pauses at once.
    let stored = s.store.connection(&record.id).expect("record");
    assert_ne!(stored.status, tripline::connection::ConnectionStatus::Paused);
    let r = admin
        .post(format!("{base}/admin/connections/{}/pause", record.id))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("pause");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(s.store.connection(&record.id).expect("record").status, tripline::connection::ConnectionStatus::Paused);
    let audit = s.store.audit_log(10).expect("audit");
    assert!(audit.iter().any(|e| e.action == "connection.pause" && e.actor == "console adam"), "{audit:?}");
    served.stop().await;
}

#[tokio::test]
async fn sessions_are_secure_cookies_sign_in_is_throttled_and_sign_out_ends_the_session() {
    let s = Scenario::new(5).await;
    account(&s, "adam", Role::Admin);
    let served = s.serve_console(ConsoleSettings { secure_cookies: true, ..Default::default() }).await;
    let base = &served.base;
    let http = client();

    // Security headers on every answer, the sign-in page included.
    let r = http.get(format!("{base}/login")).send().await.expect("login page");
    let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().expect("csp").to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["referrer-policy"], "same-origin");
    let page = r.text().await.expect("text");
    assert!(!page.contains("<script>") && !page.contains(" onclick="), "no inline script");

    let r = http
        .post(format!("{base}/login"))
        .form(&[("username", "ADAM"), ("password", PASSWORD)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "usernames are case-insensitive");
    let cookie = r.headers()[SET_COOKIE].to_str().expect("cookie").to_owned();
    for flag in ["__Host-tripline_session=", "HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    // The cookie store keeps a Secure cookie for https only: send it by hand.
    let session = cookie.split(';').next().expect("pair").to_owned();
    let page = |cookie: String| {
        let http = client();
        let base = base.clone();
        async move { http.get(format!("{base}/")).header("cookie", cookie).send().await.expect("page") }
    };
    let r = page(session.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let timing = r.headers()["server-timing"].to_str().expect("timing").to_owned();
    assert!(timing.contains("db;dur=") && timing.contains("total;dur="), "{timing}");
    let csrf = csrf_of(&r.text().await.expect("text"));
    let r = client()
        .post(format!("{base}/logout"))
        .header("cookie", session.clone())
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("sign out");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(page(session).await.status(), StatusCode::SEE_OTHER, "the ended session no longer works");

    // A form posted from another site is refused before any password is checked.
    let r = http
        .post(format!("{base}/login"))
        .header("origin", "https://evil.example")
        .form(&[("username", "adam"), ("password", PASSWORD)])
        .send()
        .await
        .expect("cross-site");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Wrong passwords: refused, then throttled, even with the right one.
    for _ in 0..10 {
        let r = http
            .post(format!("{base}/login"))
            .form(&[("username", "adam"), ("password", "wrong password!")])
            .send()
            .await
            .expect("wrong");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = http
        .post(format!("{base}/login"))
        .form(&[("username", "adam"), ("password", PASSWORD)])
        .send()
        .await
        .expect("throttled");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    served.stop().await;
}

#[tokio::test]
async fn the_setup_link_creates_the_first_admin_once() {
    let s = Scenario::new(5).await;
    let served =
        s.serve_console(ConsoleSettings { setup_token: Some("setup-secret".into()), ..Default::default() }).await;
    let base = &served.base;
    let http = client();
    let page = http.get(format!("{base}/setup?token=wrong")).send().await.expect("setup").text().await.expect("text");
    assert!(page.contains("not valid"), "{page}");
    let form = |password: &'static str, confirm: &'static str| {
        vec![("token", "setup-secret"), ("username", "first"), ("password", password), ("confirm", confirm)]
    };
    let r = http.post(format!("{base}/setup")).form(&form("short", "short")).send().await.expect("short");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = r.text().await.expect("text");
    assert!(text.contains("at least 12 characters") && text.contains("value=\"first\""), "kept what was typed");
    let r = http.post(format!("{base}/setup")).form(&form(PASSWORD, PASSWORD)).send().await.expect("setup");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let accounts = s.store.accounts().expect("accounts");
    assert_eq!(accounts.len(), 1);
    assert_eq!((accounts[0].username.as_str(), accounts[0].role), ("first", Role::Admin));
    let r = client().post(format!("{base}/setup")).form(&form(PASSWORD, PASSWORD)).send().await.expect("again");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "the link works once");
    assert_eq!(s.store.accounts().expect("accounts").len(), 1);
    served.stop().await;
}

fn hostile_event(connection: &str, at: i64) -> ExportChunk {
    ExportChunk {
        event_identifier: "ev-hostile".into(),
        file_event: FileEvent {
            seq: 0,
            id: "fe-hostile".into(),
            connection_id: connection.into(),
            observed_at: at,
            ingested_at: at,
            attribution: Attribution::LoginSession,
            user_id: SfId::generate(prefix::USER, "0A", 77),
            username: Some("=cmd|' /C calc'!A0".into()),
            email: None,
            user_name: None,
            report_id: None,
            report_name: Some("<script>alert('report')</script>".into()),
            report_description: None,
            report_type: None,
            report_format: None,
            export_format: Some("<b>csv</b>".into()),
            operation: None,
            rows: 12_345,
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
            destination: Destination::Unmonitored,
            risk_score: 1,
            severity: Severity::Low,
            indicators: Vec::new(),
            raw: vec![Evidence::of(&serde_json::json!({"EventIdentifier": "ev-hostile"}))],
        },
    }
}

#[tokio::test]
async fn salesforce_text_renders_inert_in_pages_and_exports() {
    let s = Scenario::new(10).await;
    let record = s.connect("<img src=x onerror=alert(1)>", ScopeMode::All).await;
    let now = chrono::Utc::now().timestamp_millis();
    let batch = ReportBatch { exports: vec![hostile_event(&record.id, now)], ..Default::default() };
    s.store.apply_reports(&record.id, "/event/ReportEventStream", &batch, None).expect("store");
    let user = SalesforceUser {
        user_id: SfId::generate(prefix::USER, "0A", 78),
        username: "=cmd|' /C calc'!A0".into(),
        email: Some("+1@x.example".into()),
        name: Some("<script>alert('name')</script>".into()),
    };
    s.store.replace_scope(&record.id, &[user]).expect("scope");
    // Paused: no scan replaces the scope above while the pages are read.
    s.store.set_status(&record.id, tripline::connection::ConnectionStatus::Paused, None, "test").expect("pause");
    account(&s, "adam", Role::Admin);
    let served = s.serve().await;
    let base = &served.base;
    let http = client();
    sign_in(base, &http, "adam").await;
    for path in [
        "/".to_owned(),
        "/admin/connections".into(),
        format!("/admin/connections/{}", record.id),
        "/admin/audit".into(),
    ] {
        let page = http.get(format!("{base}{path}")).send().await.expect("page").text().await.expect("text");
        for raw in ["<script>alert", "<img src=x", "<b>csv"] {
            assert!(!page.contains(raw), "{raw} is live in {path}");
        }
        if path.contains("connections") {
            assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"), "the name is shown escaped in {path}");
        }
    }
    let home = http.get(format!("{base}/")).send().await.expect("home").text().await.expect("text");
    assert!(home.contains("&lt;script&gt;alert('report')&lt;/script&gt;") && home.contains("12,345 rows"), "{home}");
    let csv = http
        .get(format!("{base}/admin/connections/{}/scope.csv", record.id))
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    let line = csv.lines().nth(1).expect("a user");
    assert!(line.starts_with("'=cmd|") && line.contains(",'+1@x.example,"), "{line}");
    served.stop().await;
}

#[tokio::test]
async fn admins_add_accounts_with_a_password_shown_once_and_change_their_roles() {
    let s = Scenario::new(5).await;
    account(&s, "adam", Role::Admin);
    let served = s.serve().await;
    let base = &served.base;
    let admin = client();
    let csrf = sign_in(base, &admin, "adam").await;
    let page = admin
        .post(format!("{base}/admin/accounts"))
        .form(&[("csrf", csrf.as_str()), ("username", "nina"), ("role", "analyst")])
        .send()
        .await
        .expect("add")
        .text()
        .await
        .expect("text");
    let at = page.find("id=\"secret\">").expect("the password is shown") + "id=\"secret\">".len();
    let password = page[at..].split('<').next().expect("password").to_owned();
    let nina = s.store.accounts().expect("accounts").into_iter().find(|a| a.username == "nina").expect("nina");
    assert_eq!(nina.role, Role::Analyst);
    // The new person signs in with it and changes it; their sessions end.
    let person = client();
    let r = person
        .post(format!("{base}/login"))
        .form(&[("username", "nina"), ("password", password.as_str())])
        .send()
        .await
        .expect("sign in");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = person.get(format!("{base}/account")).send().await.expect("account").text().await.expect("text");
    let theirs = csrf_of(&page);
    let r = person
        .post(format!("{base}/account/password"))
        .form(&[("csrf", theirs.as_str()), ("current", password.as_str()), ("new", PASSWORD), ("confirm", PASSWORD)])
        .send()
        .await
        .expect("change");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(person.get(format!("{base}/search")).send().await.expect("page").status(), StatusCode::SEE_OTHER);
    sign_in(base, &person, "nina").await;
    // An admin changes the role; the person's next page knows it.
    let r = admin
        .post(format!("{base}/admin/accounts/{}/role", nina.id))
        .form(&[("csrf", csrf.as_str()), ("role", "viewer")])
        .send()
        .await
        .expect("role");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(person.get(format!("{base}/search")).send().await.expect("page").status(), StatusCode::FORBIDDEN);
    // An admin cannot demote themselves; removing needs the name ticked.
    let me = s.store.accounts().expect("accounts").into_iter().find(|a| a.username == "adam").expect("adam");
    let r = admin
        .post(format!("{base}/admin/accounts/{}/role", me.id))
        .form(&[("csrf", csrf.as_str()), ("role", "viewer")])
        .send()
        .await
        .expect("self");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = admin
        .post(format!("{base}/admin/accounts/{}/delete", nina.id))
        .form(&[("csrf", csrf.as_str()), ("confirm", "someone else")])
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = admin
        .post(format!("{base}/admin/accounts/{}/delete", nina.id))
        .form(&[("csrf", csrf.as_str()), ("confirm", "nina")])
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        person.get(format!("{base}/")).send().await.expect("page").status(),
        StatusCode::SEE_OTHER,
        "signed out"
    );
    let audit: Vec<String> = s.store.audit_log(20).expect("audit").into_iter().map(|e| e.action).collect();
    for action in ["account.create (analyst)", "account.password", "account.role (viewer)", "account.delete"] {
        assert!(audit.iter().any(|a| a == action), "{action} in {audit:?}");
    }
    served.stop().await;
}

/// Posts a console form with the session's token.
async fn post(http: &reqwest::Client, url: &str, csrf: &str) -> reqwest::Response {
    http.post(url).form(&[("csrf", csrf)]).send().await.expect("post")
}

#[tokio::test]
async fn a_deauthorized_connection_is_authorized_again_from_its_panel_then_removed() {
    let s = Scenario::new(10).await;
    let record = s.connect("Acme", ScopeMode::All).await;
    account(&s, "adam", Role::Admin);
    let served = s.serve().await;
    let base = &served.base;
    let admin = client();
    let csrf = sign_in(base, &admin, "adam").await;
    let detail = format!("{base}/admin/connections/{}", record.id);
    s.wait_status(&record.id, tripline::connection::ConnectionStatus::Monitoring, &[]).await;
    assert_eq!(post(&admin, &format!("{detail}/deauthorize"), &csrf).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        s.store.connection(&record.id).expect("record").status,
        tripline::connection::ConnectionStatus::Deauthorized
    );

    // Authorize again: to Salesforce's sign-in, Allow, back to the callback.
    let r = admin
        .post(format!("{detail}/reauthorize"))
        .form(&[("csrf", csrf.as_str()), ("my_domain", s.org.base_url())])
        .send()
        .await
        .expect("reauthorize");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let authorize_url = r.headers()[LOCATION].to_str().expect("location").to_owned();
    let (user, password) = s.org.service_account();
    let callback = sfsim::browser::sign_in_and_allow(&authorize_url, &user, &password).await.expect("allowed");
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("code", &callback.code)
        .append_pair("state", callback.state.as_deref().unwrap_or_default())
        .finish();
    let r = admin.get(format!("{base}/oauth/salesforce/callback?{query}")).send().await.expect("callback");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()[LOCATION].to_str().expect("location").contains("authorized+again"));
    let back = s.wait_status(&record.id, tripline::connection::ConnectionStatus::Monitoring, &[]).await;
    assert_eq!(back.id, record.id, "the same connection, its history kept");
    let history = s.store.status_history(&record.id).expect("history");
    assert!(history.iter().any(|h| h.status == tripline::connection::ConnectionStatus::Deauthorized), "{history:?}");

    // Remove needs deauthorizing first; its downloads stay.
    assert_eq!(post(&admin, &format!("{detail}/remove"), &csrf).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(post(&admin, &format!("{detail}/deauthorize"), &csrf).await.status(), StatusCode::SEE_OTHER);
    let r = post(&admin, &format!("{detail}/remove"), &csrf).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(s.store.connections().expect("list").is_empty());
    let audit: Vec<String> = s.store.audit_log(20).expect("audit").into_iter().map(|e| e.action).collect();
    for action in ["connection.deauthorize", "connection.reauthorize", "connection.remove"] {
        assert!(audit.iter().any(|a| a == action), "{action} in {audit:?}");
    }
    served.stop().await;
}

#[tokio::test]
async fn corporate_ranges_are_set_for_every_connection_and_a_bad_line_changes_nothing() {
    let s = Scenario::new(10).await;
    let record = s.connect("Acme", ScopeMode::All).await;
    account(&s, "adam", Role::Admin);
    let served = s.serve().await;
    let base = &served.base;
    let admin = client();
    let csrf = sign_in(base, &admin, "adam").await;
    let save = |ranges: &'static str| {
        admin
            .post(format!("{base}/admin/settings"))
            .form(&[("csrf", csrf.as_str()), ("corporate_ranges", ranges)])
            .send()
    };
    let r = save("10.0.0.0/8\nnot a range\n").await.expect("bad");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.expect("text").contains("Line 2"), "the line is named");
    let before = s.store.connection(&record.id).expect("record").corporate_cidrs;
    assert_ne!(before, ["10.0.0.0/8"]);
    let r = save("10.0.0.0/8\n\n  192.168.0.0/16  \n").await.expect("good");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.store.connection(&record.id).expect("record").corporate_cidrs, ["10.0.0.0/8", "192.168.0.0/16"]);
    assert_eq!(
        s.store.corporate_ranges().expect("setting"),
        Some(vec!["10.0.0.0/8".to_owned(), "192.168.0.0/16".to_owned()])
    );
    served.stop().await;
}
