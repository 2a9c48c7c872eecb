//! Alerting at work in a server: the evaluator follows the stored file events (woken
//! by each ingest commit), and the deliverer empties the outbox.
//!
//! What if the process dies here? The evaluator's position is saved in the
//! transaction that stores the alerts it raised (and their outbox rows); a restart
//! re-reads from there, and since an alert's id derives from the rule, the user and
//! the event that raised it, evaluating an event again changes nothing. A message is
//! marked delivered only after the receiver accepted it: a crash in between sends it
//! again with the same idempotency key (at least once).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::alerts::engine::{Backtest, BacktestResult, Decision, Evaluator};
use crate::alerts::notify::{self, MESSAGE_EVENTS, Message};
use crate::alerts::template::Templates;
use crate::alerts::{Alert, AlertState, Channel, Delivery, Rule};
use crate::risk::PolicyState;
use crate::store::{Attempt, Store, StoreError};

/// File events evaluated per transaction.
const BATCH: usize = 20_000;
/// Give up on a message this long after it was queued.
const GIVE_UP_AFTER: i64 = 24 * 3_600_000;
/// Longest pause between two attempts of a message.
const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);
/// Save the position at least this often when nothing was raised.
const POSITION_EVERY: Duration = Duration::from_secs(5);
/// Most events evaluated before their decisions are written (during a catch-up).
const APPLY_EVERY: usize = 100_000;
/// Longest a decision waits to be written while events keep arriving (a catch-up
/// keeps pace with ingest commit by commit: written at each, every open alert of the
/// backlog was rewritten hundreds of times; measured).
const APPLY_AFTER: Duration = Duration::from_secs(1);
/// An alert raised by an event this recent is written at once: it is news. One
/// raised by an older event (a backlog) waits for the next write.
const NEWS: Duration = Duration::from_secs(120);

/// The risk settings and watch lists as stored, as connectors use them.
pub fn policy(store: &dyn Store) -> Result<PolicyState, StoreError> {
    Ok(PolicyState::new(store.risk_settings()?, &store.watchlist()?))
}

/// File events read per page by a back-test.
const BACKTEST_PAGE: usize = 20_000;

/// Runs `rule` over the file events observed in `[from_ms, to_ms)`, in the order they
/// were stored (what enabling it before them would have raised).
pub fn backtest(store: &dyn Store, rule: &Rule, from_ms: i64, to_ms: i64) -> Result<BacktestResult, StoreError> {
    let mut run = Backtest::new(rule);
    let mut after = 0;
    loop {
        let events = store.events_between(from_ms, to_ms, after, BACKTEST_PAGE)?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        events.iter().for_each(|e| run.observe(e));
    }
    Ok(run.result())
}

/// What the evaluator, the deliverer and the people changing rules share.
pub struct Alerting {
    store: Arc<dyn Store>,
    /// The file events each ingest commit stored (and the wake-up after it).
    stored: Arc<crate::connector::Stored>,
    rules_changed: AtomicBool,
    wake_evaluator: Notify,
    wake_deliverer: Notify,
    http: reqwest::Client,
    /// The console's address, for links in messages.
    console_url: Mutex<Option<String>>,
    /// The message templates in force.
    templates: Mutex<Templates>,
    /// The position the evaluator has reached (for benchmarks and status).
    evaluated: watch::Sender<i64>,
}

