//! The connectors a server runs, started and stopped while it serves.

use std::collections::HashMap;
use std::sync::Arc;

use salesforce::error::error_chain;

use super::{ConnectionContext, Error, RunSettings, RunningConnection, SalesforceApp};
use crate::connection::{ConnectionRecord, ConnectionStatus, StatusDetail};
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
    pub fn new(store: Arc<dyn Store>, app: SalesforceApp, settings: RunSettings) -> Fleet {
        Fleet { store, app, settings, running: tokio::sync::Mutex::default() }
    }

    pub fn app(&self) -> &SalesforceApp {
        &self.app
    }

    /// Starts monitoring `record` unless it already runs. A connection that cannot
    /// start is put in Error with the cause (its history kept).
    pub async fn start(&self, record: &ConnectionRecord) -> Result<(), Error> {
        let mut running = self.running.lock().await;
        if running.contains_key(&record.id) {
            return Ok(());
        }
        match super::start(self.store.clone(), record, &self.app, self.settings.clone()).await {
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

    /// Stops the connection if it runs and starts it again from its stored record, so
    /// new tokens, scope or ranges take effect; it resumes from its checkpoints.
    pub async fn restart(&self, id: &str) -> Result<(), Error> {
        self.stop(id).await;
        let record = self.store.connection(id)?;
        self.start(&record).await
    }

    /// The running connection's context (for rescans, stream health).
    pub async fn context(&self, id: &str) -> Option<Arc<ConnectionContext>> {
        self.running.lock().await.get(id).map(|r| r.context.clone())
    }

    /// The contexts of every running connection.
    pub async fn contexts(&self) -> Vec<Arc<ConnectionContext>> {
        self.running.lock().await.values().map(|r| r.context.clone()).collect()
    }

    pub(crate) async fn stop_all(&self) {
        let all: Vec<_> = self.running.lock().await.drain().map(|(_, r)| r).collect();
        for r in all {
            r.stop().await;
        }
    }
}
