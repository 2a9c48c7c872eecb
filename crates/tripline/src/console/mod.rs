//! The web console: server-rendered pages (maud: checked at compile time, every
//! interpolation escaped), one stylesheet and one small script compiled into the
//! binary, live updates by Server-Sent Events.
//!
//! Every route is declared once in [`routes`] with the least [`Access`] it needs; the
//! guard in front of each one signs the person in from the session cookie, refuses
//! the wrong role, and checks the CSRF token of every form (`csrf`, in url-encoded and
//! multipart bodies alike) before the handler runs. Handlers are thin: they parse the
//! request, call the library the API and CLI use, and render a page.

mod admin;
mod alerts;
mod assets;
mod auth;
mod channels;
mod connections;
mod dashboard;
mod page;
mod people;
mod risk;
mod rules;
mod search;
mod wizard;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodFilter, on};
use salesforce::error::error_chain;

use crate::access::{ConsoleSession, Role};
use crate::alerting::Alerting;
use crate::api::Failures;
use crate::api::export::Slots;
use crate::connector::Fleet;
use crate::risk::RiskPolicy;
use crate::store::{Store, StoreError};

/// How the console is served.
#[derive(Debug, Clone, Default)]
pub struct ConsoleSettings {
    /// Served over HTTPS (directly or behind `--public-url https://...`): cookies are
    /// marked Secure.
    pub secure_cookies: bool,
    /// The one-time secret of the first-admin setup link (printed at start while no
    /// account exists).
    pub setup_token: Option<String>,
    /// The corporate IP ranges (CIDR) given to connections added in the console:
    /// downloads from elsewhere go to unmonitored devices.
    pub corporate_cidrs: Vec<String>,
    /// The My Domain the wizard suggests (the emulated org, in `tripline demo`).
    pub suggested_my_domain: Option<String>,
    /// The address people open the console at (links in notifications).
    pub public_url: Option<String>,
}

#[derive(Clone)]
pub(crate) struct Console {
    store: Arc<dyn Store>,
    fleet: Arc<Fleet>,
    /// Streamed exports running (shared with the API).
    exports: Arc<Slots>,
    settings: Arc<ConsoleSettings>,
    /// Failed sign-ins by client address.
    failures: Arc<Failures>,
    drafts: Arc<wizard::Drafts>,
    /// Database work of pages running at once (the rest queue): however many people
    /// use the console, ingest keeps the CPU it needs.
    db_slots: Arc<tokio::sync::Semaphore>,
    /// Set once the setup link has created the first admin.
    setup_used: Arc<std::sync::atomic::AtomicBool>,
    /// Rules reloaded, channels tested.
    alerting: Arc<Alerting>,
    /// Risk settings and watch lists in force (replaced when an admin changes them).
    risk: Arc<RiskPolicy>,
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (sign-in, setup, assets).
    Public,
    /// A signed-in account holding at least this role.
    Signed(Role),
}

/// One console route, as the router-walking test sees it.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

struct Routes {
    router: Router<Console>,
    list: Vec<RouteInfo>,
}

impl Routes {
    fn add<H, T>(mut self, method: Method, path: &'static str, access: Access, handler: H) -> Routes
    where
        H: Handler<T, Console>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a method the router knows");
        self.list.push(RouteInfo { method, path, access });
        self.router = self.router.route(
            path,
            on(filter, handler)
                .route_layer(middleware::from_fn(move |request: Request, next: Next| guard(access, request, next))),
        );
        self
    }

    fn get<H: Handler<T, Console>, T: 'static>(self, path: &'static str, access: Access, handler: H) -> Routes {
        self.add(Method::GET, path, access, handler)
    }

    fn post<H: Handler<T, Console>, T: 'static>(self, path: &'static str, access: Access, handler: H) -> Routes {
        self.add(Method::POST, path, access, handler)
    }
}

const VIEWER: Access = Access::Signed(Role::Viewer);
const ANALYST: Access = Access::Signed(Role::Analyst);
const ADMIN: Access = Access::Signed(Role::Admin);

