//! OAuth 2.0 web server flow with PKCE, as Salesforce serves it: the authorize page
//! (sign in, then Allow / Deny), the token endpoint, userinfo, identity URLs, revoke.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::json;
use sfwire::id::SfId;
use sha2::{Digest, Sha256};

use crate::clock::now_ms;
use crate::sessions::AuthCode;
use crate::sim::Sim;

const COOKIE: &str = "sfsim_sid";

pub fn routes() -> Router<Arc<Sim>> {
    // The pages a person signs in on may not be framed by another site (clickjacking).
    let pages = Router::new()
        .route("/", get(home))
        .route("/services/oauth2/authorize", get(authorize_page).post(authorize_submit))
        .layer(axum::middleware::map_response(no_framing));
    Router::new()
        .merge(pages)
        .route("/services/oauth2/token", axum::routing::post(token))
        .route("/services/oauth2/userinfo", get(userinfo).post(userinfo))
        .route("/services/oauth2/revoke", get(revoke_query).post(revoke_form))
        .route("/id/{org}/{user}", get(identity))
}

type Params = HashMap<String, String>;

async fn no_framing(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("frame-ancestors 'none'"));
    response
}

/// Escapes text for HTML (attribute-safe).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
<style>body{{font-family:sans-serif;background:#f3f3f3;display:flex;justify-content:center;padding-top:5em}}\
main{{background:#fff;padding:2em;border-radius:6px;width:24em;box-shadow:0 1px 4px #0003}}\
input[type=text],input[type=password]{{width:100%;padding:.5em;margin:.3em 0 1em;box-sizing:border-box}}\
button{{padding:.6em 1.4em;margin-right:.5em}}.error{{color:#c23934}}</style></head>\
<body><main><h1>{title}</h1>{body}</main></body></html>",
        title = escape(title)
    ))
}

/// The OAuth parameters carried through the sign-in and consent forms.
const CARRIED: [&str; 8] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "prompt",
];

fn hidden_fields(params: &Params) -> String {
    CARRIED
        .iter()
        .filter_map(|k| params.get(*k).map(|v| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", escape(v))))
        .collect()
}

fn login_page(sim: &Sim, params: &Params, error: Option<&str>) -> Response {
    let org = sim.org();
    let hint = params.get("login_hint").cloned().unwrap_or_default();
    let error = error.map(|e| format!("<p class=\"error\" id=\"error\">{}</p>", escape(e))).unwrap_or_default();
    page(
        &format!("Log in to {}", org.name),
        &format!(
            "{error}<form method=\"post\" action=\"/services/oauth2/authorize\">{hidden}\
<input type=\"hidden\" name=\"action\" value=\"login\">\
<label>Username<input type=\"text\" id=\"username\" name=\"username\" value=\"{hint}\"></label>\
<label>Password<input type=\"password\" id=\"password\" name=\"pw\"></label>\
<button type=\"submit\" id=\"Login\">Log In</button></form>",
            hidden = hidden_fields(params),
            hint = escape(&hint)
        ),
    )
    .into_response()
}

fn consent_page(sim: &Sim, params: &Params, user: &SfId, cookie: Option<String>) -> Response {
    let org = sim.org();
    let scopes: Vec<String> = params
        .get("scope")
        .map(|s| s.split_whitespace().map(describe_scope).map(|d| format!("<li>{}</li>", escape(d))).collect())
        .unwrap_or_default();
    let html = page(
        "Allow Access?",
        &format!(
            "<p><b>{app}</b> is asking to:</p><ul id=\"scopes\">{scopes}</ul>\
<p>Signed in as {username}.</p>\
<form method=\"post\" action=\"/services/oauth2/authorize\">{hidden}\
<button type=\"submit\" name=\"action\" value=\"allow\" id=\"oaapprove\">Allow</button>\
<button type=\"submit\" name=\"action\" value=\"deny\" id=\"oadeny\">Deny</button></form>",
            app = escape(&org.app.name),
            scopes = scopes.concat(),
            username = escape(&org.username(user)),
            hidden = hidden_fields(params)
        ),
    );
    let mut response = html.into_response();
    if let Some(cookie) = cookie.and_then(|c| format!("{COOKIE}={c}; Path=/; HttpOnly; SameSite=Lax").parse().ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

fn describe_scope(scope: &str) -> &str {
    match scope {
        "api" => "Manage user data via APIs (api)",
        "refresh_token" | "offline_access" => "Perform requests at any time (refresh_token, offline_access)",
        "id" | "profile" | "email" | "openid" => "Access the identity URL service (id, profile, email, address, phone)",
        "full" => "Full access (full)",
        other => other,
    }
}

fn error_page(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        page("Error", &format!("<p class=\"error\" id=\"error\"><b>{}</b>: {}</p>", escape(code), escape(message))),
    )
        .into_response()
}

/// Where to send the browser back to, with query parameters appended.
fn redirect_with(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let query: String = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{redirect_uri}{sep}{query}")).into_response()
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Checks the client and redirect URI; errors here are shown, never redirected, since
/// the redirect URI cannot be trusted.
fn check_client(sim: &Sim, params: &Params) -> Result<(), Box<Response>> {
    let org = sim.org();
    if params.get("client_id") != Some(&org.app.client_id) {
        return Err(Box::new(error_page(
            StatusCode::BAD_REQUEST,
            "OAUTH_EC_APP_NOT_FOUND",
            "invalid client_id: the connected app is not installed in this org",
        )));
    }
    let redirect = params.get("redirect_uri").map(String::as_str).unwrap_or_default();
    if !org.app.callback_urls.iter().any(|u| u == redirect) {
        return Err(Box::new(error_page(
            StatusCode::BAD_REQUEST,
            "redirect_uri_mismatch",
            "redirect_uri must match the connected app's callback URL",
        )));
    }
    Ok(())
}

/// A problem the client should hear about at its redirect URI.
fn check_request(params: &Params) -> Result<(), Box<Response>> {
    let redirect = params.get("redirect_uri").map(String::as_str).unwrap_or_default();
    let state = params.get("state").map(String::as_str).unwrap_or_default();
    let fail = |error: &str, description: &str| {
        Box::new(redirect_with(redirect, &[("error", error), ("error_description", description), ("state", state)]))
    };
    if params.get("response_type").map(String::as_str) != Some("code") {
        return Err(fail("unsupported_response_type", "response type not supported"));
    }
    match params.get("code_challenge_method").map(String::as_str) {
        None | Some("S256") => Ok(()),
        Some(_) => Err(fail("invalid_request", "code_challenge_method must be S256")),
    }
}

fn cookie_user(sim: &Sim, headers: &HeaderMap) -> Option<SfId> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let value = cookies.split(';').find_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")))?;
    let user = sim.sessions().browser_user(value)?;
    sim.org().user_can_sign_in(&user).then_some(user)
}

async fn home(State(sim): State<Arc<Sim>>) -> Html<String> {
    let org = sim.org();
    page("sfsim", &format!("<p>An emulated Salesforce org: <b>{}</b> ({}).</p>", escape(&org.name), org.id))
}

async fn authorize_page(State(sim): State<Arc<Sim>>, headers: HeaderMap, Query(params): Query<Params>) -> Response {
    if let Err(r) = check_client(&sim, &params).and_then(|()| check_request(&params)) {
        return *r;
    }
    let forced_login = params.get("prompt").is_some_and(|p| p.split_whitespace().any(|p| p == "login"));
    match cookie_user(&sim, &headers) {
        Some(user) if !forced_login => consent_page(&sim, &params, &user, None),
        _ => login_page(&sim, &params, None),
    }
}

async fn authorize_submit(State(sim): State<Arc<Sim>>, headers: HeaderMap, Form(params): Form<Params>) -> Response {
    if let Err(r) = check_client(&sim, &params).and_then(|()| check_request(&params)) {
        return *r;
    }
    let redirect = params.get("redirect_uri").cloned().unwrap_or_default();
    let state = params.get("state").cloned().unwrap_or_default();
    match params.get("action").map(String::as_str) {
        Some("login") => {
            let username = params.get("username").map(String::as_str).unwrap_or_default();
            let password = params.get("pw").map(String::as_str).unwrap_or_default();
            let user = {
                let org = sim.org();
                org.find_user_by_username(username.trim())
                    .filter(|u| org.passwords.get(u.as_str()).is_some_and(|p| p == password) && org.user_can_sign_in(u))
            };
            match user {
                Some(user) => {
                    let cookie = sim.sessions().browser_sign_in(&user);
                    consent_page(&sim, &params, &user, Some(cookie))
                }
                None => login_page(
                    &sim,
                    &params,
                    Some(
                        "Please check your username and password. If you still can't log in, contact your Salesforce administrator.",
                    ),
                ),
            }
        }
        Some("allow") => {
            let Some(user) = cookie_user(&sim, &headers) else { return login_page(&sim, &params, None) };
            let code = sim.sessions().issue_code(AuthCode {
                user,
                client_id: params.get("client_id").cloned().unwrap_or_default(),
                redirect_uri: redirect.clone(),
                scope: params.get("scope").cloned().unwrap_or_else(|| "api".into()),
                code_challenge: params.get("code_challenge").cloned(),
                issued_ms: now_ms(),
            });
            redirect_with(&redirect, &[("code", &code), ("state", &state)])
        }
        Some("deny") => redirect_with(
            &redirect,
            &[("error", "access_denied"), ("error_description", "end-user denied authorization"), ("state", &state)],
        ),
        _ => error_page(StatusCode::BAD_REQUEST, "invalid_request", "unknown action"),
    }
}

fn token_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error, "error_description": description }))).into_response()
}

