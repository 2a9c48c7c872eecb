//! The Salesforce data connection: authorization, the monitored-user scope, and the
//! three subscribers whose events become file events.

pub mod health;
pub mod ingest;
pub mod lifecycle;
pub mod scope;
pub mod scope_csv;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use salesforce::api::SalesforceApi;
use salesforce::login::LoginHost;
use salesforce::oauth::{AuthorizationStart, OAuthClient, Tokens};
use salesforce::pubsub::{self, Endpoint, PubSub, RunOptions};
use serde_json::{Map, Value, json};
use sfwire::events::{EventRecord, ReportEventStream};
use sfwire::pubsub::{LOGIN_TOPIC, LOGOUT_TOPIC, REPORT_TOPIC};
use tokio::sync::watch;

use crate::events::Cidr;
use crate::store::{ConnectionRecord, Store};
use ingest::{ConnectionContext, TopicSink};
use scope::ScopeMode;

/// The connected app and endpoints a Tripline server uses.
#[derive(Debug, Clone)]
pub struct SalesforceApp {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub pubsub: Endpoint,
    /// Origins accepted besides Salesforce's own hosts (an emulated org).
    pub allowed_origins: Vec<String>,
}

impl SalesforceApp {
    pub fn oauth(&self, login: LoginHost, http: reqwest::Client) -> OAuthClient {
        OAuthClient::new(login, &self.client_id, &self.client_secret, &self.redirect_uri, http)
    }
}

/// What a new connection is asked to be.
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub display_name: String,
    pub scope: ScopeMode,
    /// The CSV line of each scope entry, for error messages (default: 1, 2, ...).
    pub scope_lines: Option<Vec<usize>>,
    pub corporate_cidrs: Vec<String>,
}

impl NewConnection {
    /// A connection scoped by an uploaded CSV file.
    pub fn from_csv(display_name: &str, csv: &scope_csv::ScopeCsv, corporate_cidrs: Vec<String>) -> NewConnection {
        let values = csv.values();
        let scope = match csv.kind {
            scope_csv::CsvKind::Users => ScopeMode::Users(values),
            scope_csv::CsvKind::Groups => ScopeMode::Groups(values),
        };
        NewConnection {
            display_name: display_name.into(),
            scope,
            scope_lines: Some(csv.entries.iter().map(|(l, _)| *l).collect()),
            corporate_cidrs,
        }
    }
}

/// Stores a connection authorized by `tokens` (from the web server flow).
pub fn save_authorized(
    store: &dyn Store,
    app: &SalesforceApp,
    login: &LoginHost,
    new: &NewConnection,
    tokens: &Tokens,
) -> anyhow::Result<ConnectionRecord> {
    let (org_id, user_id) = tokens.org_and_user().context("the identity URL names no org and user")?;
    if !salesforce::login::instance_url_ok(&tokens.instance_url, &app.allowed_origins) {
        anyhow::bail!("Salesforce returned an instance URL that is not a Salesforce host: {}", tokens.instance_url);
    }
    let (mode, entries) = match &new.scope {
        ScopeMode::All => ("all", Vec::new()),
        ScopeMode::Users(list) => ("users", list.clone()),
        ScopeMode::Groups(list) => ("groups", list.clone()),
    };
    let record = ConnectionRecord {
        id: salesforce::oauth::random_token(12),
        display_name: new.display_name.clone(),
        org_id: org_id.into(),
        instance_url: tokens.instance_url.clone(),
        login_url: login.to_string(),
        scope_mode: mode.into(),
        scope_entries: entries,
        corporate_cidrs: new.corporate_cidrs.clone(),
        refresh_token: tokens.refresh_token.clone().context("no refresh token: the app must grant refresh_token")?,
        access_token: tokens.access_token.clone(),
        service_user_id: user_id.into(),
        status: "initializing".into(),
        status_detail: None,
        created_at: chrono::Utc::now().timestamp_millis(),
    };
    store.create_connection(&record)?;
    store.set_status(&record.id, "initializing", None, "authorization")?;
    Ok(record)
}