/// Every console route and who may use it.
fn routes() -> Routes {
    Routes { router: Router::new(), list: Vec::new() }
        .get("/assets/{name}", Access::Public, assets::asset)
        .get("/favicon.ico", Access::Public, assets::favicon)
        .get("/login", Access::Public, auth::login_page)
        .post("/login", Access::Public, auth::login)
        .get("/setup", Access::Public, auth::setup_page)
        .post("/setup", Access::Public, auth::setup)
        .post("/logout", VIEWER, auth::logout)
        .post("/logout/everywhere", VIEWER, auth::logout_everywhere)
        .get("/", VIEWER, dashboard::page)
        .get("/search", ANALYST, search::page)
        .get("/alerts", ANALYST, alerts::list)
        .get("/alerts/{id}", ANALYST, alerts::detail)
        .post("/alerts/{id}", ANALYST, alerts::update)
        .get("/rules", ANALYST, rules::list)
        .get("/rules/new", ADMIN, rules::new_page)
        .post("/rules/new", ADMIN, rules::create)
        .get("/rules/uncovered", ANALYST, rules::uncovered)
        .get("/rules/{id}", ADMIN, rules::edit_page)
        .post("/rules/{id}", ADMIN, rules::save)
        .post("/rules/{id}/enable", ADMIN, rules::enable)
        .post("/rules/{id}/disable", ADMIN, rules::disable)
        .post("/rules/{id}/delete", ADMIN, rules::delete)
        .get("/risk", ADMIN, risk::settings_page)
        .post("/risk", ADMIN, risk::save_settings)
        .get("/watchlists", ANALYST, risk::watchlists)
        .post("/watchlists", ADMIN, risk::add_watch)
        .post("/watchlists/upload", ADMIN, risk::upload_watch)
        .post("/watchlists/remove", ADMIN, risk::remove_watch)
        .get("/channels", ADMIN, channels::list)
        .get("/channels/templates", ADMIN, channels::templates_page)
        .post("/channels/templates", ADMIN, channels::save_templates)
        .get("/channels/new/{kind}", ADMIN, channels::new_page)
        .post("/channels/new/{kind}", ADMIN, channels::create)
        .get("/channels/{id}", ADMIN, channels::edit_page)
        .post("/channels/{id}", ADMIN, channels::save)
        .post("/channels/{id}/test", ADMIN, channels::test)
        .post("/channels/{id}/delete", ADMIN, channels::delete)
        .get("/users", ANALYST, people::list)
        .get("/users/{id}", ANALYST, people::person)
        .get("/search/export", ANALYST, search::export)
        .get("/search/events/{id}", ANALYST, search::event)
        .post("/search/saved", ANALYST, search::save)
        .post("/search/saved/{id}/delete", ANALYST, search::delete_saved)
        .get("/admin/connections", ADMIN, connections::list)
        .get("/live", VIEWER, connections::live)
        .get("/admin/connections/new", ADMIN, wizard::step_page)
        .post("/admin/connections/new", ADMIN, wizard::step_submit)
        .get("/oauth/salesforce/callback", ADMIN, wizard::callback)
        .get("/admin/connections/{id}", ADMIN, connections::detail)
        .get("/admin/connections/{id}/scope.csv", ADMIN, connections::scope_csv)
        .get("/admin/connections/{id}/confirm/{action}", ADMIN, connections::confirm)
        .get("/admin/connections/{id}/scope", ADMIN, connections::scope_form)
        .post("/admin/connections/{id}/scope", ADMIN, connections::scope_save)
        .get("/admin/connections/{id}/reauthorize", ADMIN, wizard::reauthorize_start_page)
        .post("/admin/connections/{id}/reauthorize", ADMIN, wizard::reauthorize_start)
        .post("/admin/connections/{id}/{action}", ADMIN, connections::act)
        .get("/admin/audit", ADMIN, auth::audit_page)
        .get("/admin/nodes", ADMIN, admin::nodes)
        .get("/admin/accounts", ADMIN, admin::accounts)
        .post("/admin/accounts", ADMIN, admin::create_account)
        .post("/admin/accounts/{id}/role", ADMIN, admin::account_role)
        .post("/admin/accounts/{id}/delete", ADMIN, admin::delete_account)
        .get("/admin/tokens", ADMIN, admin::tokens)
        .post("/admin/tokens", ADMIN, admin::create_token)
        .post("/admin/tokens/revoke", ADMIN, admin::revoke_token)
        .get("/admin/settings", ADMIN, admin::settings)
        .post("/admin/settings", ADMIN, admin::save_settings)
        .post("/admin/settings/retention", ADMIN, admin::save_retention)
        .get("/account", VIEWER, admin::my_account)
        .post("/account/password", VIEWER, admin::change_password)
}

/// The console routes with who may use each (for the test that walks them).
pub fn route_table() -> Vec<RouteInfo> {
    routes().list
}

/// What the console works with besides the store.
pub(crate) struct Parts {
    pub fleet: Arc<Fleet>,
    pub exports: Arc<Slots>,
    pub alerting: Arc<Alerting>,
    pub risk: Arc<RiskPolicy>,
}

