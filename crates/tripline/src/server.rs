//! One server: the store, the fleet of running connectors (one for each stored
//! connection that is not held: paused or deauthorized), the JSON API and the web
//! console, assembled in one place that `tripline serve`, `tripline demo` and the
//! tests all use.

use std::future::Future;
use std::sync::Arc;

use axum::Router;

use crate::alerting::Alerting;
use crate::connector::fleet::Membership;
use crate::connector::{self, Fleet, RunSettings, SalesforceApp};
use crate::console::ConsoleSettings;
use crate::risk::RiskPolicy;
use crate::store::Store;

/// A server with its connections running, ready to listen.
pub struct Server {
    pub store: Arc<dyn Store>,
    pub fleet: Arc<Fleet>,
    pub console: ConsoleSettings,
    /// Risk settings and watch lists in force (shared with every connector).
    pub risk: Arc<RiskPolicy>,
    pub alerting: Arc<Alerting>,
}

impl Server {
    /// Starts every stored connection that is not held, as the only node or the first
    /// of several named after this host; one that cannot start shows Error with the
    /// cause, the others run.
    pub async fn start(
        store: Arc<dyn Store>,
        app: &SalesforceApp,
        settings: RunSettings,
    ) -> Result<Server, crate::store::StoreError> {
        Server::start_as(store, app, settings, Membership::default()).await
    }

    /// Starts this node of the database: the stored connections no other node holds
    /// (up to its share once the others are counted, at its first turn).
    pub async fn start_as(
        store: Arc<dyn Store>,
        app: &SalesforceApp,
        mut settings: RunSettings,
        membership: Membership,
    ) -> Result<Server, crate::store::StoreError> {
        let risk = Arc::new(RiskPolicy::new(crate::alerting::policy(&*store)?));
        settings.risk = risk.clone();
        let alerting = Arc::new(Alerting::new(store.clone(), settings.stored.clone()));
        alerting.set_templates(store.message_templates()?);
        let fleet = Arc::new(Fleet::new(store.clone(), app.clone(), settings, membership));
        for record in store.connections()? {
            if record.status.is_held() {
                continue;
            }
            match fleet.start(&record).await {
                Ok(()) => {}
                Err(connector::Error::Store(e)) => return Err(e),
                // Shown on the connection; the others still start.
                Err(_) => {}
            }
        }
        Ok(Server { store, fleet, console: ConsoleSettings::default(), risk, alerting })
    }

    /// The HTTP routes this server answers: the JSON API and the console.
    pub fn router(&self) -> Router {
        // Streamed exports are bounded across the API and the console together.
        let exports = Arc::new(crate::api::export::Slots::default());
        let parts = crate::console::Parts {
            fleet: self.fleet.clone(),
            exports: exports.clone(),
            alerting: self.alerting.clone(),
            risk: self.risk.clone(),
        };
        crate::api::router(self.store.clone(), self.fleet.clone(), exports, self.alerting.clone(), self.risk.clone())
            .merge(crate::console::router(self.store.clone(), parts, self.console.clone()))
    }

    /// Serves on `listener` until `shutdown` completes, then stops the connectors.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.router().into_make_service_with_connect_info::<std::net::SocketAddr>();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let aggregator = tokio::spawn(aggregate(self.store.clone(), stopped.clone()));
        let retention = tokio::spawn(retain(self.store.clone(), stopped.clone()));
        self.alerting.set_console_url(self.console.public_url.clone());
        let alerting =
            tokio::spawn(alert_duty(self.store.clone(), self.fleet.clone(), self.alerting.clone(), stopped.clone()));
        let coordinator = tokio::spawn(self.fleet.clone().coordinate(stopped));
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
        let _ = stop.send(true);
        let _ = aggregator.await;
        let _ = retention.await;
        let _ = alerting.await;
        let _ = coordinator.await;
        self.fleet.stop_all().await;
        Ok(())
    }
}

/// Removes downloads older than the retention an admin set: a minute after start, then
/// hourly, in batches with pauses between them (ingest goes on meanwhile). Every node
/// does; what one removed the others find gone.
async fn retain(store: Arc<dyn Store>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut pause = std::time::Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        pause = std::time::Duration::from_secs(3_600);
        loop {
            let store = store.clone();
            let removed = tokio::task::spawn_blocking(move || -> Result<u64, crate::store::StoreError> {
                let Some(days) = store.retention()? else { return Ok(0) };
                let before = chrono::Utc::now().timestamp_millis() - i64::from(days) * 86_400_000;
                store.remove_before(before)
            })
            .await;
            match removed {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => tracing::info!("retention: {n} downloads older than the retention removed"),
                Ok(Err(e)) => {
                    tracing::warn!("retention could not be applied: {}", salesforce::error::error_chain(&e));
                    break;
                }
                Err(_) => break,
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// Runs alert evaluation and delivery while this node holds the alerting lease: one
/// node evaluates and delivers for all, and another takes over when it stops.
async fn alert_duty(
    store: Arc<dyn Store>,
    fleet: Arc<Fleet>,
    alerting: Arc<Alerting>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use crate::store::ALERTING;
    let (node, ttl, every) = (fleet.node().clone(), fleet.lease_ttl_ms(), fleet.turn_every());
    let mut running: Option<(tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>)> = None;
    loop {
        let (s, n) = (store.clone(), node.clone());
        let held = match tokio::task::spawn_blocking(move || s.claim(ALERTING, &n, ttl)).await {
            Ok(Ok(lease)) => Some(lease.is_some()),
            Ok(Err(e)) => {
                tracing::warn!("the alerting lease could not be renewed: {}", salesforce::error::error_chain(&e));
                None
            }
            Err(_) => None,
        };
        match (held, running.is_some()) {
            (Some(true), false) => {
                tracing::info!("this node evaluates alerts and delivers notifications");
                let (tx, rx) = tokio::sync::watch::channel(false);
                running = Some((tx, tokio::spawn(alerting.clone().run(rx))));
            }
            (Some(false), true) => {
                tracing::warn!("another node took alerting over");
                if let Some((tx, task)) = running.take() {
                    let _ = tx.send(true);
                    let _ = task.await;
                }
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
    if let Some((tx, task)) = running.take() {
        let _ = tx.send(true);
        let _ = task.await;
        let _ = tokio::task::spawn_blocking(move || store.release(ALERTING, &node)).await;
    }
}

/// Events added to the dashboard's counts per transaction: large, because a batch's
/// counts are summed in memory and its cost is mostly the writer's time.
const AGGREGATE_BATCH: usize = 50_000;

/// Keeps the dashboard's hourly counts up with the stored events: every 200 ms while
/// there is a backlog (leaving the writer to ingest in between), then every second.
/// Its position is saved with the counts, so a crash neither skips nor counts twice.
async fn aggregate(store: Arc<dyn Store>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let store = store.clone();
        let added = match tokio::task::spawn_blocking(move || store.aggregate(AGGREGATE_BATCH)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::warn!("the dashboard counts could not be updated: {}", salesforce::error::error_chain(&e));
                0
            }
            Err(e) => {
                tracing::error!("the dashboard aggregator failed: {e}");
                0
            }
        };
        let pause = if added == AGGREGATE_BATCH { 200 } else { 1_000 };
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(pause)) => {}
            _ = stop.changed() => return,
        }
    }
}
