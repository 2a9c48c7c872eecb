//! The Salesforce data connection at work: [`authorize`] adds one; [`start`] runs
//! one (scope scan, the three subscribers feeding [`ingest`], periodic health checks
//! and rescans); [`lifecycle`] holds what a person does to one (pause, resume,
//! deauthorize).

pub mod authorize;
mod error;
pub mod fleet;
pub(crate) mod health;
pub(crate) mod ingest;
pub mod lifecycle;
pub mod scope;
pub mod scope_csv;

use std::sync::Arc;
use std::time::{Duration, Instant};

use salesforce::api::SalesforceApi;
use salesforce::error::error_chain;
use salesforce::login::LoginHost;
use salesforce::oauth::OAuthClient;
use salesforce::pubsub::{self, Endpoint, PubSub, RunOptions, StreamHealth};
use sfwire::pubsub::{LOGIN_TOPIC, LOGOUT_TOPIC, REPORT_TOPIC};
use tokio::sync::watch;
use tracing::Instrument;

pub use authorize::{NewConnection, finish_authorization, finish_reauthorization};
pub use error::Error;
pub use fleet::Fleet;
pub use ingest::ConnectionContext;

use crate::connection::{ConnectionRecord, Problem, ProblemSeverity, StatusDetail};
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

/// A connection's tokens in the store: each refreshed session is written at once (a
/// restart then begins with a live token, and a rotated refresh token, the only one
/// that works after its predecessor was used, is not lost), and the stored refresh
/// token is what another session of the connection rotated to.
pub struct StoredTokens {
    pub store: Arc<dyn Store>,
    pub connection_id: String,
}

impl salesforce::api::TokenKeeper for StoredTokens {
    fn save(&self, session: &salesforce::api::Session, rotated: Option<&str>) {
        if let Err(e) = self.store.set_tokens(&self.connection_id, &session.access_token, rotated) {
            tracing::error!("cannot keep the refreshed Salesforce tokens: {}", error_chain(&e));
        }
    }

    fn refresh_token(&self) -> Option<String> {
        self.store.connection(&self.connection_id).ok().map(|r| r.refresh_token)
    }
}

/// How a running connection behaves.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub rescan_every: Duration,
    /// How often Event Manager and the licence are checked: one Metadata API call
    /// (17,280 a day at 5 s; a fault shows within this, plus the check itself).
    pub check_every: Duration,
    /// How often the service account is checked too (a few REST calls).
    pub preflight_every: Duration,
    /// An org that answers a check slower than this is reported unreachable.
    pub check_deadline: Duration,
    /// How often the instance is asked whether it answers at all (the API versions: no
    /// session, counted against no limit), and how long it is given: these bound how
    /// long a silent org goes unreported, wherever between two checks it fell silent
    /// (2 s + 3 s, well within the promised 10 s; checks alone took up to 9 s).
    pub pulse_every: Duration,
    pub pulse_deadline: Duration,
    /// How often stored exports are compared with Salesforce's stored `ReportEvent`
    /// object, so that a loss nobody foresaw is still found and filled.
    pub reconcile_every: Duration,
    /// How long the stream is given to deliver an export before reconciliation counts
    /// it missing.
    pub reconcile_lag: Duration,
    pub stream: RunOptions,
    /// Record exports from this time on (default: when the connection was created).
    pub monitor_from_ms: Option<i64>,
    /// Risk settings and watch lists (a server shares one among its connectors).
    pub risk: Arc<crate::risk::RiskPolicy>,
    /// The file events each commit stored, handed to alerting (which waits on it).
    pub stored: Arc<Stored>,
}

/// File events just committed, held briefly so the alert evaluator takes them from
/// memory instead of reading them back (during a catch-up the read cost as much as
/// the evaluation). The store stays the truth: whatever is not held here, or not held
/// in one unbroken run from where the evaluator stands, it reads from the store.
#[derive(Debug, Default)]
pub struct Stored {
    notify: tokio::sync::Notify,
    /// Whether an evaluator takes held events (it has rules): else none are held
    /// (holding them cost ingest 10% and 55 MB with no one to take them; measured).
    wanted: std::sync::atomic::AtomicBool,
    /// Batches by their first `seq`; each is one transaction's new events, in order.
    held: std::sync::Mutex<std::collections::BTreeMap<i64, Vec<crate::events::FileEvent>>>,
}

impl Stored {
    /// At most this many events are held; the oldest batches go first.
    const HOLD: usize = 20_000;

