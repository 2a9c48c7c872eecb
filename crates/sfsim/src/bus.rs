//! The event bus behind the Pub/Sub API: one retained log per topic, opaque replay
//! ids, a retention window, and a signal for subscribers waiting on new events.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::org::EventType;

/// One published event.
#[derive(Debug)]
pub struct BusEvent {
    pub replay: u64,
    pub published_ms: i64,
    /// The ProducerEvent id (the event's EventUuid).
    pub id: String,
    pub payload: Bytes,
}

impl BusEvent {
    pub fn replay_id(&self) -> Vec<u8> {
        encode_replay(self.replay)
    }
}

pub fn encode_replay(replay: u64) -> Vec<u8> {
    replay.to_be_bytes().to_vec()
}

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Earliest,
    Latest,
    /// After this replay id.
    After(u64),
}

/// Why a custom replay id cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// Not one of ours, or older than the retention window.
    Corrupted,
    /// Newer than anything published.
    Invalid,
}

struct Log {
    events: VecDeque<Arc<BusEvent>>,
    last_replay: u64,
    /// The newest replay id dropped by retention (0: none).
    trimmed_through: u64,
}

pub struct Topic {
    pub name: &'static str,
    pub event_type: EventType,
    pub schema_id: String,
    pub schema_json: String,
    log: RwLock<Log>,
    latest: watch::Sender<u64>,
    retention_ms: Arc<AtomicI64>,
}

