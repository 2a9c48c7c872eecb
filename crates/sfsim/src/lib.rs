//! `sfsim`: an emulated Salesforce org that speaks Salesforce's real protocols.
//!
//! [`start`] builds the org from a [`Config`] and serves it:
//! - HTTP (one listener, and HTTPS beside it when asked): OAuth 2.0
//!   (`/services/oauth2/*`, `/id/*`, [`oauth`]), REST and SOQL (`/services/data/*`,
//!   [`rest`], [`soql`]), the Metadata API's `readMetadata` (`/services/Soap/m/*`,
//!   [`metadata`]), and the control API for tests and demos (`/control/v1/*`,
//!   [`control`], see `docs/sfsim.md`).
//! - gRPC: the Pub/Sub API (`eventbus.v1.PubSub`, [`pubsub`]), plaintext and TLS.
//! - [`activity`]: simulated people signing in, running and exporting reports.
//! - [`faults`]: limits and misbehaviour set on purpose; [`chaos`]: chaos mode, which
//!   injects the org's faults at random from a seed.
//!
//! [`Sim`] is what the interfaces share (the [`org`], OAuth [`sessions`], one [`bus`]
//! log per topic); each interface keeps its own state beside it. [`browser`] is a
//! scripted person at the sign-in pages.

pub mod activity;
pub mod browser;
pub mod bus;
pub mod chaos;
mod clock;
mod config;
pub mod control;
pub mod faults;
mod metadata;
pub mod model;
mod names;
mod oauth;
pub mod org;
mod partner;
mod pubsub;
mod rest;
mod rng;
pub mod sessions;
mod sim;
mod soql;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use anyhow::Context;
use sfwire::events::{EventRecord, LoginEventStream, LogoutEventStream, ReportEventStream};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use clock::now_ms;
pub use config::Config;
pub use sim::{Sim, encode};

use crate::bus::Topic;
use crate::org::{EventType, Org, OrgSpec};
use crate::sessions::Sessions;

/// A running sfsim: its addresses and state. Dropping it does not stop it; the tasks
/// end with the runtime.
pub struct Running {
    pub sim: Arc<Sim>,
    /// The simulated people (the control API acts through them too).
    pub people: Arc<activity::People>,
    /// Chaos mode's settings and what it injected.
    pub chaos: Arc<chaos::Chaos>,
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
    let people = Arc::new(activity::People::new(&org, config.seed));
    let chaos = Arc::new(chaos::Chaos::default());
    chaos.set(config.chaos.clone()).map_err(|e| anyhow::anyhow!("chaos: {e}"))?;
    let sim = Arc::new(Sim {
        base_url,
        api_remaining: AtomicI64::new(config.api_daily_limit),
        stalled_until_ms: AtomicI64::new(0),
        org: Mutex::new(org),
        sessions: Mutex::new(sessions),
        topics,
        retention_ms,
        stream_epoch: watch::channel(0).0,
        faults: Arc::default(),
        tls_cert_pem: trust_pem,
        config,
    });

    let app = axum::Router::new()
        .merge(oauth::routes().with_state(sim.clone()))
        .merge(
            rest::routes(sim.clone())
                .merge(metadata::routes().with_state(sim.clone()))
                .merge(partner::routes().with_state(sim.clone()))
                .layer(axum::middleware::from_fn_with_state(sim.clone(), control::stall))
                .layer(axum::middleware::from_fn_with_state(sim.clone(), control::guard)),
        )
        .nest("/control/v1", control::routes(sim.clone(), people.clone(), chaos.clone()))
        .fallback(rest::unknown);
    // Paths are routed with repeated slashes collapsed (`//services/data/...` is what
    // some clients send, and Salesforce serves it).
    let app = axum::Router::new().fallback_service(app).layer(axum::middleware::map_request(rest::collapse_slashes));
    if let Some(listener) = https {
        tls::serve_https(listener, app.clone(), &cert_pem, &key_pem)?;
    }
    tokio::spawn(async move {
        // Handlers see the client's address (IP restrictions).
        if let Err(e) = axum::serve(http, app.into_make_service_with_connect_info::<SocketAddr>()).await {
            tracing::error!("sfsim HTTP server stopped: {e}");
        }
    });
    pubsub::serve(sim.clone(), grpc, None);
    if let Some(listener) = grpc_tls {
        pubsub::serve(sim.clone(), listener, Some((cert_pem, key_pem)));
    }
    activity::spawn(sim.clone(), people.clone());
    chaos::spawn(sim.clone(), chaos.clone());
    tokio::spawn(retention_loop(sim.clone()));
    Ok(Running { sim, people, chaos, http_addr, https_addr, grpc_addr, grpc_tls_addr })
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
