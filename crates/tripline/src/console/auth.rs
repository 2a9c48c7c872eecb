//! Signing in and out, the first admin's setup link, and the audit log page.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::page::{self, Frame, Nav};
use super::{
    Console, ConsoleError, FormData, SECURE_SESSION_COOKIE, SESSION_COOKIE, Signed, client_address, db, session_secret,
};
use crate::access::{self, Account, Role};
use crate::api::{FAILURE_WINDOW, MAX_FAILURES};

/// How long a console session lasts.
const SESSION_HOURS: i64 = 12;

/// Who acts in the audit log when a person uses the console.
pub(crate) fn actor(account: &Account) -> String {
    format!("console {}", account.username)
}

/// A local path to return to after signing in (never another site).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.starts_with("/\\") => p.to_owned(),
        _ => "/".to_owned(),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

fn login_form(next: &str, username: &str, error: Option<&str>, no_accounts: bool) -> Markup {
    page::card_page(
        "Sign in",
        html! {
            h1 { "Sign in" }
            p.muted { "Insider-risk monitoring for Salesforce report downloads." }
            @if let Some(error) = error {
                div.errors role="alert" { (error) }
            }
            @if no_accounts {
                div.notice {
                    "No account exists yet. Open the one-time setup link that " code { "tripline serve" }
                    " printed at start, or run " code { "tripline admin create-user" } "."
                }
            }
            form.stack method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                div {
                    label for="username" { "Username" }
                    input #username type="text" name="username" value=(username) autocomplete="username" required autofocus;
                }
                div {
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required;
                }
                button.primary type="submit" { "Sign in" }
            }
        },
    )
}

pub(crate) async fn login_page(
    State(console): State<Console>,
    Query(query): Query<LoginQuery>,
) -> Result<Markup, ConsoleError> {
    let no_accounts = db(&console, |s| s.accounts()).await?.is_empty();
    Ok(login_form(&local_path(query.next.as_deref()), "", None, no_accounts))
}

fn cookie(console: &Console, value: &str, max_age: i64) -> HeaderValue {
    let (name, secure) =
        if console.settings.secure_cookies { (SECURE_SESSION_COOKIE, "; Secure") } else { (SESSION_COOKIE, "") };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static("tripline_session=; Max-Age=0"))
}

/// Starts a session for `account` and sends the browser to `to`.
async fn sign_in(console: &Console, account: Account, to: &str) -> Result<Response, ConsoleError> {
    let secret = salesforce::oauth::random_token(32);
    let csrf = salesforce::oauth::random_token(24);
    let hash = crate::api::token_hash(&secret);
    let expires_at = chrono::Utc::now().timestamp_millis() + SESSION_HOURS * 3_600_000;
    let who = actor(&account);
    let client = client_address().to_string();
    db(console, move |s| {
        s.create_console_session(&hash, account.id, &csrf, expires_at)?;
        s.audit(&who, "console.sign-in", &format!("from {client}"))
    })
    .await?;
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie(console, &secret, SESSION_HOURS * 3600));
    Ok(response)
}

pub(crate) async fn login(State(console): State<Console>, body: bytes::Bytes) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["username", "password", "next"])?;
    let next = local_path(form.get("next"));
    let username = form.text("username");
    let client = client_address();
    if console.failures.recent(client) >= MAX_FAILURES {
        let message = format!(
            "Too many failed sign-ins from this address. Wait {} seconds and try again.",
            FAILURE_WINDOW.as_secs()
        );
        return Ok((StatusCode::TOO_MANY_REQUESTS, login_form(&next, &username, Some(&message), false)).into_response());
    }
    let name = username.clone();
    let found = db(&console, move |s| s.account_credentials(name.trim())).await?;
    let password = form.text("password");
    // A missing account costs the same as a wrong password.
    let checked = tokio::task::spawn_blocking(move || match found {
        Some((account, hash)) => access::verify_password(&password, &hash).then_some(account),
        None => {
            let _ = access::verify_password(&password, dummy_hash());
            None
        }
    })
    .await
    .map_err(|e| ConsoleError::internal("checking a password", &e))?;
    match checked {
        Some(account) => sign_in(&console, account, &next).await,
        None => {
            console.failures.record(client);
            tracing::warn!(%client, username = %username, "console sign-in refused");
            let form = login_form(&next, &username, Some("The username or password is not correct."), false);
            Ok((StatusCode::UNAUTHORIZED, form).into_response())
        }
    }
}

/// A hash of a random password, checked when the username is unknown.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| access::hash_password(&access::generate_password()).unwrap_or_default())
}

pub(crate) async fn logout(State(console): State<Console>, headers: axum::http::HeaderMap) -> Response {
    if let Some(secret) = session_secret(&headers) {
        let hash = crate::api::token_hash(&secret);
        if let Err(e) = db(&console, move |s| s.end_console_session(&hash)).await {
            return e.into_response();
        }
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie(&console, "", 0));
    response
}