/// Schema ids are derived from the schema text, so they change when the schema does.
pub fn schema_id(schema_json: &str) -> String {
    let digest = Sha256::digest(schema_json.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

impl Topic {
    pub fn new(event_type: EventType, schema_json: String, first_replay: u64, retention_ms: Arc<AtomicI64>) -> Topic {
        let (latest, _) = watch::channel(first_replay);
        Topic {
            name: event_type.topic(),
            event_type,
            schema_id: schema_id(&schema_json),
            schema_json,
            log: RwLock::new(Log { events: VecDeque::new(), last_replay: first_replay, trimmed_through: 0 }),
            latest,
            retention_ms,
        }
    }

    /// Appends events (id, payload, publish time); returns their replay ids. Replay ids
    /// increase but are not contiguous, as Salesforce's are not.
    pub fn publish(&self, events: impl IntoIterator<Item = (String, Vec<u8>, i64)>) -> Vec<u64> {
        let mut replays = Vec::new();
        let last = {
            let mut log = self.log.write().unwrap_or_else(|e| e.into_inner());
            for (id, payload, published_ms) in events {
                let step = 1 + (log.last_replay % 3);
                log.last_replay += step;
                let replay = log.last_replay;
                log.events.push_back(Arc::new(BusEvent { replay, published_ms, id, payload: Bytes::from(payload) }));
                replays.push(replay);
            }
            log.last_replay
        };
        self.trim(crate::clock::now_ms());
        self.latest.send_replace(last);
        replays
    }

    /// Drops events older than the retention window.
    pub fn trim(&self, now_ms: i64) {
        let horizon = now_ms - self.retention_ms.load(Ordering::Relaxed);
        let mut log = self.log.write().unwrap_or_else(|e| e.into_inner());
        while log.events.front().is_some_and(|e| e.published_ms < horizon) {
            if let Some(e) = log.events.pop_front() {
                log.trimmed_through = e.replay;
            }
        }
    }

    /// The org moved to another instance: the retained events are kept under new
    /// replay ids, and every replay id issued before is refused as corrupted.
    pub fn migrate(&self) {
        let last = {
            let mut log = self.log.write().unwrap_or_else(|e| e.into_inner());
            let base = log.last_replay + 1_000_000;
            let mut replay = base;
            let renumbered = log
                .events
                .iter()
                .map(|e| {
                    replay += 1 + replay % 3;
                    Arc::new(BusEvent {
                        replay,
                        published_ms: e.published_ms,
                        id: e.id.clone(),
                        payload: e.payload.clone(),
                    })
                })
                .collect();
            log.events = renumbered;
            log.trimmed_through = base;
            log.last_replay = replay;
            replay
        };
        self.latest.send_replace(last);
    }

    /// The newest replay id (also after retention emptied the log).
    pub fn latest_replay(&self) -> u64 {
        self.log.read().unwrap_or_else(|e| e.into_inner()).last_replay
    }

    pub fn subscribe_latest(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// Validates a start point; returns the replay id to deliver after.
    pub fn resolve_start(&self, start: Start) -> Result<u64, ReplayError> {
        let log = self.log.read().unwrap_or_else(|e| e.into_inner());
        match start {
            Start::Latest => Ok(log.last_replay),
            Start::Earliest => Ok(log.events.front().map_or(log.last_replay, |e| e.replay - 1)),
            Start::After(r) if r < log.trimmed_through => Err(ReplayError::Corrupted),
            Start::After(r) if r > log.last_replay => Err(ReplayError::Invalid),
            Start::After(r) => Ok(r),
        }
    }

    /// Whether a subscriber positioned after `cursor` has lost events to retention.
    pub fn expired(&self, cursor: u64) -> bool {
        cursor < self.log.read().unwrap_or_else(|e| e.into_inner()).trimmed_through
    }

    /// Up to `max` events after `cursor`.
    pub fn read_after(&self, cursor: u64, max: usize) -> Vec<Arc<BusEvent>> {
        let log = self.log.read().unwrap_or_else(|e| e.into_inner());
        let start = log.events.partition_point(|e| e.replay <= cursor);
        log.events.range(start..).take(max).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.log.read().unwrap_or_else(|e| e.into_inner()).events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Decodes a replay id we issued.
pub fn decode_replay(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(retention_ms: i64) -> Topic {
        Topic::new(EventType::Report, "{}".into(), 5_000, Arc::new(AtomicI64::new(retention_ms)))
    }

    #[test]
    fn replay_ids_increase_and_reads_resume() {
        let t = topic(i64::MAX / 2);
        let now = crate::clock::now_ms();
        let ids = t.publish((0..10).map(|i| (format!("e{i}"), vec![i as u8], now)));
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let start = t.resolve_start(Start::Earliest).expect("earliest");
        assert_eq!(t.read_after(start, 4).iter().map(|e| e.replay).collect::<Vec<_>>(), ids[..4]);
        assert_eq!(t.read_after(ids[4], 100).len(), 5);
        assert_eq!(t.resolve_start(Start::Latest), Ok(ids[9]));
        assert_eq!(t.resolve_start(Start::After(ids[9] + 1)), Err(ReplayError::Invalid));
        assert_eq!(decode_replay(&encode_replay(ids[3])), Some(ids[3]));
        assert_eq!(decode_replay(b"bogus"), None);
    }

    #[test]
    fn a_migration_keeps_the_events_under_new_replay_ids() {
        let t = topic(i64::MAX / 2);
        let now = crate::clock::now_ms();
        let old = t.publish((0..5).map(|i| (format!("e{i}"), vec![i as u8], now)));
        t.migrate();
        for r in &old {
            assert_eq!(t.resolve_start(Start::After(*r)), Err(ReplayError::Corrupted));
        }
        let start = t.resolve_start(Start::Earliest).expect("earliest");
        let kept = t.read_after(start, 10);
        assert_eq!(kept.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["e0", "e1", "e2", "e3", "e4"]);
        assert!(kept[0].replay > old[4]);
        let new = t.publish([("e5".to_string(), vec![], now)]);
        assert_eq!(t.read_after(kept[4].replay, 10)[0].replay, new[0]);
    }

    #[test]
    fn retention_expires_old_replay_ids() {
        let t = topic(60_000);
        let now = crate::clock::now_ms();
        let old = t.publish([("a".to_string(), vec![], now - 120_000), ("b".to_string(), vec![], now - 90_000)]);
        let new = t.publish([("c".to_string(), vec![], now)]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.resolve_start(Start::After(old[0])), Err(ReplayError::Corrupted));
        assert_eq!(t.resolve_start(Start::After(old[1])), Ok(old[1]));
        assert_eq!(t.read_after(old[1], 10)[0].replay, new[0]);
    }
}
