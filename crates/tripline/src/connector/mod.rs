//! The Salesforce data connection at work: [`authorize`] adds one; [`start`] runs
//! one (scope scan, the three subscribers feeding [`ingest`], periodic health checks
//! and rescans); [`lifecycle`] holds what a person does to one (pause, resume,
//! deauthorize).

pub mod authorize;
mod error;
pub(crate) mod health;
pub(crate) mod ingest;
pub mod lifecycle;
pub mod scope;
pub mod scope_csv;

use std::sync::Arc;
use std::time::Duration;

use salesforce::api::SalesforceApi;
use salesforce::error::error_chain;
use salesforce::login::LoginHost;
use salesforce::oauth::OAuthClient;
use salesforce::pubsub::{self, Endpoint, PubSub, RunOptions};
use sfwire::pubsub::{LOGIN_TOPIC, LOGOUT_TOPIC, REPORT_TOPIC};
use tokio::sync::watch;
use tracing::Instrument;

pub use authorize::{NewConnection, finish_authorization};
pub use error::Error;
pub use ingest::ConnectionContext;

use crate::connection::{ConnectionRecord, Problem, StatusDetail};
use crate::events::Cidr;
use crate::store::{Store, StoreError};
use ingest::TopicSink;

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

/// Builds the API session of a stored connection.
pub fn api_for(record: &ConnectionRecord, app: &SalesforceApp, http: reqwest::Client) -> Result<SalesforceApi, Error> {
    let login = LoginHost::parse(&record.login_url, &app.allowed_origins)?;
    let session = salesforce::api::Session {
        instance_url: record.instance_url.clone(),
        access_token: record.access_token.clone(),
        org_id: record.org_id.to_string(),
        user_id: record.service_user_id.to_string(),
    };
    Ok(SalesforceApi::with_refresh_token(
        app.oauth(login, http.clone()),
        record.refresh_token.clone(),
        session,
        app.allowed_origins.clone(),
        http,
    )?)
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
/// three topics and rescans periodically. Every task runs in a `connection` span
/// (and each subscriber in a `topic` span) so one connection's story can be followed
/// in the logs.
pub async fn start(
    store: Arc<dyn Store>,
    record: &ConnectionRecord,
    app: &SalesforceApp,
    settings: RunSettings,
) -> Result<RunningConnection, Error> {
    let span = tracing::info_span!("connection", id = %record.id);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let api = Arc::new(api_for(record, app, http)?);
    let corporate =
        record.corporate_cidrs.iter().map(|c| Cidr::parse(c).map_err(Error::Setting)).collect::<Result<_, _>>()?;
    let context = Arc::new(ConnectionContext::new(
        record.id.clone(),
        store.clone(),
        api.clone(),
        corporate,
        record.scope.clone(),
        // A little before creation, so clock skew between us and Salesforce loses nothing.
        settings.monitor_from_ms.unwrap_or(record.created_at - 5 * 60_000),
    ));
    // Monitoring starts with the last known scope, then the fresh scan replaces it.
    context.set_scope(store.scope(&record.id)?);
    let pubsub = Arc::new(PubSub::new(&app.pubsub, api)?);
    // A failing first scan does not stop monitoring with the last known scope; the
    // health check reports the cause until it is fixed.
    let scan = rescan(&context).instrument(span.clone()).await;
    let mut problems = health::preflight(&context.api, &pubsub).instrument(span.clone()).await;
    problems.extend(scan.err().as_ref().map(Error::problem));
    problems.extend(health::stored(&*store, &record.id)?);
    report(&context, &problems)?;
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = Vec::new();
    for topic in [LOGIN_TOPIC, LOGOUT_TOPIC, REPORT_TOPIC] {
        let (pubsub, context, options, shutdown) =
            (pubsub.clone(), context.clone(), settings.stream.clone(), shutdown.clone());
        let topic_span = tracing::info_span!(parent: &span, "topic", topic);
        tasks.push(tokio::spawn(
            async move {
                let mut sink = TopicSink { context };
                // Only the store failing ends `run`; nothing was committed for the failed
                // delivery, so starting again from the checkpoint after a pause is safe.
                while let Err(e) = pubsub::run(&pubsub, topic, &mut sink, &options, shutdown.clone()).await {
                    tracing::error!("storing events failed, retrying in 5 s: {e}");
                    let mut shutdown = shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
            .instrument(topic_span),
        ));
    }
    tasks.push(tokio::spawn(
        health_checks(context.clone(), pubsub, settings.preflight_every, record.access_token.clone(), shutdown.clone())
            .instrument(span.clone()),
    ));
    tasks.push(tokio::spawn(rescans(context.clone(), settings.rescan_every, shutdown).instrument(span)));
    Ok(RunningConnection { context, stop, tasks })
}

/// Checks the org every `every` and records what the checks and the subscribers say.
async fn health_checks(
    context: Arc<ConnectionContext>,
    pubsub: Arc<PubSub>,
    every: Duration,
    mut saved_token: String,
    mut shutdown: watch::Receiver<bool>,
) {
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
                Err(e) => tracing::warn!("saving the access token: {}", error_chain(&e)),
            }
        }
        problems.extend(health::from_streams(&context.stream_health()));
        match health::stored(&*context.store, &context.connection_id) {
            Ok(stored) => problems.extend(stored),
            Err(e) => tracing::warn!("reading gaps and kept-aside events: {}", error_chain(&e)),
        }
        if let Err(e) = report(&context, &problems) {
            tracing::error!("cannot record the connection's health: {}", error_chain(&e));
        }
    }
}

async fn rescans(context: Arc<ConnectionContext>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = rescan(&context).await {
            tracing::warn!("scope rescan failed: {}", error_chain(&e));
        }
    }
}

/// Records the status the problems mean, when it changed (status history: when, what,
/// who), with the problems and since when. A status a person set (paused,
/// deauthorized) is left alone.
fn report(context: &ConnectionContext, problems: &[Problem]) -> Result<(), StoreError> {
    let record = context.store.connection(&context.connection_id)?;
    if record.status.is_held() {
        return Ok(());
    }
    let status = StatusDetail::status(problems);
    let previous = record.status_detail.as_ref();
    if record.status == status && previous.map_or(problems.is_empty(), |d| d.problems == problems) {
        return Ok(());
    }
    let since = match previous {
        Some(d) if record.status == status => d.since,
        _ => chrono::Utc::now().timestamp_millis(),
    };
    let detail = StatusDetail { problems: problems.to_vec(), since };
    context.store.set_status(&context.connection_id, status, Some(&detail), "health check")?;
    Ok(())
}

/// Scans the org for monitored users and makes the result current (every
/// `rescan_every`, and on demand).
pub async fn rescan(context: &ConnectionContext) -> Result<usize, Error> {
    let scan = scope::scan(&context.api, &context.mode).await?;
    if !scan.unmatched.is_empty() {
        tracing::warn!("scope entries matching nobody: {:?}", scan.unmatched);
    }
    context.store.replace_scope(&context.connection_id, &scan.users)?;
    let n = scan.users.len();
    context.set_scope(scan.users);
    Ok(n)
}