/// The JWT bearer flow's grant type.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Checks a JWT bearer assertion as Salesforce does: RS256, signed with the key of
/// the certificate uploaded to the connected app, issued by its consumer key, for this
/// login host, not expired, for a user who may use the app. Returns the user.
fn jwt_user(sim: &Sim, assertion: &str, now: i64) -> Result<SfId, (&'static str, &'static str)> {
    const INVALID: (&str, &str) = ("invalid_grant", "invalid assertion");
    let mut parts = assertion.split('.');
    let (Some(header), Some(claims), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(INVALID);
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|_| INVALID);
    let header: serde_json::Value = serde_json::from_slice(&decode(header)?).map_err(|_| INVALID)?;
    let claims: serde_json::Value = serde_json::from_slice(&decode(claims)?).map_err(|_| INVALID)?;
    if header["alg"] != "RS256" {
        return Err(("invalid_grant", "invalid assertion: the algorithm must be RS256"));
    }
    let org = sim.org();
    if claims["iss"].as_str() != Some(org.app.client_id.as_str()) {
        return Err(("invalid_client_id", "client identifier invalid"));
    }
    let Some(certificate) = org.app.certificate_pem.as_deref() else {
        return Err(("invalid_client", "the connected app has no certificate for digital signatures"));
    };
    let key = certificate_key(certificate).map_err(|_| INVALID)?;
    let signed = &assertion[..assertion.len() - signature.len() - 1];
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key)
        .verify(signed.as_bytes(), &decode(signature)?)
        .map_err(|_| INVALID)?;
    let audiences = ["https://login.salesforce.com", "https://test.salesforce.com", sim.base_url.as_str()];
    if !claims["aud"].as_str().is_some_and(|a| audiences.contains(&a.trim_end_matches('/'))) {
        return Err(("invalid_grant", "audience is invalid"));
    }
    // Salesforce wants an expiry within a few minutes from now.
    if !claims["exp"].as_i64().is_some_and(|exp| exp * 1000 > now && exp * 1000 <= now + 3_600_000) {
        return Err(("invalid_grant", "expired authorization code"));
    }
    let user = claims["sub"].as_str().and_then(|name| org.find_user_by_username(name)).ok_or(INVALID)?;
    // The service account is pre-authorized by an admin (its profile); anyone else must
    // have approved the app through the web server flow first.
    let approved = user == org.service_user
        || sim.sessions().refresh.values().any(|r| r.user == user && r.client_id == org.app.client_id);
    if !approved {
        return Err(("invalid_grant", "user hasn't approved this consumer"));
    }
    Ok(user)
}

