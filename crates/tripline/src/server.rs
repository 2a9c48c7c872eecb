//! One server: the store, a running connector for each stored connection that is
//! not held (paused, deauthorized), and the JSON API, assembled in one place that
//! `tripline serve` and the tests both use.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use salesforce::error::error_chain;

use crate::connection::{ConnectionStatus, StatusDetail};
use crate::connector::{self, RunSettings, RunningConnection, SalesforceApp};
use crate::store::Store;

/// A server with its connections running, ready to listen.
pub struct Server {
    pub store: Arc<dyn Store>,
    pub running: Vec<RunningConnection>,
}

impl Server {
    /// Starts every stored connection that is not held. A connection that cannot start
    /// is put in Error with the cause (its history kept); the others run.
    pub async fn start(
        store: Arc<dyn Store>,
        app: &SalesforceApp,
        settings: RunSettings,
    ) -> Result<Server, crate::store::StoreError> {
        let mut running = Vec::new();
        for record in store.connections()? {
            if record.status.is_held() {
                continue;
            }
            match connector::start(store.clone(), &record, app, settings.clone()).await {
                Ok(r) => {
                    tracing::info!(connection = %record.id, "monitoring {:?}", record.display_name);
                    running.push(r);
                }
                Err(e) => {
                    tracing::error!(connection = %record.id, "{:?} cannot start: {}", record.display_name, error_chain(&e));
                    let detail =
                        StatusDetail { problems: vec![e.problem()], since: chrono::Utc::now().timestamp_millis() };
                    store.set_status(&record.id, ConnectionStatus::Error, Some(&detail), "server")?;
                }
            }
        }
        Ok(Server { store, running })
    }

    /// The HTTP routes this server answers (the JSON API).
    pub fn router(&self) -> Router {
        crate::api::router(self.store.clone(), self.running.iter().map(|r| r.context.clone()).collect())
    }

    /// Serves on `listener` until `shutdown` completes, then stops the connectors.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.router().into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
        for r in self.running {
            r.stop().await;
        }
        Ok(())
    }
}
