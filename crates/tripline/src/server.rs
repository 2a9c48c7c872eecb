//! One server: the store, the fleet of running connectors (one for each stored
//! connection that is not held: paused or deauthorized), the JSON API and the web
//! console, assembled in one place that `tripline serve`, `tripline demo` and the
//! tests all use.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use salesforce::error::error_chain;

use crate::connection::{ConnectionRecord, ConnectionStatus, StatusDetail};
use crate::connector::{self, ConnectionContext, RunSettings, RunningConnection, SalesforceApp};
use crate::console::ConsoleSettings;
use crate::store::Store;

/// The connectors this server runs, started and stopped while it serves (a new
/// connection, pause, resume, deauthorize take effect at once).
pub struct Fleet {
    store: Arc<dyn Store>,
    app: SalesforceApp,
    settings: RunSettings,
    running: tokio::sync::Mutex<HashMap<String, RunningConnection>>,
}

impl Fleet {
    pub fn app(&self) -> &SalesforceApp {
        &self.app
    }

    /// Starts monitoring `record` unless it already runs. A connection that cannot
    /// start is put in Error with the cause (its history kept).
    pub async fn start(&self, record: &ConnectionRecord) -> Result<(), connector::Error> {
        let mut running = self.running.lock().await;
        if running.contains_key(&record.id) {
            return Ok(());
        }
        match connector::start(self.store.clone(), record, &self.app, self.settings.clone()).await {
            Ok(r) => {
                tracing::info!(connection = %record.id, "monitoring {:?}", record.display_name);
                running.insert(record.id.clone(), r);
                Ok(())
            }
            Err(e) => {
                tracing::error!(connection = %record.id, "{:?} cannot start: {}", record.display_name, error_chain(&e));
                let detail = StatusDetail { problems: vec![e.problem()], since: chrono::Utc::now().timestamp_millis() };
                self.store.set_status(&record.id, ConnectionStatus::Error, Some(&detail), "server")?;
                Err(e)
            }
        }
    }

    /// Stops monitoring a connection (nothing when it does not run), waiting for its
    /// tasks: what they committed stays, what they had not is replayed at the next
    /// start from the stored checkpoint.
    pub async fn stop(&self, id: &str) {
        let stopped = self.running.lock().await.remove(id);
        if let Some(r) = stopped {
            r.stop().await;
            tracing::info!(connection = %id, "stopped");
        }
    }

    /// The running connection's context (for rescans, stream health).
    pub async fn context(&self, id: &str) -> Option<Arc<ConnectionContext>> {
        self.running.lock().await.get(id).map(|r| r.context.clone())
    }

    /// The contexts of every running connection.
    pub async fn contexts(&self) -> Vec<Arc<ConnectionContext>> {
        self.running.lock().await.values().map(|r| r.context.clone()).collect()
    }

    async fn stop_all(&self) {
        let all: Vec<_> = self.running.lock().await.drain().map(|(_, r)| r).collect();
        for r in all {
            r.stop().await;
        }
    }
}

/// A server with its connections running, ready to listen.
pub struct Server {
    pub store: Arc<dyn Store>,
    pub fleet: Arc<Fleet>,
    pub console: ConsoleSettings,
}

impl Server {
    /// Starts every stored connection that is not held; one that cannot start shows
    /// Error with the cause, the others run.
    pub async fn start(
        store: Arc<dyn Store>,
        app: &SalesforceApp,
        settings: RunSettings,
    ) -> Result<Server, crate::store::StoreError> {
        let fleet = Arc::new(Fleet {
            store: store.clone(),
            app: app.clone(),
            settings,
            running: tokio::sync::Mutex::default(),
        });
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
        Ok(Server { store, fleet, console: ConsoleSettings::default() })
    }

    /// The HTTP routes this server answers: the JSON API and the console.
    pub fn router(&self) -> Router {
        crate::api::router(self.store.clone(), self.fleet.clone()).merge(crate::console::router(
            self.store.clone(),
            self.fleet.clone(),
            self.console.clone(),
        ))
    }

    /// Serves on `listener` until `shutdown` completes, then stops the connectors.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.router().into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
        self.fleet.stop_all().await;
        Ok(())
    }
}