/// The RSA public key (PKCS#1 DER) of a PEM certificate.
pub fn certificate_key(pem: &str) -> Result<Vec<u8>, String> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem.parse_x509().map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
        return Err("the certificate's key is not an RSA key".into());
    }
    Ok(spki.subject_public_key.data.to_vec())
}

async fn token(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(params): Form<Params>,
) -> Response {
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let (client_id, client_secret) = {
        let org = sim.org();
        (org.app.client_id.clone(), org.app.client_secret.clone())
    };
    let grant = get("grant_type");
    if !matches!(grant, "authorization_code" | "refresh_token" | "client_credentials" | JWT_BEARER) {
        return token_error("unsupported_grant_type", "grant type not supported");
    }
    if !sim.org().app_ip_allowed(peer.ip()) {
        return token_error("invalid_grant", "ip restricted");
    }
    if grant == JWT_BEARER {
        // No client secret: the signed assertion stands for the app.
        let now = now_ms();
        let user = match jwt_user(&sim, get("assertion"), now) {
            Ok(user) => user,
            Err((error, description)) => return token_error(error, description),
        };
        return issue(&sim, &user, "api", None, false, now);
    }
    if get("client_id") != client_id {
        return token_error("invalid_client_id", "client identifier invalid");
    }
    if get("client_secret") != client_secret {
        return token_error("invalid_client", "invalid client credentials");
    }
    let now = now_ms();
    // The refresh token goes back with a new authorization, and when it was rotated.
    let (user, scope, refresh, hand_back) = if grant == "client_credentials" {
        // The connected app's run-as user (sfsim's: the service account); no refresh
        // token, as Salesforce gives none for this flow.
        (sim.org().service_user.clone(), "api".to_owned(), None, false)
    } else if grant == "authorization_code" {
        let Some(code) = sim.sessions().take_code(get("code"), now) else {
            return token_error("invalid_grant", "invalid authorization code");
        };
        if code.client_id != client_id {
            return token_error("invalid_grant", "invalid authorization code");
        }
        if code.redirect_uri != get("redirect_uri") {
            return token_error("invalid_grant", "redirect_uri must match configuration");
        }
        if let Some(challenge) = &code.code_challenge {
            let verifier = get("code_verifier");
            if verifier.is_empty() || URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != *challenge {
                // RFC 7636 and Salesforce: a verifier that does not match is a bad grant.
                return token_error("invalid_grant", "invalid code verifier");
            }
        }
        let wants_refresh =
            code.scope.split_whitespace().any(|s| matches!(s, "refresh_token" | "offline_access" | "full"));
        let refresh = wants_refresh.then(|| sim.sessions().issue_refresh(&code.user, &client_id, &code.scope, now));
        (code.user, code.scope, refresh, true)
    } else {
        let policy = sim.org().app.refresh_policy;
        let presented = get("refresh_token");
        let Some((r, token)) = sim.sessions().use_refresh(presented, policy, now) else {
            return token_error("invalid_grant", "expired access/refresh token");
        };
        let rotated = token != presented;
        (r.user, r.scope, Some(token), rotated)
    };
    issue(&sim, &user, &scope, refresh, hand_back, now)
}

