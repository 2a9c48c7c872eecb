//! `sfsim`: an emulated Salesforce org that speaks Salesforce's real protocols.
//!
//! One [`Sim`] holds the org (records, credentials, Event Manager settings), the OAuth
//! sessions, and one retained event log per Pub/Sub topic. [`start`] serves it:
//! - HTTP (one listener): OAuth 2.0 (`/services/oauth2/*`, `/id/*`), REST and SOQL
//!   (`/services/data/*`), the Metadata API's `readMetadata` (`/services/Soap/m/*`),
//!   and the control API for tests and demos (`/control/v1/*`, see `docs/sfsim.md`).
//! - gRPC: the Pub/Sub API (`eventbus.v1.PubSub`), plaintext and TLS.
//! - Activity: simulated people logging in, running and exporting reports.

pub mod activity;
pub mod browser;
pub mod bus;
pub mod control;
pub mod metadata;
pub mod model;
pub mod names;
pub mod oauth;
pub mod org;
pub mod pubsub;
pub mod rest;
pub mod rng;
pub mod sessions;
pub mod soql;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use sfwire::events::{EventRecord, LoginEventStream, LogoutEventStream, ReportEventStream};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::bus::Topic;
use crate::org::{EventType, Org, OrgSpec};
use crate::sessions::Sessions;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How to build and serve the org. Every field has a command-line flag
/// (`tripline sfsim --help`).
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub users: usize,
    /// Load the org from this JSON file instead of generating it.
    pub org_file: Option<std::path::PathBuf>,
    /// Simulated events per second (0: none until the control API asks).
    pub activity_rate: f64,
    pub http_addr: SocketAddr,
    /// Serve the same HTTP interfaces over TLS here too (`None`: plain HTTP only).
    pub https_addr: Option<SocketAddr>,
    pub grpc_addr: SocketAddr,
    /// Serve Pub/Sub over TLS here too (`None`: plaintext only).
    pub grpc_tls_addr: Option<SocketAddr>,
    /// PEM certificate and key for TLS; generated (self-signed) when absent.
    pub tls_cert: Option<(String, String)>,
    /// The address clients are told to use (`instance_url`), when not the bound one.
    pub public_url: Option<String>,
    pub callback_urls: Vec<String>,
    pub session_timeout: Duration,
    pub retention: Duration,
    pub keepalive: Duration,
    pub idle_timeout: Duration,
    pub api_daily_limit: i64,
}

impl Default for Config {
    fn default() -> Self {
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Config {
            seed: 42,
            users: 500,
            org_file: None,
            activity_rate: 0.0,
            http_addr: loopback(0),
            https_addr: None,
            grpc_addr: loopback(0),
            grpc_tls_addr: None,
            tls_cert: None,
            public_url: None,
            callback_urls: vec!["http://127.0.0.1:8080/oauth/salesforce/callback".into()],
            session_timeout: Duration::from_secs(2 * 3600),
            retention: Duration::from_secs(72 * 3600),
            keepalive: Duration::from_secs(270),
            idle_timeout: Duration::from_secs(60),
            api_daily_limit: 100_000,
        }
    }
}