pub(crate) fn router(store: Arc<dyn Store>, parts: Parts, settings: ConsoleSettings) -> Router {
    let Parts { fleet, exports, alerting, risk } = parts;
    let console = Console {
        store,
        fleet,
        exports,
        settings: Arc::new(settings),
        failures: Arc::default(),
        drafts: Arc::default(),
        db_slots: Arc::new(tokio::sync::Semaphore::new(DB_SLOTS)),
        setup_used: Arc::default(),
        alerting,
        risk,
    };
    // The guard in front of each route finds the console in the request.
    routes().router.layer(axum::Extension(console.clone())).layer(middleware::from_fn(observe)).with_state(console)
}

/// What is known of the request being answered: its client, who is signed in, and
/// the time spent in the database so far.
#[derive(Debug)]
struct RequestContext {
    client: IpAddr,
    session: std::sync::Mutex<Option<ConsoleSession>>,
    db_micros: AtomicU64,
}

tokio::task_local! {
    static REQUEST: Arc<RequestContext>;
}

fn client_address() -> IpAddr {
    REQUEST.try_with(|r| r.client).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Security headers, `Server-Timing` (database and total), and the request's log line.
async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let client =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let context = Arc::new(RequestContext { client, session: Default::default(), db_micros: AtomicU64::new(0) });
    let mut response = REQUEST.scope(context.clone(), next.run(request)).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let db = context.db_micros.load(Ordering::Relaxed) as f64 / 1000.0;
    let total = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(value) = HeaderValue::from_str(&format!("db;dur={db:.1}, total;dur={total:.1}")) {
        headers.insert("server-timing", value);
    }
    let who = context.session.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|s| s.account.username.clone());
    tracing::debug!(%method, %path, status = response.status().as_u16(), ms = total, db_ms = db, user = who.as_deref().unwrap_or("-"), %client, "console request");
    response
}

/// Pages' database work running at once (measured with `console_bench ingest`).
const DB_SLOTS: usize = 1;

/// Runs store work on the blocking pool, one of [`DB_SLOTS`] at a time, counting its
/// time (the wait included) for `Server-Timing`.
async fn db<T: Send + 'static>(
    console: &Console,
    work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ConsoleError> {
    let store = console.store.clone();
    let started = Instant::now();
    let slot =
        console.db_slots.clone().acquire_owned().await.map_err(|e| ConsoleError::internal("a database slot", &e))?;
    let result = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work(&*store)
    })
    .await;
    let _ = REQUEST.try_with(|r| r.db_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed));
    match result {
        Ok(result) => Ok(result?),
        Err(e) => Err(ConsoleError::internal("a storage task", &e)),
    }
}

/// Restarts a connection after a change to it. A connection that cannot start shows
/// Error with the cause on its panel; only the store failing is this request's error.
async fn restart(console: &Console, id: &str) -> Result<(), ConsoleError> {
    match console.fleet.restart(id).await {
        Err(crate::connector::Error::Store(e)) => Err(e.into()),
        _ => Ok(()),
    }
}

/// The signed-in person, put in front of every handler of a signed route.
#[derive(Debug, Clone)]
pub(crate) struct Signed(pub ConsoleSession);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Signed {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Signed>().cloned().ok_or(ConsoleError::SignedOut)
    }
}

const SESSION_COOKIE: &str = "tripline_session";
const SECURE_SESSION_COOKIE: &str = "__Host-tripline_session";