/// Issues an access token (tied to `refresh`, if any) to a user who may sign in:
/// Salesforce's token response, with the refresh token when `hand_back`.
fn issue(sim: &Sim, user: &SfId, scope: &str, refresh: Option<String>, hand_back: bool, now: i64) -> Response {
    if !sim.org().user_can_sign_in(user) {
        return token_error("invalid_grant", "authentication failure");
    }
    let (client_id, client_secret) = {
        let org = sim.org();
        (org.app.client_id.clone(), org.app.client_secret.clone())
    };
    let access = sim.sessions().issue_access(user, &client_id, refresh.clone(), now);
    let org_id = sim.org().id.clone();
    let id_url = format!("{}/id/{}/{}", sim.base_url, org_id, user);
    let issued_at = now.to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(client_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{id_url}{issued_at}").as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    let mut body = json!({
        "access_token": access,
        "signature": signature,
        "scope": scope,
        "instance_url": sim.base_url,
        "id": id_url,
        "token_type": "Bearer",
        "issued_at": issued_at,
    });
    if let Some(refresh) = refresh.filter(|_| hand_back) {
        body["refresh_token"] = refresh.into();
    }
    Json(body).into_response()
}

/// The user behind `Authorization: Bearer ...` (or `OAuth ...`), if the token is live.
pub fn bearer_user(sim: &Sim, headers: &HeaderMap) -> Option<SfId> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("OAuth "))?.trim();
    token_user(sim, token)
}