pub(crate) async fn logout_everywhere(State(console): State<Console>, signed: Signed) -> Response {
    let account = signed.0.account.clone();
    let who = actor(&account);
    match db(&console, move |s| {
        let n = s.end_console_sessions(account.id)?;
        s.audit(&who, "console.sign-out-everywhere", &format!("{n} session(s)"))
    })
    .await
    {
        Ok(()) => {
            let mut response = Redirect::to("/login").into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie(&console, "", 0));
            response
        }
        Err(e) => e.into_response(),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetupQuery {
    token: Option<String>,
}

/// The setup link works once, while no account exists.
async fn setup_open(console: &Console, token: &str) -> Result<bool, ConsoleError> {
    let expected = console.settings.setup_token.as_deref().unwrap_or_default();
    if expected.is_empty()
        || !super::constant_time_eq(token.as_bytes(), expected.as_bytes())
        || console.setup_used.load(std::sync::atomic::Ordering::SeqCst)
    {
        return Ok(false);
    }
    Ok(db(console, |s| s.accounts()).await?.is_empty())
}

fn setup_form(token: &str, username: &str, errors: &[(&str, String)]) -> Markup {
    let error_of = |field: &str| errors.iter().find(|(f, _)| *f == field).map(|(_, m)| m.clone());
    page::card_page(
        "Set up Tripline",
        html! {
            h1 { "Create the first administrator" }
            p.muted { "This account can add data connections and invite the rest of the team." }
            @if !errors.is_empty() {
                div.errors role="alert" {
                    "Please correct the following:"
                    ul { @for (_, m) in errors { li { (m) } } }
                }
            }
            form.stack method="post" action="/setup" {
                input type="hidden" name="token" value=(token);
                div {
                    label for="username" { "Username" }
                    input #username type="text" name="username" value=(username) autocomplete="username"
                        required autofocus aria-invalid=[error_of("username").map(|_| "true")];
                    @if let Some(m) = error_of("username") { div.field-error { (m) } }
                }
                div {
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="new-password" required
                        minlength=(access::MIN_PASSWORD) aria-invalid=[error_of("password").map(|_| "true")];
                    div.hint { "At least " (access::MIN_PASSWORD) " characters." }
                    @if let Some(m) = error_of("password") { div.field-error { (m) } }
                }
                div {
                    label for="confirm" { "Confirm password" }
                    input #confirm type="password" name="confirm" autocomplete="new-password" required
                        aria-invalid=[error_of("confirm").map(|_| "true")];
                    @if let Some(m) = error_of("confirm") { div.field-error { (m) } }
                }
                button.primary type="submit" { "Create administrator" }
            }
        },
    )
}

pub(crate) async fn setup_page(
    State(console): State<Console>,
    Query(query): Query<SetupQuery>,
) -> Result<Markup, ConsoleError> {
    let token = query.token.unwrap_or_default();
    if !setup_open(&console, &token).await? {
        return Ok(page::message_page(
            "Setup link not valid",
            "This setup link has been used or is not valid. Sign in with an existing account, or create one with `tripline admin create-user`.",
        ));
    }
    Ok(setup_form(&token, "", &[]))
}

pub(crate) async fn setup(State(console): State<Console>, body: bytes::Bytes) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["token", "username", "password", "confirm"])?;
    let token = form.text("token");
    if !setup_open(&console, &token).await? {
        return Err(ConsoleError::BadRequest("This setup link has been used or is not valid.".into()));
    }
    let username = form.text("username");
    let password = form.text("password");
    let mut errors = Vec::new();
    if let Err(m) = access::check_username(&username) {
        errors.push(("username", m));
    }
    if password.chars().count() < access::MIN_PASSWORD {
        errors.push(("password", format!("A password has at least {} characters.", access::MIN_PASSWORD)));
    } else if form.get("confirm") != Some(password.as_str()) {
        errors.push(("confirm", "The two passwords differ.".to_owned()));
    }
    if !errors.is_empty() {
        return Ok((StatusCode::BAD_REQUEST, setup_form(&token, &username, &errors)).into_response());
    }
    let hash = tokio::task::spawn_blocking(move || access::hash_password(&password))
        .await
        .map_err(|e| ConsoleError::internal("hashing a password", &e))?
        .map_err(ConsoleError::BadRequest)?;
    let name = username.trim().to_owned();
    if console.setup_used.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Err(ConsoleError::BadRequest("This setup link has been used.".into()));
    }
    let account = db(&console, move |s| s.create_account(&name, Role::Admin, &hash, "setup link")).await?;
    sign_in(&console, account, "/admin/connections").await
}

pub(crate) async fn audit_page(State(console): State<Console>, signed: Signed) -> Result<Markup, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let entries = db(&console, |s| s.audit_log(500)).await?;
    Ok(page::shell(
        &frame,
        Nav::Audit,
        "Audit log",
        html! {
            div.page-head {
                div {
                    div.crumbs { "Administration" }
                    h1 { "Audit log" }
                    p { "Who signed in and what they changed, newest first (the latest 500; all of them through " code { "GET /api/v1/audit" } ")." }
                }
            }
            @if entries.is_empty() {
                div.empty { strong { "Nothing recorded yet." } "Sign-ins and changes to connections, accounts and tokens appear here." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } } }
                        tbody {
                            @for e in &entries {
                                tr {
                                    td { (page::time(e.at)) }
                                    td { (e.actor) }
                                    td { code { (e.action) } }
                                    td.truncate title=(e.target) { (e.target) }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}