/// The session secret a request's cookies carry.
fn session_secret(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE || *name == SECURE_SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Largest form body (a scope CSV of a few thousand users fits many times over).
const MAX_FORM: usize = 4 * 1024 * 1024;

/// Signs the person in from the cookie, refuses the wrong role, and checks the CSRF
/// token of any form before `next` runs.
async fn guard(access: Access, request: Request, next: Next) -> Response {
    match admit(access, request).await {
        Ok(request) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

async fn admit(access: Access, mut request: Request) -> Result<Request, ConsoleError> {
    let Access::Signed(needed) = access else {
        // A public form (sign-in, setup) is only taken from this site's own pages.
        if request.method() != Method::GET && !same_origin(request.headers()) {
            return Err(ConsoleError::Csrf);
        }
        return Ok(request);
    };
    let console = request.extensions().get::<Console>().cloned();
    let console = console.ok_or_else(|| ConsoleError::Internal("the console state is missing".into()))?;
    let Some(secret) = session_secret(request.headers()) else {
        return Err(signed_out(&request));
    };
    let hash = crate::api::token_hash(&secret);
    let now = chrono::Utc::now().timestamp_millis();
    let Some(session) = db(&console, move |s| s.console_session(&hash, now)).await? else {
        return Err(signed_out(&request));
    };
    let _ = REQUEST.try_with(|r| *r.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(session.clone()));
    if !session.account.role.includes(needed) {
        return Err(ConsoleError::Forbidden(needed));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_FORM)
            .await
            .map_err(|_| ConsoleError::BadRequest(format!("a form has at most {} MB", MAX_FORM / 1024 / 1024)))?;
        let presented = form_csrf(&parts, &bytes).await;
        if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), session.csrf.as_bytes())) {
            tracing::warn!(client = %client_address(), user = %session.account.username, "a form without a valid CSRF token was refused");
            return Err(ConsoleError::Csrf);
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    request.extensions_mut().insert(Signed(session));
    Ok(request)
}

fn signed_out(request: &Request) -> ConsoleError {
    if request.method() == Method::GET {
        let back = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let query: String = url::form_urlencoded::Serializer::new(String::new()).append_pair("next", back).finish();
        ConsoleError::Redirect(format!("/login?{query}"))
    } else {
        ConsoleError::SignedOut
    }
}

/// The `csrf` field of a url-encoded or multipart form.
async fn form_csrf(parts: &axum::http::request::Parts, bytes: &bytes::Bytes) -> Option<String> {
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return url::form_urlencoded::parse(bytes).find(|(k, _)| k == "csrf").map(|(_, v)| v.into_owned());
    }
    if content_type.starts_with("multipart/form-data") {
        let request = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
        let mut form = axum::extract::Multipart::from_request(request, &()).await.ok()?;
        while let Ok(Some(field)) = form.next_field().await {
            if field.name() == Some("csrf") {
                return field.text().await.ok();
            }
        }
    }
    None
}

/// A request whose `Origin` (when the browser sends one) is this server's host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    url::Url::parse(origin).is_ok_and(|o| {
        let authority = match o.port() {
            Some(port) => format!("{}:{port}", o.host_str().unwrap_or_default()),
            None => o.host_str().unwrap_or_default().to_owned(),
        };
        authority.eq_ignore_ascii_case(host)
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A form's fields: each known name at most once, any other name refused.
pub(crate) struct FormData(Vec<(String, String)>);

impl FormData {
    fn parse(bytes: &[u8], known: &[&str]) -> Result<FormData, ConsoleError> {
        let mut fields = Vec::new();
        for (name, value) in url::form_urlencoded::parse(bytes) {
            if name != "csrf" && !known.contains(&name.as_ref()) {
                return Err(ConsoleError::BadRequest(format!("the form has an unknown field {name:?}")));
            }
            fields.push((name.into_owned(), value.into_owned()));
        }
        Ok(FormData(fields))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_owned()
    }

    /// Every value of a repeated field (checkboxes).
    fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// Why a console request failed, as the person sees it.
#[derive(Debug)]
pub(crate) enum ConsoleError {
    /// Not signed in (or the session ended): sign in again.
    SignedOut,
    Forbidden(Role),
    Csrf,
    NotFound(String),
    BadRequest(String),
    Redirect(String),
    /// Logged in full; the person sees a reference.
    Internal(String),
}

impl ConsoleError {
    fn internal(what: &str, cause: &dyn std::error::Error) -> ConsoleError {
        ConsoleError::Internal(format!("{what}: {}", error_chain(cause)))
    }
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ConsoleError::NotFound(m),
            StoreError::Conflict(m) => ConsoleError::BadRequest(m),
            StoreError::InvalidQuery(q) => ConsoleError::BadRequest(q.0),
            other => ConsoleError::internal("storage", &other),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            ConsoleError::Redirect(to) => return Redirect::to(&to).into_response(),
            ConsoleError::SignedOut => (
                StatusCode::UNAUTHORIZED,
                "Signed out",
                "Your session has ended. Sign in again to continue.".to_owned(),
            ),
            ConsoleError::Forbidden(role) => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                format!("This page needs the {} role. Ask an administrator for access.", role.label()),
            ),
            ConsoleError::Csrf => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form could not be verified (it may be from an old page). Go back, reload, and try again."
                    .to_owned(),
            ),
            ConsoleError::NotFound(what) => (StatusCode::NOT_FOUND, "Not found", format!("Nothing here: {what}.")),
            ConsoleError::BadRequest(message) => (StatusCode::BAD_REQUEST, "Cannot do that", message),
            ConsoleError::Internal(detail) => {
                let reference = salesforce::oauth::random_token(6);
                tracing::error!(reference = %reference, "console: {detail}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    format!(
                        "Tripline could not complete the request. The server log has the details under reference {reference}."
                    ),
                )
            }
        };
        (status, page::message_page(title, &message)).into_response()
    }
}