impl Alerting {
    pub fn new(store: Arc<dyn Store>, stored: Arc<crate::connector::Stored>) -> Alerting {
        Alerting {
            store,
            stored,
            rules_changed: AtomicBool::new(false),
            wake_evaluator: Notify::new(),
            wake_deliverer: Notify::new(),
            http: reqwest::Client::builder()
                .timeout(notify::SEND_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            console_url: Mutex::new(None),
            templates: Mutex::default(),
            evaluated: watch::Sender::new(0),
        }
    }

    pub fn set_console_url(&self, url: Option<String>) {
        *self.console_url.lock().unwrap_or_else(|e| e.into_inner()) = url;
    }

    /// Messages from now on use these templates.
    pub fn set_templates(&self, templates: Templates) {
        *self.templates.lock().unwrap_or_else(|e| e.into_inner()) = templates;
    }

    fn templates(&self) -> Templates {
        self.templates.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Rules changed: the evaluator reloads them before its next event.
    pub fn rules_changed(&self) {
        self.rules_changed.store(true, Ordering::SeqCst);
        self.wake_evaluator.notify_one();
    }

    /// Waits until the evaluator has evaluated every event up to `seq`.
    pub async fn evaluated(&self, seq: i64) {
        let _ = self.evaluated.subscribe().wait_for(|at| *at >= seq).await;
    }

    fn link(&self, alert_id: &str) -> Option<String> {
        let base = self.console_url.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        Some(format!("{}/alerts/{alert_id}", base.trim_end_matches('/')))
    }

    /// The message for an alert (its first events, a link to it).
    pub fn message(&self, alert_id: &str, idempotency_key: String, test: bool) -> Result<Message, StoreError> {
        let (alert, _) =
            self.store.alert(alert_id)?.ok_or_else(|| StoreError::NotFound(format!("alert {alert_id}")))?;
        let events = self.store.alert_events(alert_id, MESSAGE_EVENTS)?;
        Ok(Message { link: self.link(alert_id), alert, events, idempotency_key, test, templates: self.templates() })
    }

    /// Sends a test message on a channel now (nothing is queued or recorded).
    pub async fn send_test(&self, channel: &Channel) -> Result<(), notify::SendError> {
        let message = Message {
            alert: Alert {
                seq: 0,
                id: "test".into(),
                rule_id: 0,
                rule_name: "Test message from Tripline".into(),
                severity: crate::risk::Severity::Low,
                connection_id: String::new(),
                user_id: String::new(),
                username: Some("nobody@example.com".into()),
                state: AlertState::Open,
                assignee: None,
                first_at: chrono::Utc::now().timestamp_millis(),
                last_at: chrono::Utc::now().timestamp_millis(),
                events: 0,
                rows: 0,
                created_at: chrono::Utc::now().timestamp_millis(),
                updated_at: chrono::Utc::now().timestamp_millis(),
            },
            events: Vec::new(),
            link: None,
            idempotency_key: format!("test-{}", salesforce::oauth::random_token(8)),
            test: true,
            templates: self.templates(),
        };
        notify::send(&self.http, channel, &message).await
    }

    /// Runs the evaluator and the deliverer until `stop` turns true.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let evaluator = tokio::spawn(self.clone().evaluate(stop.clone()));
        let deliverer = tokio::spawn(self.clone().deliver(stop));
        let _ = evaluator.await;
        let _ = deliverer.await;
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store.as_ref()))
            .await
            .map_err(|e| StoreError::Database(Box::new(std::io::Error::other(e.to_string()))))?
    }

    /// The evaluator as it stood at the saved position: rules loaded, windows filled
    /// again from the events before it, open alerts restored.
    fn load(store: &dyn Store) -> Result<(Evaluator, i64), StoreError> {
        let rules = store.rules()?;
        // No rule applies to events stored before it was enabled: those need no reading.
        let earliest = rules.iter().filter(|r| r.enabled).map(|r| r.active_from_seq).min().unwrap_or(0);
        let mut evaluator = Evaluator::new(rules);
        let position = store.alert_position()?.max(earliest);
        let lookback = evaluator.lookback_ms();
        if evaluator.is_empty() || position == 0 {
            return Ok((evaluator, position));
        }
        let Some(last) = store.events_after(position - 1, 1)?.into_iter().next().filter(|e| e.seq == position) else {
            return Ok((evaluator, position));
        };
        let mut after = 0;
        'prime: loop {
            let events = store.events_between(last.observed_at - lookback, last.observed_at + 1, after, BATCH)?;
            let Some(tail) = events.last() else { break };
            after = tail.seq;
            for e in &events {
                if e.seq > position {
                    break 'prime;
                }
                evaluator.prime(e);
            }
        }
        evaluator.clear_open();
        for a in store.open_alerts(last.observed_at - lookback)? {
            evaluator.restore_open(a.rule_id, &a.connection_id, &a.user_id, &a.id, a.last_at);
        }
        Ok((evaluator, position))
    }

    async fn evaluate(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut state: Option<(Evaluator, i64)> = None;
        // Decisions not written yet, and how many events they cover.
        let mut pending: Vec<Decision> = Vec::new();
        let (mut pending_events, mut pending_since) = (0, tokio::time::Instant::now());
        let (mut saved, mut saved_at) = (0, tokio::time::Instant::now());
        let mut wait = Duration::from_millis(200);
        loop {
            if *stop.borrow() {
                return;
            }
            if self.rules_changed.swap(false, Ordering::SeqCst) {
                // Reloaded from the saved position: what is pending is evaluated again.
                (state, pending, pending_events) = (None, Vec::new(), 0);
            }
            let loaded = match state.take() {
                None => self.blocking(Self::load).await.inspect(|(evaluator, at)| {
                    saved = *at;
                    // Held events are wanted only by an evaluator with rules.
                    self.stored.set_wanted(!evaluator.is_empty());
                }),
                Some(s) => Ok(s),
            };
            let (mut evaluator, position) = match loaded {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("alert rules cannot be loaded: {}", salesforce::error::error_chain(&e));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                    wait = (wait * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            // Listen before reading, so a commit between the read and the wait is not missed.
            let stored = self.stored.notified();
            let woken = self.wake_evaluator.notified();
            if evaluator.is_empty() {
                // Nothing to evaluate until a rule is enabled.
                state = Some((evaluator, position));
                tokio::select! {
                    _ = woken => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            // Held in memory after their commit, or else read back.
            let held = self.stored.take_after(position, BATCH);
            let events = match held {
                Some(events) => Ok(events),
                None => self.blocking(move |s| s.events_after(position, BATCH)).await,
            };
            let events = match events {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!("stored events cannot be read for alerting: {}", salesforce::error::error_chain(&e));
                    state = Some((evaluator, position));
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let more = events.len() == BATCH;
            let last = events.last().map_or(position, |e| e.seq);
            if pending.is_empty() {
                pending_since = tokio::time::Instant::now();
            }
            let before = pending.len();
            pending.extend(events.iter().flat_map(|e| evaluator.observe(e)));
            pending_events += events.len();
            drop(events);
            // Written at once when an alert about a recent export opens (what was
            // pending before had none: it would have been written); else after a
            // second or a large batch (in a catch-up: few, large writes, one row per
            // alert). The position alone now and then.
            let news_since = chrono::Utc::now().timestamp_millis() - NEWS.as_millis() as i64;
            let news = pending[before..].iter().any(|d| match d {
                Decision::Open(a) => a.events.iter().any(|c| c.at >= news_since),
                Decision::Grow { .. } => false,
            });
            let write = if pending.is_empty() {
                !more && last > saved && saved_at.elapsed() >= POSITION_EVERY
            } else {
                news || pending_events >= APPLY_EVERY || pending_since.elapsed() >= APPLY_AFTER
            };
            if write {
                let decisions = std::mem::take(&mut pending);
                pending_events = 0;
                let opened = decisions.iter().any(|d| matches!(d, Decision::Open(_)));
                match self.blocking(move |s| s.apply_alerts(last, &decisions)).await {
                    Ok(reopened) => {
                        for r in reopened {
                            evaluator.replace_open(&r.closed, Some((&r.new, r.last_at)));
                        }
                        (saved, saved_at, wait) = (last, tokio::time::Instant::now(), Duration::from_millis(200));
                        if opened {
                            self.wake_deliverer.notify_one();
                        }
                    }
                    Err(e) => {
                        // Evaluated again from the saved position once the database answers.
                        tracing::warn!("alerts cannot be stored: {}", salesforce::error::error_chain(&e));
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = stop.changed() => return,
                        }
                        wait = (wait * 2).min(Duration::from_secs(30));
                        continue;
                    }
                }
            }
            if pending.is_empty() {
                self.evaluated.send_replace(last);
            }
            state = Some((evaluator, last));
            if last == position {
                let now = tokio::time::Instant::now();
                let until = if pending.is_empty() { now + Duration::from_secs(1) } else { pending_since + APPLY_AFTER };
                tokio::select! {
                    _ = stored => {}
                    _ = woken => {}
                    _ = tokio::time::sleep_until(until) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }

    async fn deliver(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // Channels with a sender at work: one message at a time per channel, so a slow
        // receiver holds up only its own channel.
        let busy: Arc<Mutex<HashSet<i64>>> = Arc::default();
        loop {
            let woken = self.wake_deliverer.notified();
            let now = chrono::Utc::now().timestamp_millis();
            let due = self.blocking(move |s| s.due_deliveries(now, 500)).await.unwrap_or_else(|e| {
                tracing::warn!("the outbox cannot be read: {}", salesforce::error::error_chain(&e));
                Vec::new()
            });
            let mut by_channel: std::collections::BTreeMap<i64, Vec<Delivery>> = Default::default();
            for d in due {
                by_channel.entry(d.channel_id).or_default().push(d);
            }
            for (channel, deliveries) in by_channel {
                if !busy.lock().unwrap_or_else(|e| e.into_inner()).insert(channel) {
                    continue;
                }
                let (me, busy) = (self.clone(), busy.clone());
                tokio::spawn(async move {
                    for d in deliveries {
                        me.attempt(&d).await;
                    }
                    busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&channel);
                    me.wake_deliverer.notify_one();
                });
            }
            let next = self.blocking(|s| s.next_delivery_at()).await.ok().flatten();
            let pause = next
                .map(|at| Duration::from_millis((at - chrono::Utc::now().timestamp_millis()).clamp(50, 1_000) as u64))
                .unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One attempt at one message, recorded.
    async fn attempt(self: &Arc<Self>, d: &Delivery) {
        let (alert_id, channel_id) = (d.alert_id.clone(), d.channel_id);
        let key = format!("{}:{}", d.alert_id, d.channel_id);
        let me = self.clone();
        let loaded = self.blocking(move |s| Ok((s.channel(channel_id)?, me.message(&alert_id, key, false)?))).await;
        let (channel, message) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => return tracing::warn!("delivery {}: {}", d.id, salesforce::error::error_chain(&e)),
        };
        let attempt = match notify::send(&self.http, &channel, &message).await {
            Ok(()) => Attempt::Delivered,
            Err(e) => {
                let now = chrono::Utc::now().timestamp_millis();
                let backoff = Duration::from_secs(1u64 << d.attempts.min(12)).min(MAX_BACKOFF);
                let retry_at = (now - d.created_at < GIVE_UP_AFTER).then(|| now + backoff.as_millis() as i64);
                tracing::warn!(channel = %channel.name, "a notification was not delivered: {e}");
                Attempt::Failed { error: e.0, retry_at }
            }
        };
        let id = d.id;
        if let Err(e) = self.blocking(move |s| s.record_attempt(id, &attempt)).await {
            tracing::warn!("a delivery's outcome cannot be recorded: {}", salesforce::error::error_chain(&e));
        }
    }
}