/// Completes a web server flow from its callback parameters and stores the connection.
pub async fn finish_authorization(
    store: &dyn Store,
    app: &SalesforceApp,
    login: &LoginHost,
    new: &NewConnection,
    start: &AuthorizationStart,
    state: &str,
    code: &str,
) -> anyhow::Result<ConnectionRecord> {
    let oauth = app.oauth(login.clone(), reqwest::Client::new());
    let tokens = oauth.finish(start, state, code).await?;
    // A scope naming users or groups the org does not have is refused, by line, and
    // nothing is kept (the new token is revoked).
    let api = SalesforceApi::new(oauth.clone(), &tokens, app.allowed_origins.clone(), reqwest::Client::new())?;
    let unknown = scope::unknown_entries(&api, &new.scope).await?;
    if !unknown.is_empty() {
        let _ = oauth.revoke(api.refresh_token()).await;
        let entries = match &new.scope {
            ScopeMode::Users(e) | ScopeMode::Groups(e) => e.clone(),
            ScopeMode::All => Vec::new(),
        };
        let kind = if matches!(new.scope, ScopeMode::Users(_)) {
            scope_csv::CsvKind::Users
        } else {
            scope_csv::CsvKind::Groups
        };
        let lines = new.scope_lines.clone().unwrap_or_else(|| (1..=entries.len()).collect());
        let csv = scope_csv::ScopeCsv { kind, entries: lines.into_iter().zip(entries).collect() };
        csv.reject_unknown(&unknown)?;
    }
    save_authorized(store, app, login, new, &tokens)
}

/// Builds the API session of a stored connection.
pub fn api_for(record: &ConnectionRecord, app: &SalesforceApp, http: reqwest::Client) -> anyhow::Result<SalesforceApi> {
    let login = LoginHost::parse(&record.login_url, &app.allowed_origins)?;
    let session = salesforce::api::Session {
        instance_url: record.instance_url.clone(),
        access_token: record.access_token.clone(),
        org_id: record.org_id.clone(),
        user_id: record.service_user_id.clone(),
    };
    Ok(SalesforceApi::with_refresh_token(
        app.oauth(login, http.clone()),
        record.refresh_token.clone(),
        session,
        app.allowed_origins.clone(),
        http,
    )?)
}

/// Re-reads exports from the stored `ReportEvent` object for a window the stream lost.
pub async fn backfill_reports(ctx: &ConnectionContext, from_ms: Option<i64>, to_ms: i64) -> anyhow::Result<usize> {
    let fmt = |ms: i64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    };
    let from = from_ms.unwrap_or(to_ms - 72 * 3_600_000);
    let soql = format!(
        "SELECT {} FROM ReportEvent WHERE EventDate >= {} AND EventDate <= {}",
        ReportEventStream::FIELDS.join(", "),
        fmt(from),
        fmt(to_ms)
    );
    let records = ctx.api.query(&soql).await?;
    let events: Vec<Map<String, Value>> = records
        .into_iter()
        .filter_map(|r| match r {
            Value::Object(mut m) => {
                m.remove("attributes");
                Some(m)
            }
            _ => None,
        })
        .collect();
    let n = events.len();
    let batch = ctx.report_batch(events).await.map_err(|e| anyhow::anyhow!(e.0))?;
    let outcome = ctx.store.apply_reports(&ctx.connection_id, REPORT_TOPIC, &batch, None)?;
    if outcome.new_file_events + outcome.merged_chunks > 0 {
        let reason = format!(
            "the event stream no longer held {} export event(s); they were recovered from ReportEvent",
            outcome.new_file_events + outcome.merged_chunks
        );
        ctx.store.record_gap(&ctx.connection_id, REPORT_TOPIC, (Some(from), Some(to_ms)), &reason, true)?;
    }
    Ok(n)
}

/// How a running connection behaves.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub rescan_every: Duration,
    /// How often the org is checked (service account, permissions, Event Manager...).
    pub preflight_every: Duration,
    pub stream: RunOptions,
    /// Record exports from this time on (default: when the connection was created).
    pub monitor_from_ms: Option<i64>,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            rescan_every: Duration::from_secs(15 * 60),
            preflight_every: Duration::from_secs(3 * 60),
            stream: RunOptions::default(),
            monitor_from_ms: None,
        }
    }
}

