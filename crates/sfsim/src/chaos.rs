//! Chaos mode: the org's faults injected at random, one at a time, at a given rate
//! (faults a minute, exponentially spaced), each for a second or few and then undone
//! (a reset, a session expiry or a migration has nothing to undo). Seeded, so a run
//! can be replayed; every fault is logged (`tracing` and `GET /control/v1/chaos`).
//! Only faults a client can recover from without a person are drawn: an expired
//! refresh token stays expired, so refresh-token expiry is not among them.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::clock::now_ms;
pub use crate::config::{ALL, ChaosFault, ChaosSettings};
use crate::faults::Delivery;
use crate::rng::{ALNUM, Rng};
use crate::sessions::{IpRange, RefreshPolicy};
use crate::sim::Sim;

/// One injected fault.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    pub at_ms: i64,
    pub fault: ChaosFault,
    /// How long it lasted before it was undone (0 for one-off faults).
    pub millis: u64,
}

const LOG_SIZE: usize = 1_000;

pub struct Chaos {
    settings: watch::Sender<ChaosSettings>,
    log: Mutex<VecDeque<Injected>>,
}

impl Default for Chaos {
    /// Off.
    fn default() -> Chaos {
        let off = ChaosSettings { rate: 0.0, seed: 0, faults: None };
        Chaos { settings: watch::channel(off).0, log: Mutex::default() }
    }
}

impl Chaos {
    pub fn settings(&self) -> ChaosSettings {
        self.settings.borrow().clone()
    }

    /// New settings; the run starts again from their seed.
    pub fn set(&self, settings: ChaosSettings) -> Result<(), String> {
        if !(0.0..=600.0).contains(&settings.rate) {
            return Err("rate is faults a minute, 0 to 600".into());
        }
        if settings.faults.as_ref().is_some_and(Vec::is_empty) {
            return Err("faults, when given, names at least one".into());
        }
        self.settings.send_replace(settings);
        Ok(())
    }

    pub fn log(&self) -> Vec<Injected> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    fn record(&self, entry: Injected) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == LOG_SIZE {
            log.pop_front();
        }
        log.push_back(entry);
    }
}

/// Runs chaos for the life of the org, following its settings.
pub fn spawn(sim: Arc<Sim>, chaos: Arc<Chaos>) {
    tokio::spawn(async move {
        let mut changes = chaos.settings.subscribe();
        loop {
            let settings = changes.borrow_and_update().clone();
            let run = run(&sim, &chaos, settings);
            tokio::select! {
                _ = run => {}
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    });
}

async fn run(sim: &Sim, chaos: &Chaos, settings: ChaosSettings) {
    if settings.rate <= 0.0 {
        return std::future::pending().await;
    }
    let mut rng = Rng::derive(settings.seed, "chaos");
    let faults = settings.faults.unwrap_or_else(|| ALL.to_vec());
    let mean_gap_ms = 60_000.0 / settings.rate;
    loop {
        let gap = -mean_gap_ms * (1.0 - rng.unit()).ln();
        tokio::time::sleep(Duration::from_millis(gap as u64)).await;
        let fault = *rng.pick(&faults);
        let lasts = Duration::from_millis(1_000 + rng.below(3_000));
        let at_ms = now_ms();
        tracing::info!("sfsim chaos: {fault:?} for {} ms", lasts.as_millis());
        let undo = apply(sim, fault, lasts, &mut rng);
        let millis = match undo {
            Some(undo) => {
                // Undone even if the settings change meanwhile.
                tokio::time::sleep(lasts).await;
                undo(sim);
                lasts.as_millis() as u64
            }
            None => 0,
        };
        chaos.record(Injected { at_ms, fault, millis });
    }
}

type Undo = Box<dyn FnOnce(&Sim) + Send>;

/// Injects `fault`; what puts things back, if anything.
fn apply(sim: &Sim, fault: ChaosFault, lasts: Duration, rng: &mut Rng) -> Option<Undo> {
    let service = sim.org().service_user.clone();
    match fault {
        ChaosFault::StreamReset => {
            sim.end_streams();
            None
        }
        ChaosFault::SessionsExpired => {
            sim.sessions().expire_access(None);
            None
        }
        ChaosFault::Migration => {
            sim.migrate();
            None
        }
        ChaosFault::PasswordChange => {
            let new = format!("Ch-{}", rng.token(ALNUM, 14));
            let (old, _) = sim.set_password(&service, new);
            Some(Box::new(move |sim: &Sim| {
                if let Some(old) = old {
                    sim.org().passwords.insert(service.to_string(), old);
                }
            }))
        }
        ChaosFault::Deactivation => {
            sim.set_user_active(&service, false);
            Some(Box::new(move |sim: &Sim| sim.set_user_active(&service, true)))
        }
        ChaosFault::RefreshRotation => {
            let before = sim.org().app.refresh_policy;
            sim.org().app.refresh_policy = RefreshPolicy { rotate: true, ..before };
            Some(Box::new(move |sim: &Sim| sim.org().app.refresh_policy = before))
        }
        ChaosFault::IpRestriction => {
            // TEST-NET-1: no client is there.
            let nowhere = IpRange {
                start: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)),
                end: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 255)),
            };
            let before = sim.org().app.ip_ranges.replace(vec![nowhere]);
            Some(Box::new(move |sim: &Sim| sim.org().app.ip_ranges = before))
        }
        ChaosFault::Stall => {
            let until = now_ms() + lasts.as_millis() as i64;
            sim.stalled_until_ms.store(until, Ordering::SeqCst);
            Some(Box::new(move |sim: &Sim| {
                let _ = sim.stalled_until_ms.compare_exchange(until, 0, Ordering::SeqCst, Ordering::SeqCst);
            }))
        }
        ChaosFault::ApiLimit => {
            let before = sim.api_remaining.swap(0, Ordering::SeqCst);
            Some(Box::new(move |sim: &Sim| {
                let _ = sim.api_remaining.compare_exchange(0, before, Ordering::SeqCst, Ordering::SeqCst);
            }))
        }
        ChaosFault::ConcurrencyLimit => {
            let before = sim.faults.max_requests();
            sim.faults.set_max_requests(Some(0));
            Some(Box::new(move |sim: &Sim| sim.faults.set_max_requests(before)))
        }
        ChaosFault::SubscriptionLimit => {
            let before = sim.faults.max_subscriptions();
            sim.faults.set_max_subscriptions(Some(0));
            sim.end_streams();
            Some(Box::new(move |sim: &Sim| sim.faults.set_max_subscriptions(before)))
        }
        ChaosFault::DeliveryAllocation => {
            let before = sim.faults.delivery_remaining();
            sim.faults.set_delivery_remaining(Some(0));
            Some(Box::new(move |sim: &Sim| sim.faults.set_delivery_remaining(before)))
        }
        ChaosFault::SlowDelivery | ChaosFault::BurstyDelivery => {
            let before = sim.faults.delivery();
            let delivery = if fault == ChaosFault::SlowDelivery {
                Delivery { delay_ms: 100 + rng.below(900), ..before }
            } else {
                Delivery { burst_ms: 500 + rng.below(2_000), ..before }
            };
            sim.faults.set_delivery(delivery);
            Some(Box::new(move |sim: &Sim| sim.faults.set_delivery(before)))
        }
    }
}