/// The emulated org and everything it serves.
pub struct Sim {
    pub config: Config,
    pub base_url: String,
    org: Mutex<Org>,
    sessions: Mutex<Sessions>,
    pub topics: Vec<Topic>,
    pub retention_ms: Arc<AtomicI64>,
    pub api_remaining: AtomicI64,
    /// Bumped to make every open Subscribe stream fail (`drop-streams`).
    pub stream_epoch: watch::Sender<u64>,
    pub people: activity::People,
    pub cursors: rest::Cursors,
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
    /// (if storing is on). Returns their EventIdentifiers.
    pub fn emit_report(&self, events: Vec<ReportEventStream>) -> Vec<String> {
        let ids = events.iter().filter_map(|e| e.EventIdentifier.clone()).collect();
        let (stream, store) = {
            let org = self.org();
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
        ids
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

/// A running sfsim: its addresses and state. Dropping it does not stop it; the tasks
/// end with the runtime.
pub struct Running {
    pub sim: Arc<Sim>,
    pub http_addr: SocketAddr,
    pub https_addr: Option<SocketAddr>,
    pub grpc_addr: SocketAddr,
    pub grpc_tls_addr: Option<SocketAddr>,
}

impl Running {
    pub fn base_url(&self) -> &str {
        &self.sim.base_url
    }

    /// The service account's username and password (what an admin signs in with).
    pub fn service_account(&self) -> (String, String) {
        let org = self.sim.org();
        let user = org.service_user.clone();
        (org.username(&user), org.passwords[user.as_str()].clone())
    }

    /// The connected app's client id and secret.
    pub fn connected_app(&self) -> (String, String) {
        let org = self.sim.org();
        (org.app.client_id.clone(), org.app.client_secret.clone())
    }

    /// A client of this org's control API.
    pub fn control(&self) -> control::ControlClient {
        control::ControlClient::new(self.base_url())
    }
}

/// Builds the org and serves it; returns once every listener is bound.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let org = match &config.org_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let file = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            Org::from_file(file).with_context(|| format!("loading {}", path.display()))?
        }
        None => Org::generate(&OrgSpec {
            seed: config.seed,
            users: config.users,
            callback_urls: config.callback_urls.clone(),
        }),
    };
    let http = TcpListener::bind(config.http_addr).await.with_context(|| format!("binding {}", config.http_addr))?;
    let http_addr = http.local_addr()?;
    let grpc = TcpListener::bind(config.grpc_addr).await.with_context(|| format!("binding {}", config.grpc_addr))?;
    let grpc_addr = grpc.local_addr()?;
    let grpc_tls = match config.grpc_tls_addr {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?),
        None => None,
    };
    let grpc_tls_addr = grpc_tls.as_ref().map(TcpListener::local_addr).transpose()?;
    let https = match config.https_addr {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?),
        None => None,
    };
    let https_addr = https.as_ref().map(TcpListener::local_addr).transpose()?;
    // With HTTPS, clients are sent there (as Salesforce's instance_url is https).
    let base_url = config.public_url.clone().unwrap_or_else(|| match https_addr {
        Some(a) => format!("https://localhost:{}", a.port()),
        None => format!("http://{http_addr}"),
    });
    // (chain the listeners present, its key, the certificate clients trust)
    let (cert_pem, key_pem, trust_pem) = match &config.tls_cert {
        Some((cert, key)) => (cert.clone(), key.clone(), cert.clone()),
        None => {
            let generated = tls::self_signed()?;
            (generated.chain_pem, generated.key_pem, generated.ca_pem)
        }
    };

    let retention_ms = Arc::new(AtomicI64::new(config.retention.as_millis() as i64));
    let first_replay = 10_000 + (config.seed % 1_000) * 7;
    let topics = vec![
        Topic::new(EventType::Login, LoginEventStream::schema_json(), first_replay, retention_ms.clone()),
        Topic::new(EventType::Logout, LogoutEventStream::schema_json(), first_replay, retention_ms.clone()),
        Topic::new(EventType::Report, ReportEventStream::schema_json(), first_replay, retention_ms.clone()),
    ];
    let sessions = Sessions::new(config.seed, org.id.clone(), config.session_timeout.as_millis() as i64);
    let people = activity::People::new(&org, config.seed);
    let sim = Arc::new(Sim {
        base_url,
        api_remaining: AtomicI64::new(config.api_daily_limit),
        org: Mutex::new(org),
        sessions: Mutex::new(sessions),
        topics,
        retention_ms,
        stream_epoch: watch::channel(0).0,
        people,
        cursors: rest::Cursors::default(),
        tls_cert_pem: trust_pem,
        config,
    });

    let app = axum::Router::new()
        .merge(oauth::routes())
        .merge(rest::routes())
        .merge(metadata::routes())
        .nest("/control/v1", control::routes())
        .with_state(sim.clone());
    if let Some(listener) = https {
        tls::serve_https(listener, app.clone(), &cert_pem, &key_pem)?;
    }
    tokio::spawn(async move {
        if let Err(e) = axum::serve(http, app).await {
            tracing::error!("sfsim HTTP server stopped: {e}");
        }
    });
    pubsub::serve(sim.clone(), grpc, None);
    if let Some(listener) = grpc_tls {
        pubsub::serve(sim.clone(), listener, Some((cert_pem, key_pem)));
    }
    activity::spawn(sim.clone());
    tokio::spawn(retention_loop(sim.clone()));
    Ok(Running { sim, http_addr, https_addr, grpc_addr, grpc_tls_addr })
}

/// Retention also applies when nothing is published.
async fn retention_loop(sim: Arc<Sim>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        for topic in &sim.topics {
            topic.trim(now_ms());
        }
    }
}