/// A connection being monitored.
pub struct RunningConnection {
    pub context: Arc<ConnectionContext>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningConnection {
    /// Stops the subscribers and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts monitoring a stored connection: scans the scope, then subscribes to the
/// three topics and rescans periodically.
pub async fn start(
    store: Arc<dyn Store>,
    record: &ConnectionRecord,
    app: &SalesforceApp,
    settings: RunSettings,
) -> anyhow::Result<RunningConnection> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let api = Arc::new(api_for(record, app, http)?);
    let corporate =
        record.corporate_cidrs.iter().map(|c| Cidr::parse(c).map_err(anyhow::Error::msg)).collect::<Result<_, _>>()?;
    let context = Arc::new(ConnectionContext {
        connection_id: record.id.clone(),
        store: store.clone(),
        api: api.clone(),
        corporate,
        mode: ScopeMode::from_parts(&record.scope_mode, &record.scope_entries),
        // A little before creation, so clock skew between us and Salesforce loses nothing.
        monitor_from_ms: settings.monitor_from_ms.unwrap_or(record.created_at - 5 * 60_000),
        scope: RwLock::new(Default::default()),
        exporters: RwLock::new(Default::default()),
        health: RwLock::new(Default::default()),
    });
    // Monitoring starts with the last known scope, then the fresh scan replaces it.
    context.set_scope(store.scope(&record.id)?);
    let pubsub = Arc::new(PubSub::new(&app.pubsub, api)?);
    // A failing first scan does not stop monitoring with the last known scope; the
    // health check reports the cause until it is fixed.
    let scan_problem = match rescan(&context).await {
        Ok(_) => None,
        Err(e) => Some(match e.downcast_ref::<salesforce::Error>() {
            Some(api_error) => health::from_api_error(api_error),
            None => health::Problem {
                severity: health::Severity::Error,
                source: health::Source::Network,
                message: format!("{e:#}"),
            },
        }),
    };
    let mut problems = health::preflight(&context.api, &pubsub).await;
    problems.extend(scan_problem);
    problems.extend(health::from_gaps(&store.gaps(&record.id)?));
    report(&context, &problems)?;
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = Vec::new();
    for topic in [LOGIN_TOPIC, LOGOUT_TOPIC, REPORT_TOPIC] {
        let (pubsub, context, options, shutdown) =
            (pubsub.clone(), context.clone(), settings.stream.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            let mut sink = TopicSink { context: context.clone() };
            // Only the store failing ends `run`; nothing was committed for the failed
            // delivery, so starting again from the checkpoint after a pause is safe.
            while let Err(e) = pubsub::run(&pubsub, topic, &mut sink, &options, shutdown.clone()).await {
                tracing::error!(connection = %context.connection_id, topic, "storing events failed, retrying in 5 s: {e}");
                let mut shutdown = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }));
    }
    {
        let (context, pubsub, mut shutdown) = (context.clone(), pubsub.clone(), shutdown.clone());
        let every = settings.preflight_every;
        let mut saved_token = record.access_token.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.changed() => return,
                }
                let mut problems = health::preflight(&context.api, &pubsub).await;
                // Keep the newest access token, so a restart does not begin with a stale one.
                let token = context.api.session().access_token;
                if token != saved_token {
                    match context.store.set_access_token(&context.connection_id, &token) {
                        Ok(()) => saved_token = token,
                        Err(e) => tracing::warn!(connection = %context.connection_id, "saving the access token: {e}"),
                    }
                }
                let streams = context.health.read().unwrap_or_else(|e| e.into_inner()).clone();
                problems.extend(health::from_streams(streams.iter()));
                match context.store.gaps(&context.connection_id) {
                    Ok(gaps) => problems.extend(health::from_gaps(&gaps)),
                    Err(e) => tracing::warn!(connection = %context.connection_id, "reading gaps: {e}"),
                }
                if let Err(e) = report(&context, &problems) {
                    tracing::error!(connection = %context.connection_id, "cannot record the connection's health: {e}");
                }
            }
        }));
    }
    {
        let (context, mut shutdown) = (context.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(settings.rescan_every) => {}
                    _ = shutdown.changed() => return,
                }
                if let Err(e) = rescan(&context).await {
                    tracing::warn!(connection = %context.connection_id, "scope rescan failed: {e:#}");
                }
            }
        }));
    }
    Ok(RunningConnection { context, stop, tasks })
}

/// Records the status the problems mean, when it changed (status history: when, what,
/// who), with the problems and since when.
fn report(context: &ConnectionContext, problems: &[health::Problem]) -> anyhow::Result<()> {
    let record = context.store.connection(&context.connection_id)?;
    if matches!(record.status.as_str(), "paused" | "deauthorized") {
        return Ok(());
    }
    let status = health::status_for(problems);
    let previous: Vec<health::Problem> = record
        .status_detail
        .as_ref()
        .and_then(|d| d.get("problems"))
        .and_then(|p| serde_json::from_value(p.clone()).ok())
        .unwrap_or_default();
    if record.status == status && previous == problems {
        return Ok(());
    }
    let since = if record.status == status {
        record.status_detail.as_ref().and_then(|d| d.get("since")).and_then(Value::as_i64)
    } else {
        None
    };
    let detail =
        json!({ "problems": problems, "since": since.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()) });
    context.store.set_status(&context.connection_id, status, Some(&detail), "health check")?;
    Ok(())
}

/// Scans the org for monitored users and makes the result current (every
/// `rescan_every`, and on demand).
pub async fn rescan(context: &ConnectionContext) -> anyhow::Result<usize> {
    let scan = scope::scan(&context.api, &context.mode).await?;
    if !scan.unmatched.is_empty() {
        tracing::warn!(connection = %context.connection_id, "scope entries matching nobody: {:?}", scan.unmatched);
    }
    context.store.replace_scope(&context.connection_id, &scan.users)?;
    let n = scan.users.len();
    context.set_scope(scan.users);
    Ok(n)
}
