//! The connectors a server runs, started and stopped while it serves, and shared with
//! the other nodes of the same database: each connection runs on the one node that
//! holds its lease (see `store::Lease`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use salesforce::error::error_chain;

use super::{ConnectionContext, Error, RunSettings, RunningConnection, SalesforceApp};
use crate::connection::{ConnectionRecord, ConnectionStatus, StatusDetail};
use crate::store::{Lease, Node, Store, StoreError};

/// A node as the status page and the API show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub node: Node,
    /// It beat within a lease's time.
    pub live: bool,
    /// The node answering this request.
    pub this_node: bool,
    /// The leases it holds now (connections by id, duties as `duty:...`).
    pub leases: Vec<Lease>,
}

/// This node among the nodes of one database, and how it keeps its leases.
#[derive(Debug, Clone)]
pub struct Membership {
    pub node: Node,
    /// How long a lease lasts unrenewed: a node that stopped renewing loses its
    /// connections to the others after this (plus one turn).
    pub lease_ttl: Duration,
    /// How often leases are renewed, free connections taken and nodes counted.
    pub every: Duration,
}

/// The name this machine answers to, for a node named after its host.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tripline".into())
}

impl Membership {
    /// This process as node `name` (by default the host name), with a new incarnation.
    pub fn new(name: Option<String>, address: Option<String>) -> Membership {
        let node = Node {
            name: name.unwrap_or_else(host_name),
            incarnation: salesforce::oauth::random_token(12),
            started_at: chrono::Utc::now().timestamp_millis(),
            heartbeat_at: 0,
            address,
        };
        Membership { node, lease_ttl: Duration::from_secs(15), every: Duration::from_secs(5) }
    }

    fn ttl_ms(&self) -> i64 {
        self.lease_ttl.as_millis() as i64
    }
}

impl Default for Membership {
    fn default() -> Self {
        Membership::new(None, None)
    }
}

/// The connectors this server runs, started and stopped while it serves (a new
/// connection, pause, resume, deauthorize take effect at once).
pub struct Fleet {
    store: Arc<dyn Store>,
    app: SalesforceApp,
    settings: RunSettings,
    membership: Membership,
    running: tokio::sync::Mutex<HashMap<String, RunningConnection>>,
    /// Connections that could not start here (shown in Error): not taken again by the
    /// coordinator until a person resumes, changes or restarts them.
    failed: std::sync::Mutex<HashSet<String>>,
}

impl Fleet {
    pub fn new(store: Arc<dyn Store>, app: SalesforceApp, settings: RunSettings, membership: Membership) -> Fleet {
        Fleet {
            store,
            app,
            settings,
            membership,
            running: tokio::sync::Mutex::default(),
            failed: std::sync::Mutex::default(),
        }
    }

    pub fn app(&self) -> &SalesforceApp {
        &self.app
    }

    pub fn node(&self) -> &Node {
        &self.membership.node
    }

    pub fn lease_ttl_ms(&self) -> i64 {
        self.membership.ttl_ms()
    }

