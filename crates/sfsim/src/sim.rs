//! The org as every interface sees it: its records and settings, OAuth sessions, one
//! retained event log per Pub/Sub topic, the API allowance and the stream epoch; and
//! the emission of events (streamed and/or stored, as Event Manager says). Each
//! interface keeps its own state beside this (REST's query cursors, the simulated
//! people of `activity`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sfwire::events::{EventRecord, LoginEventStream, LogoutEventStream, ReportEventStream};
use sfwire::id::SfId;
use tokio::sync::watch;

use crate::bus::Topic;
use crate::config::Config;
use crate::org::{EventType, Org};
use crate::sessions::Sessions;

/// The emulated org and everything it serves.
pub struct Sim {
    pub config: Config,
    pub base_url: String,
    pub(crate) org: Mutex<Org>,
    pub(crate) sessions: Mutex<Sessions>,
    pub topics: Vec<Topic>,
    pub retention_ms: Arc<AtomicI64>,
    pub api_remaining: AtomicI64,
    /// Until this time (epoch ms) REST and Metadata requests are accepted and not
    /// answered, as an org that is up but stuck (`/control/v1/stall`).
    pub stalled_until_ms: AtomicI64,
    /// Bumped to make every open Subscribe stream fail (`end_streams`).
    pub stream_epoch: watch::Sender<u64>,
    /// Limits and misbehaviour set on purpose (control API, chaos mode).
    pub faults: Arc<crate::faults::Faults>,
    /// PEM of the certificate TLS clients should trust (the generated CA, or the
    /// given certificate).
    pub tls_cert_pem: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sim {
    pub fn org(&self) -> MutexGuard<'_, Org> {
        lock(&self.org)
    }

    pub fn sessions(&self) -> MutexGuard<'_, Sessions> {
        lock(&self.sessions)
    }

    pub fn topic(&self, e: EventType) -> &Topic {
        self.topics.iter().find(|t| t.event_type == e).unwrap_or(&self.topics[0])
    }

    pub fn topic_by_name(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// Publishes report events to the stream (if streaming is on) and stores them
    /// (if storing is on). Returns their EventIdentifiers, and whether Salesforce
    /// recorded them at all (streamed or stored: without the licence, neither).
    pub fn emit_report(&self, mut events: Vec<ReportEventStream>) -> (Vec<String>, bool) {
        let ids = events.iter().filter_map(|e| e.EventIdentifier.clone()).collect();
        let (stream, store) = {
            let org = self.org();
            // The first transaction security policy that applies to an export decides.
            for e in &mut events {
                let export = e.Operation.as_deref().is_some_and(sfwire::pubsub::is_export_operation);
                let rows = e.RowsProcessed.unwrap_or_default() as u64;
                if let Some(p) = org.policies.iter().find(|p| export && p.applies(e.UserId.as_deref(), rows)) {
                    e.PolicyId = Some(p.id.to_string());
                    e.PolicyOutcome = Some(p.outcome.clone());
                }
            }
            (org.settings.streaming(EventType::Report), org.settings.storing(EventType::Report))
        };
        let events: Vec<Arc<ReportEventStream>> = events.into_iter().map(Arc::new).collect();
        if store {
            let mut org = self.org();
            for e in &events {
                org.store_report_event(e.clone());
            }
        }
        if stream {
            self.publish(
                EventType::Report,
                events.iter().map(|e| (e.EventUuid.clone(), encode(e.as_ref()), e.CreatedDate)),
            );
        }
        (ids, stream || store)
    }

    pub fn emit_login(&self, event: LoginEventStream) -> Option<String> {
        let id = event.EventIdentifier.clone();
        let (stream, store) = {
            let org = self.org();
            (org.settings.streaming(EventType::Login), org.settings.storing(EventType::Login))
        };
        let event = Arc::new(event);
        if store {
            self.org().store_login_event(event.clone());
        }
        if stream {
            self.publish(EventType::Login, [(event.EventUuid.clone(), encode(event.as_ref()), event.CreatedDate)]);
        }
        id
    }

    pub fn emit_logout(&self, event: LogoutEventStream) -> Option<String> {
        let id = event.EventIdentifier.clone();
        if self.org().settings.streaming(EventType::Logout) {
            self.publish(EventType::Logout, [(event.EventUuid.clone(), encode(&event), event.CreatedDate)]);
        }
        id
    }

    fn publish(&self, e: EventType, events: impl IntoIterator<Item = (Option<String>, Vec<u8>, i64)>) {
        self.topic(e).publish(events.into_iter().map(|(id, payload, at)| (id.unwrap_or_default(), payload, at)));
    }

    /// Ends every open Subscribe stream (`UNAVAILABLE`), as the server does now and then.
    pub fn end_streams(&self) {
        self.stream_epoch.send_modify(|e| *e += 1);
    }

    /// The org moves to another instance: open streams end, retained events get new
    /// replay ids, and replay ids issued before are refused.
    pub fn migrate(&self) {
        for topic in &self.topics {
            topic.migrate();
        }
        self.end_streams();
    }

    /// Activates or deactivates a user; a deactivation ends the user's sessions.
    pub fn set_user_active(&self, user: &SfId, active: bool) {
        let mut org = self.org();
        org.set_user_active(user, active);
        if !active {
            self.sessions().end_sessions(user);
        }
    }

    /// A new password for a user, which ends the user's sessions: the old password and
    /// how many sessions ended.
    pub fn set_password(&self, user: &SfId, password: String) -> (Option<String>, usize) {
        let old = self.org().passwords.insert(user.to_string(), password);
        (old, self.sessions().end_sessions(user))
    }

    /// Counts one REST call against the daily limit; false when none are left.
    pub fn spend_api_call(&self) -> bool {
        self.api_remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n > 0).then(|| n - 1)).is_ok()
    }
}

/// An event as an Avro datum in its topic's schema.
pub fn encode<E: EventRecord>(event: &E) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    event.write_avro(&mut out);
    out
}