    /// Says whether events should be held (an evaluator with rules takes them). Held
    /// events are let go when none are wanted.
    pub fn set_wanted(&self, wanted: bool) {
        self.wanted.store(wanted, std::sync::atomic::Ordering::Relaxed);
        if !wanted {
            self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        }
    }

    /// A commit stored these new file events (each with its `seq`, in `seq` order):
    /// held if wanted (taken from `events` only then), without their raw evidence
    /// (rules do not read it), and those waiting are woken.
    pub fn committed(&self, events: impl IntoIterator<Item = crate::events::FileEvent>) {
        if !self.wanted.load(std::sync::atomic::Ordering::Relaxed) {
            self.notify.notify_waiters();
            return;
        }
        let events: Vec<_> = events.into_iter().map(|e| crate::events::FileEvent { raw: Vec::new(), ..e }).collect();
        let Some(first) = events.first().map(|e| e.seq) else { return };
        {
            let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            held.insert(first, events);
            let mut total: usize = held.values().map(Vec::len).sum();
            while total > Self::HOLD {
                let Some((_, oldest)) = held.pop_first() else { break };
                total -= oldest.len();
            }
        }
        self.notify.notify_waiters();
    }

    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Up to about `limit` held events from `after + 1` on, if those are held without
    /// a break in `seq`; `None` sends the caller to the store. Drops what is older.
    pub fn take_after(&self, after: i64, limit: usize) -> Option<Vec<crate::events::FileEvent>> {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut taken: Vec<crate::events::FileEvent> = Vec::new();
        let mut next = after + 1;
        while taken.len() < limit {
            match held.first_key_value() {
                Some((&first, _)) if first < next => {
                    held.pop_first();
                }
                Some((&first, batch)) if first == next && contiguous(batch) => {
                    next = first + batch.len() as i64;
                    taken.extend(held.pop_first().map(|(_, b)| b).unwrap_or_default());
                }
                _ => break,
            }
        }
        (!taken.is_empty()).then_some(taken)
    }
}

