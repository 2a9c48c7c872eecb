//! Leases and fencing, as both stores keep them: the upsert that claims a lease, and
//! the fencing tokens this process writes under.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Lease, Node, Result, StoreError};
use crate::store::rows::Cells;

/// Claims or renews a lease in one statement (`{now}` is the store's clock in SQL,
/// `?1`..`?4` the key, node, incarnation and ttl): renewed by the same incarnation,
/// taken over when expired or by a new incarnation of the same node.
pub(super) const CLAIM: &str = "INSERT INTO leases (key, node, incarnation, token, expires_at, restart)
     VALUES ($1, $2, $3, 1, {now} + $4, FALSE)
     ON CONFLICT (key) DO UPDATE SET
         token = CASE WHEN leases.node = excluded.node AND leases.incarnation = excluded.incarnation
                      THEN leases.token ELSE leases.token + 1 END,
         restart = CASE WHEN leases.node = excluded.node AND leases.incarnation = excluded.incarnation
                        THEN leases.restart ELSE FALSE END,
         node = excluded.node, incarnation = excluded.incarnation, expires_at = excluded.expires_at
     WHERE leases.node = excluded.node OR leases.expires_at < {now}
     RETURNING key, node, token, expires_at, restart";

/// Expires a lease now, its token kept (so the next holder raises it).
pub(super) const RELEASE: &str =
    "UPDATE leases SET expires_at = 0, restart = FALSE WHERE key = $1 AND node = $2 AND incarnation = $3";

pub(super) const LEASE_COLUMNS: &str = "key, node, token, expires_at, restart";
pub(super) const NODE_COLUMNS: &str = "name, incarnation, started_at, heartbeat_at, address";

pub(super) fn lease<R: Cells>(r: &R) -> std::result::Result<Lease, R::Error> {
    Ok(Lease { key: r.text(0)?, node: r.text(1)?, token: r.int(2)?, expires_at: r.int(3)?, restart: r.flag(4)? })
}

pub(super) fn node<R: Cells>(r: &R) -> std::result::Result<Node, R::Error> {
    Ok(Node {
        name: r.text(0)?,
        incarnation: r.text(1)?,
        started_at: r.int(2)?,
        heartbeat_at: r.int(3)?,
        address: r.text_opt(4)?,
    })
}

/// The fencing token this process claimed each lease with. A lease lost is not
/// forgotten: its connection's writes keep being refused until it is claimed again.
#[derive(Default)]
pub(super) struct Fences(Mutex<HashMap<String, i64>>);

impl Fences {
    pub(super) fn held(&self, key: &str) -> Option<i64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied()
    }

    pub(super) fn claimed(&self, lease: &Lease) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(lease.key.clone(), lease.token);
    }

    pub(super) fn released(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Refuses a write for `key` when its lease now has another token than the one
    /// claimed (`stored`, read in the write's transaction).
    pub(super) fn check(&self, key: &str, held: i64, stored: Option<i64>) -> Result<()> {
        if stored == Some(held) {
            return Ok(());
        }
        Err(StoreError::Fenced(format!(
            "this node no longer holds connection {key} (its lease is now {}): the write was refused",
            stored.map_or_else(|| "gone".to_owned(), |t| format!("at token {t}, not {held}"))
        )))
    }
}
