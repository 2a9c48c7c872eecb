//! Limits and misbehaviour an org shows on purpose, set through the control API (and
//! by chaos mode): requests served at once, Pub/Sub's concurrent-client limit,
//! the daily event-delivery allocation, slow and bursty delivery. The connected app's
//! refresh-token policy and IP restrictions live with the app (`org`); the control
//! module's request guard enforces the HTTP side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The most a limit can be ("none").
const UNLIMITED: usize = usize::MAX;
/// `DailyDeliveredPlatformEvents` as `limits` shows it. Real-Time Event Monitoring
/// events do not count against it, so sfsim counts deliveries only once an allocation
/// is set (`/control/v1/streams/allocation`).
pub const DELIVERY_ALLOCATION: i64 = 50_000;

/// How events reach subscribers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// Each batch waits this long before it is sent (slow delivery).
    #[serde(default)]
    pub delay_ms: u64,
    /// Batches leave only on multiples of this period (bursty delivery; 0: at once).
    #[serde(default)]
    pub burst_ms: u64,
}

impl Delivery {
    /// How long a batch ready now waits.
    pub fn wait(&self, now_ms: i64) -> Duration {
        let burst = match self.burst_ms as i64 {
            0 => 0,
            period => period - now_ms.rem_euclid(period),
        };
        Duration::from_millis(self.delay_ms + burst as u64)
    }
}

pub struct Faults {
    max_requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_subscriptions: AtomicUsize,
    /// Deliveries left today; negative: not counted.
    delivery_remaining: AtomicI64,
    delivery: Mutex<Delivery>,
    /// Open Subscribe streams per topic.
    subscriptions: Mutex<HashMap<&'static str, usize>>,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            max_requests: AtomicUsize::new(UNLIMITED),
            in_flight: AtomicUsize::new(0),
            max_subscriptions: AtomicUsize::new(UNLIMITED),
            delivery_remaining: AtomicI64::new(-1),
            delivery: Mutex::default(),
            subscriptions: Mutex::default(),
        }
    }
}

fn limit(value: Option<usize>) -> usize {
    value.unwrap_or(UNLIMITED)
}

fn shown(value: usize) -> Option<usize> {
    (value != UNLIMITED).then_some(value)
}

impl Faults {
    /// Most REST and Metadata requests served at once (`None`: no limit).
    pub fn set_max_requests(&self, max: Option<usize>) {
        self.max_requests.store(limit(max), Ordering::SeqCst);
    }

    pub fn max_requests(&self) -> Option<usize> {
        shown(self.max_requests.load(Ordering::SeqCst))
    }

    /// Most Subscribe streams open at once on a topic (`None`: no limit).
    pub fn set_max_subscriptions(&self, max: Option<usize>) {
        self.max_subscriptions.store(limit(max), Ordering::SeqCst);
    }

    pub fn max_subscriptions(&self) -> Option<usize> {
        shown(self.max_subscriptions.load(Ordering::SeqCst))
    }

    /// Events that may still be delivered today (`None`: not counted).
    pub fn set_delivery_remaining(&self, remaining: Option<i64>) {
        self.delivery_remaining.store(remaining.map_or(-1, |n| n.max(0)), Ordering::SeqCst);
    }

    pub fn delivery_remaining(&self) -> Option<i64> {
        Some(self.delivery_remaining.load(Ordering::SeqCst)).filter(|n| *n >= 0)
    }

    /// Takes up to `wanted` deliveries from the allocation: how many may be sent
    /// (all when deliveries are not counted).
    pub fn take_deliveries(&self, wanted: usize) -> usize {
        let mut granted = wanted;
        let _ = self.delivery_remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            if left < 0 {
                granted = wanted;
                return None;
            }
            granted = wanted.min(left as usize);
            Some(left - granted as i64)
        });
        granted
    }

    pub fn delivery(&self) -> Delivery {
        *self.delivery.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_delivery(&self, delivery: Delivery) {
        *self.delivery.lock().unwrap_or_else(|e| e.into_inner()) = delivery;
    }

    /// A request slot, or `None` when as many requests as allowed are being served.
    pub fn enter(self: &Arc<Self>) -> Option<InFlight> {
        let max = self.max_requests.load(Ordering::SeqCst);
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| InFlight(self.clone()))
    }
}

impl Faults {
    /// A place for one more Subscribe stream on `topic`, or `None` at the limit.
    pub fn open_subscription(self: &Arc<Self>, topic: &'static str) -> Option<Subscription> {
        let max = self.max_subscriptions.load(Ordering::SeqCst);
        let mut open = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(topic).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Subscription(self.clone(), topic))
    }
}

/// One open Subscribe stream; ending it frees its place.
pub struct Subscription(Arc<Faults>, &'static str);

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut open = self.0.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(self.1) {
            *count = count.saturating_sub(1);
        }
    }
}

/// One request being served; leaving frees its slot.
pub struct InFlight(Arc<Faults>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