fn contiguous(batch: &[crate::events::FileEvent]) -> bool {
    batch.windows(2).all(|w| w[1].seq == w[0].seq + 1)
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            rescan_every: Duration::from_secs(15 * 60),
            check_every: Duration::from_secs(5),
            preflight_every: Duration::from_secs(3 * 60),
            check_deadline: Duration::from_secs(4),
            pulse_every: Duration::from_secs(2),
            pulse_deadline: Duration::from_secs(3),
            reconcile_every: Duration::from_secs(60 * 60),
            reconcile_lag: Duration::from_secs(2 * 60),
            stream: RunOptions::default(),
            monitor_from_ms: None,
            risk: Arc::default(),
            stored: Arc::default(),
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
/// three topics, watches the org's health, rescans and reconciles periodically. Every
/// task runs in a `connection` span (and each subscriber in a `topic` span) so one
/// connection's story can be followed in the logs.
pub async fn start(
    store: Arc<dyn Store>,
    record: &ConnectionRecord,
    app: &SalesforceApp,
    settings: RunSettings,
) -> Result<RunningConnection, Error> {
    let span = tracing::info_span!("connection", id = %record.id);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let tokens = StoredTokens { store: store.clone(), connection_id: record.id.clone() };
    let api = Arc::new(api_for(record, app, http)?.with_token_keeper(Box::new(tokens)));
    let corporate =
        record.corporate_cidrs.iter().map(|c| Cidr::parse(c).map_err(Error::Setting)).collect::<Result<_, _>>()?;
    let context = Arc::new(ConnectionContext::new(
        record.id.clone(),
        store.clone(),
        api.clone(),
        corporate,
        &settings,
        record.scope.clone(),
        // A little before creation, so clock skew between us and Salesforce loses nothing.
        settings.monitor_from_ms.unwrap_or(record.created_at - 5 * 60_000),
    ));
    // Monitoring starts with the last known scope (if a scan ever succeeded), then the
    // fresh scan replaces it.
    if record.scope_scanned_at.is_some() {
        context.set_scope(store.scope(&record.id)?);
    }
    let pubsub = Arc::new(PubSub::new(&app.pubsub, api)?);
    // Nothing here waits on Salesforce: an org that does not answer must not hold up
    // the start (the health watch says so within seconds). The first scope scan runs
    // in the rescans task; until it succeeds, the last known scope serves (or exports
    // wait, when none ever was).
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = Vec::new();
    for topic in [LOGIN_TOPIC, LOGOUT_TOPIC, REPORT_TOPIC] {
        let (pubsub, context, options, shutdown) =
            (pubsub.clone(), context.clone(), settings.stream.clone(), shutdown.clone());
        let topic_span = tracing::info_span!(parent: &span, "topic", topic);
        tasks.push(tokio::spawn(
            async move {
                if topic == REPORT_TOPIC {
                    // Exports cannot be judged before the monitored users are known:
                    // the stream starts when they are (at once, after a first scan).
                    let mut shutdown = shutdown.clone();
                    tokio::select! {
                        _ = context.wait_for_scope() => {}
                        _ = shutdown.changed() => return,
                    }
                }
                let mut sink = TopicSink { context };
                // Only the sink failing ends `run` (the store, or exports that must wait
                // for the scope); nothing of the failed delivery was committed, so
                // starting again from the checkpoint after a pause is safe.
                while let Err(e) = pubsub::run(&pubsub, topic, &mut sink, &options, shutdown.clone()).await {
                    tracing::warn!("the delivery could not be applied, retrying in 2 s: {e}");
                    let mut shutdown = shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
            .instrument(topic_span),
        ));
    }
    let watcher = HealthWatch {
        context: context.clone(),
        pubsub,
        settings: settings.clone(),
        org: health::OrgCheck::default(),
        last_full: None,
        streaming_off_since: open_streaming_gap(&*store, &record.id)?,
        // Streaming is known to have been on only up to the newest stored export (less
        // a minute for exports published out of order): a previous process may have
        // died just as streaming was switched off, and what was exported since then is
        // in no stream. Should the first check find streaming off, the gap starts here.
        streaming_known_at: context.last_observed()?.map_or(context.monitor_from_ms, |at| at - 60_000),
    };
    tasks.push(tokio::spawn(watcher.run(shutdown.clone()).instrument(span.clone())));
    tasks.push(tokio::spawn(
        pulse(context.clone(), settings.pulse_every, settings.pulse_deadline, shutdown.clone())
            .instrument(span.clone()),
    ));
    tasks
        .push(tokio::spawn(rescans(context.clone(), settings.rescan_every, shutdown.clone()).instrument(span.clone())));
    let reconciled_from = record.reconciled_to.unwrap_or(record.created_at - 5 * 60_000);
    tasks.push(tokio::spawn(
        reconciliation(context.clone(), settings.reconcile_every, settings.reconcile_lag, reconciled_from, shutdown)
            .instrument(span),
    ));
    Ok(RunningConnection { context, stop, tasks })
}

/// The start of a window with streaming off that a crash interrupted (an open gap).
fn open_streaming_gap(store: &dyn Store, connection: &str) -> Result<Option<i64>, StoreError> {
    Ok(store
        .gaps(connection)?
        .into_iter()
        .find(|g| g.topic == REPORT_TOPIC && g.to_ms.is_none() && !g.recovered)
        .map(|g| g.from_ms))
}

/// Watches the org and the subscribers and keeps the connection's status true: checks
/// every `check_every` (the account too every `preflight_every`), at once when a
/// subscriber's state changes, and often while something is wrong.
struct HealthWatch {
    context: Arc<ConnectionContext>,
    pubsub: Arc<PubSub>,
    settings: RunSettings,
    /// What the last check of the org found.
    org: health::OrgCheck,
    /// When the service account was last checked (never, at first).
    last_full: Option<Instant>,
    /// While Event Manager does not stream report events: since when (the last time
    /// streaming was known on).
    streaming_off_since: Option<i64>,
    streaming_known_at: i64,
}

/// The first pause between checks while something is wrong; it doubles up to
/// `check_every`.
const FIRST_RECHECK: Duration = Duration::from_millis(500);

impl HealthWatch {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        // The first check runs at once. The next check keeps its time when a
        // subscriber's change wakes the loop: a stream changing state every few
        // seconds (reconnecting) had kept pushing the org's check back, and Event
        // Manager's streaming switched off went unseen (the soak, seed 1795870077636386387).
        let mut wait = Duration::ZERO;
        let mut next_check = tokio::time::Instant::now();
        loop {
            let check = tokio::select! {
                _ = tokio::time::sleep_until(next_check) => true,
                _ = self.context.changed.notified() => false,
                _ = shutdown.changed() => return,
            };
            if check {
                let full = !self.org.problems.is_empty()
                    || self.last_full.is_none_or(|at| at.elapsed() >= self.settings.preflight_every);
                self.org = health::check_org(&self.context.api, &self.pubsub, full, self.settings.check_deadline).await;
                if full {
                    self.last_full = Some(Instant::now());
                }
                // The org checks out while a subscriber still waits out a backoff (its
                // token was refused, its stream denied): the cause is gone, retry now.
                let org_ok = self.org.problems.iter().all(|p| p.severity != ProblemSeverity::Error);
                let waiting =
                    self.context.stream_health().iter().any(|(_, h, _)| matches!(h, StreamHealth::Retrying { .. }));
                if org_ok && waiting {
                    self.settings.stream.retry_now.notify_waiters();
                }
                if let Err(e) = self.follow_streaming().await {
                    tracing::warn!("recovering the window with streaming off: {}", error_chain(&e));
                }
            }
            let mut problems = self.org.problems.clone();
            problems.extend(self.context.scan_problem());
            problems.extend(self.context.silence());
            problems.extend(health::from_streams(&self.context.stream_health()));
            match health::stored(&*self.context.store, &self.context.connection_id) {
                Ok(stored) => problems.extend(stored),
                Err(e) => tracing::warn!("reading gaps and kept-aside events: {}", error_chain(&e)),
            }
            let problems = health::one_per_cause(problems);
            let failing = problems.iter().any(|p| p.severity == ProblemSeverity::Error);
            if let Err(e) = report(&self.context, &problems) {
                tracing::error!("cannot record the connection's health: {}", error_chain(&e));
            }
            let first = FIRST_RECHECK.min(self.settings.check_every);
            wait = match (failing, check) {
                (false, _) => self.settings.check_every,
                (true, false) => first,
                (true, true) => (wait * 2).clamp(first, self.settings.check_every),
            };
            let due = tokio::time::Instant::now() + wait;
            next_check = if check { due } else { next_check.min(due) };
        }
    }

    /// Streaming of report events off: the window is recorded as an open gap; back on:
    /// the window is re-read from `ReportEvent` (or stays a gap when storing was off).
    async fn follow_streaming(&mut self) -> Result<(), ingest::IngestError> {
        let now = chrono::Utc::now().timestamp_millis();
        let ctx = &self.context;
        match (self.org.report_streaming, self.streaming_off_since) {
            (Some(false), None) => {
                let since = self.streaming_known_at;
                self.streaming_off_since = Some(since);
                let reason =
                    "streaming of Report Event is off in Event Manager: exports made meanwhile are not streamed";
                ctx.store.record_gap(&ctx.connection_id, REPORT_TOPIC, since, None, reason, false)?;
            }
            (Some(true), Some(since)) => {
                let reason = "streaming of Report Event was off in Event Manager";
                ingest::recover(ctx, since, now, reason).await?;
                self.streaming_off_since = None;
            }
            _ => {}
        }
        if self.org.report_streaming == Some(true) {
            self.streaming_known_at = now;
        }
        Ok(())
    }
}

/// Asks the instance every `every` whether it answers at all; one that gives no
/// answer within `deadline` (or cannot be reached) is a network problem until it
/// answers again.
async fn pulse(
    context: Arc<ConnectionContext>,
    every: Duration,
    deadline: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let answer = tokio::select! {
            answer = tokio::time::timeout(deadline, context.api.answers()) => answer,
            _ = shutdown.changed() => return,
        };
        let silence = match answer {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(health::from_api_error(&e)),
            Err(_) => Some(health::silent(deadline)),
        };
        context.set_silence(silence);
    }
}

/// Scans at once, then every `every`; while scans fail, retries soon and often (and
/// the failure shows on the connection).
async fn rescans(context: Arc<ConnectionContext>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut retry = FIRST_RECHECK;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        match rescan(&context).await {
            Ok(_) => {
                context.set_scan_problem(None);
                retry = FIRST_RECHECK;
                wait = every;
            }
            Err(e) => {
                tracing::warn!("scope rescan failed: {}", error_chain(&e));
                context.set_scan_problem(Some(e.problem()));
                wait = retry;
                retry = (retry * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Every `every`, compares what is stored with `ReportEvent` from where the last
/// comparison ended to a little before now, and fills in what is missing.
async fn reconciliation(
    context: Arc<ConnectionContext>,
    every: Duration,
    lag: Duration,
    mut from: i64,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let to = (chrono::Utc::now().timestamp_millis() - lag.as_millis() as i64).max(from);
        if !context.scope_known() || !ingest::storing(&context).await {
            continue; // nothing to compare with yet; the window waits
        }
        match ingest::recover(&context, from, to, "reconciliation with ReportEvent").await {
            Ok(true) => {
                from = to;
                if let Err(e) = context.store.set_reconciled_to(&context.connection_id, to) {
                    tracing::warn!("saving the reconciliation point: {}", error_chain(&e));
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("reconciliation: {}", error_chain(&e)),
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
/// Exports that users newly in scope made since the previous scan were judged against
/// the old scope: they are re-read from `ReportEvent`.
pub async fn rescan(context: &ConnectionContext) -> Result<usize, Error> {
    let scan = scope::scan(&context.api, &context.mode).await?;
    if !scan.unmatched.is_empty() {
        tracing::warn!("scope entries matching nobody: {:?}", scan.unmatched);
    }
    let previous = context.store.connection(&context.connection_id)?.scope_scanned_at;
    let before: std::collections::HashSet<_> = if context.scope_known() {
        context.store.scope(&context.connection_id)?.into_iter().map(|u| u.user_id).collect()
    } else {
        Default::default()
    };
    let added = scan.users.iter().filter(|u| !before.contains(&u.user_id)).count();
    context.store.replace_scope(&context.connection_id, &scan.users)?;
    let n = scan.users.len();
    let was_known = context.scope_known();
    context.set_scope(scan.users);
    if let Some(since) = previous.filter(|_| was_known && added > 0) {
        let now = chrono::Utc::now().timestamp_millis();
        match ingest::recover(context, since, now, "users newly in scope").await {
            Ok(_) => {}
            Err(ingest::IngestError::Store(e)) => return Err(e.into()),
            Err(e) => tracing::warn!("re-reading the exports of users newly in scope: {}", error_chain(&e)),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::Stored;
    use crate::events::FileEvent;

    fn batch(seqs: std::ops::RangeInclusive<i64>) -> Vec<FileEvent> {
        seqs.map(|seq| FileEvent { seq, ..FileEvent::sample() }).collect()
    }

    fn seqs(events: Option<Vec<FileEvent>>) -> Option<Vec<i64>> {
        events.map(|e| e.iter().map(|e| e.seq).collect())
    }

    #[test]
    fn held_events_are_given_only_in_an_unbroken_run_from_where_the_reader_stands() {
        let stored = Stored::default();
        stored.committed(batch(1..=3));
        assert_eq!(seqs(stored.take_after(0, 100)), None, "nobody wants them: none held");
        stored.set_wanted(true);
        stored.committed(batch(1..=3));
        // Another connection's commit (4..=5) is not handed over yet; 6..=7 is.
        stored.committed(batch(6..=7));
        assert_eq!(seqs(stored.take_after(0, 100)), Some(vec![1, 2, 3]), "up to the break");
        assert_eq!(seqs(stored.take_after(3, 100)), None, "4 is not held: read from the store");
        stored.committed(batch(4..=5));
        assert_eq!(seqs(stored.take_after(5, 100)), Some(vec![6, 7]), "what the store read covered is dropped");
        // A reader standing inside a held batch reads from the store.
        stored.committed(batch(8..=10));
        assert_eq!(seqs(stored.take_after(8, 100)), None);
        assert_eq!(seqs(stored.take_after(10, 100)), None, "nothing newer is held");
    }

    #[test]
    fn a_batch_with_a_gap_in_seq_is_not_given_and_the_oldest_go_first() {
        let stored = Stored::default();
        stored.set_wanted(true);
        stored
            .committed(vec![FileEvent { seq: 1, ..FileEvent::sample() }, FileEvent { seq: 3, ..FileEvent::sample() }]);
        assert_eq!(seqs(stored.take_after(0, 100)), None, "seq 2 may exist: the store knows");
        stored.committed(batch(10..=(9 + Stored::HOLD as i64)));
        stored.committed(batch((10 + Stored::HOLD as i64)..=(10 + Stored::HOLD as i64)));
        assert_eq!(seqs(stored.take_after(9, 100)), None, "the oldest batch was let go");
        assert_eq!(seqs(stored.take_after(9 + Stored::HOLD as i64, 100)), Some(vec![10 + Stored::HOLD as i64]));
    }
}