/// The user a valid access token belongs to.
fn token_user(sim: &Sim, token: &str) -> Option<SfId> {
    let org = sim.org();
    sim.sessions().validate(token, now_ms(), |u| org.user_can_sign_in(u)).ok().map(|t| t.user)
}

fn identity_json(sim: &Sim, user: &SfId) -> serde_json::Value {
    let org = sim.org();
    let field = |f: &str| org.user_field(user, f).to_json();
    let base = &sim.base_url;
    let id_url = format!("{base}/id/{}/{}", org.id, user);
    json!({
        "sub": id_url,
        "id": id_url,
        "user_id": user.as_str(),
        "organization_id": org.id.as_str(),
        "preferred_username": field("Username"),
        "username": field("Username"),
        "nickname": field("Alias"),
        "name": field("Name"),
        "display_name": field("Name"),
        "given_name": field("FirstName"),
        "family_name": field("LastName"),
        "email": field("Email"),
        "email_verified": true,
        "active": org.user_active(user),
        "user_type": "STANDARD",
        "language": "en_US",
        "locale": "en_US",
        "zoneinfo": field("TimeZoneSidKey"),
        "is_app_installed": true,
        "urls": {
            "enterprise": format!("{base}/services/Soap/c/{{version}}/{}", org.id.short()),
            "metadata": format!("{base}/services/Soap/m/{{version}}/{}", org.id.short()),
            "rest": format!("{base}/services/data/v{{version}}/"),
            "sobjects": format!("{base}/services/data/v{{version}}/sobjects/"),
            "query": format!("{base}/services/data/v{{version}}/query/"),
            "profile": format!("{base}/{user}"),
        },
        "updated_at": crate::model::format_datetime(now_ms()),
    })
}

fn bad_token() -> Response {
    (StatusCode::FORBIDDEN, "Bad_OAuth_Token").into_response()
}

async fn userinfo(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    match bearer_user(&sim, &headers) {
        Some(user) => Json(identity_json(&sim, &user)).into_response(),
        None => bad_token(),
    }
}

async fn identity(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path((org_id, user_id)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Response {
    // The token may come as `oauth_token` instead of the header, as Salesforce allows.
    let caller = bearer_user(&sim, &headers).or_else(|| token_user(&sim, params.get("oauth_token")?));
    let Some(caller) = caller else { return bad_token() };
    let same_org = SfId::parse(&org_id).ok().is_some_and(|o| o == sim.org().id);
    match SfId::parse(&user_id) {
        Ok(user) if same_org && user == caller => Json(identity_json(&sim, &user)).into_response(),
        Ok(_) if same_org => (StatusCode::FORBIDDEN, "Bad_Id").into_response(),
        _ => (StatusCode::NOT_FOUND, "Bad_Id").into_response(),
    }
}

fn revoke(sim: &Sim, params: &Params) -> Response {
    let token = params.get("token").map(String::as_str).unwrap_or_default();
    if sim.sessions().revoke(token) {
        StatusCode::OK.into_response()
    } else {
        token_error("unsupported_token_type", "this token type is not supported")
    }
}

async fn revoke_form(State(sim): State<Arc<Sim>>, Form(params): Form<Params>) -> Response {
    revoke(&sim, &params)
}

async fn revoke_query(State(sim): State<Arc<Sim>>, Query(params): Query<Params>) -> Response {
    revoke(&sim, &params)
}