    pub fn turn_every(&self) -> Duration {
        self.membership.every
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Store, &Node) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (store, node) = (self.store.clone(), self.membership.node.clone());
        tokio::task::spawn_blocking(move || work(&*store, &node))
            .await
            .map_err(|e| StoreError::Database(Box::new(std::io::Error::other(e.to_string()))))?
    }

    /// Starts monitoring `record` here, unless it runs here already or another node
    /// holds it (that node runs it). A connection that cannot start is put in Error
    /// with the cause (its history kept).
    pub async fn start(&self, record: &ConnectionRecord) -> Result<(), Error> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).remove(&record.id);
        let mut running = self.running.lock().await;
        if running.contains_key(&record.id) {
            return Ok(());
        }
        let (key, ttl) = (record.id.clone(), self.membership.ttl_ms());
        if self.blocking(move |s, node| s.claim(&key, node, ttl)).await?.is_none() {
            tracing::info!(connection = %record.id, "{:?} runs on another node", record.display_name);
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
                self.failed.lock().unwrap_or_else(|e| e.into_inner()).insert(record.id.clone());
                let key = record.id.clone();
                self.blocking(move |s, node| s.release(&key, node)).await?;
                let detail = StatusDetail { problems: vec![e.problem()], since: chrono::Utc::now().timestamp_millis() };
                self.store.set_status(&record.id, ConnectionStatus::Error, Some(&detail), "server")?;
                Err(e)
            }
        }
    }

    /// Stops monitoring a connection here (nothing when it does not run here: its
    /// node sees the change at its next turn), waiting for its tasks, and gives up
    /// its lease: what they committed stays, what they had not is replayed at the
    /// next start from the stored checkpoint.
    pub async fn stop(&self, id: &str) {
        let stopped = self.running.lock().await.remove(id);
        if let Some(r) = stopped {
            r.stop().await;
            let key = id.to_owned();
            if let Err(e) = self.blocking(move |s, node| s.release(&key, node)).await {
                tracing::warn!(connection = %id, "the lease could not be given up: {}", error_chain(&e));
            }
            tracing::info!(connection = %id, "stopped");
        }
    }

    /// Starts the connection again from its stored record, so new tokens, scope or
    /// ranges take effect; it resumes from its checkpoints. When another node runs
    /// it, that node is asked to, and does at its next turn.
    pub async fn restart(&self, id: &str) -> Result<(), Error> {
        let here = self.running.lock().await.contains_key(id);
        let record = self.store.connection(id)?;
        let key = id.to_owned();
        let elsewhere = self
            .blocking(move |s, node| {
                Ok(s.leases()?.into_iter().any(|l| l.key == key && l.node != node.name && l.expires_at > now_ms()))
            })
            .await?;
        if !here && elsewhere {
            let key = id.to_owned();
            self.blocking(move |s, _| s.request_restart(&key, true)).await?;
            return Ok(());
        }
        self.stop(id).await;
        self.start(&record).await
    }

    /// Every node of the database and what it holds, this one first.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>, StoreError> {
        let ttl = self.membership.ttl_ms();
        let (nodes, leases) = self.blocking(|s, _| Ok((s.nodes()?, s.leases()?))).await?;
        let now = now_ms();
        let me = &self.membership.node.name;
        let mut list: Vec<NodeStatus> = nodes
            .into_iter()
            .map(|node| NodeStatus {
                live: node.heartbeat_at + ttl >= now,
                this_node: &node.name == me,
                leases: leases.iter().filter(|l| l.node == node.name && l.expires_at > now).cloned().collect(),
                node,
            })
            .collect();
        list.sort_by_key(|n| !n.this_node);
        Ok(list)
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
        let ids: Vec<String> = self.running.lock().await.keys().cloned().collect();
        for id in ids {
            self.stop(&id).await;
        }
    }

    /// Keeps this node's share of the connections until `stop` turns true: beats,
    /// renews its leases (a connection whose lease was lost or that a person paused
    /// elsewhere is stopped here), restarts what another node asked to, takes free
    /// connections up to its fair share and gives the excess back.
    pub async fn coordinate(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.turn().await {
                tracing::warn!("this node's connections could not be coordinated: {}", error_chain(&e));
            }
            tokio::select! {
                _ = tokio::time::sleep(self.membership.every) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn turn(&self) -> Result<(), Error> {
        let ttl = self.membership.ttl_ms();
        let (records, nodes, leases) = self
            .blocking(|s, node| {
                s.heartbeat(node)?;
                Ok((s.connections()?, s.nodes()?, s.leases()?))
            })
            .await?;
        let now = now_ms();
        let me = &self.membership.node;
        let live = nodes.iter().filter(|n| n.heartbeat_at + ttl >= now || n.name == me.name).count().max(1);
        let wanted: Vec<&ConnectionRecord> = records.iter().filter(|r| !r.status.is_held()).collect();
        let share = wanted.len().div_ceil(live);

        // What runs here: renewed, or stopped when it should not run here any more.
        let here: Vec<String> = self.running.lock().await.keys().cloned().collect();
        for id in &here {
            if !wanted.iter().any(|r| &r.id == id) {
                tracing::info!(connection = %id, "paused, deauthorized or removed: stopped here");
                self.stop(id).await;
                continue;
            }
            let key = id.clone();
            match self.blocking(move |s, node| s.claim(&key, node, ttl)).await? {
                None => {
                    tracing::warn!(connection = %id, "another node took this connection over: stopped here");
                    if let Some(r) = self.running.lock().await.remove(id) {
                        r.stop().await;
                    }
                }
                Some(lease) if lease.restart => {
                    tracing::info!(connection = %id, "restarted, as asked by another node");
                    let key = id.clone();
                    self.blocking(move |s, _| s.request_restart(&key, false)).await?;
                    let _ = self.restart(id).await;
                }
                Some(_) => {}
            }
        }

        // Free connections, up to this node's share.
        let held_elsewhere = |id: &str| leases.iter().any(|l| l.key == id && l.node != me.name && l.expires_at > now);
        for record in &wanted {
            let count = self.running.lock().await.len();
            if count >= share {
                break;
            }
            let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner()).contains(&record.id);
            if failed || held_elsewhere(&record.id) || self.running.lock().await.contains_key(&record.id) {
                continue;
            }
            let _ = self.start(record).await;
        }

        // More than a fair share (a node joined): one given back a turn, so that the
        // node with fewer takes it.
        let count = self.running.lock().await.len();
        let fewer_elsewhere = nodes.iter().filter(|n| n.name != me.name && n.heartbeat_at + ttl >= now).any(|n| {
            leases.iter().filter(|l| l.node == n.name && l.expires_at > now && !l.key.starts_with("duty:")).count()
                < share
        });
        if count > share && fewer_elsewhere {
            let given = self.running.lock().await.keys().max().cloned();
            if let Some(id) = given {
                tracing::info!(connection = %id, "given back, for a node with fewer connections");
                self.stop(&id).await;
            }
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
