//! How to build and serve the org.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    /// Chaos mode (off at rate 0).
    pub chaos: ChaosSettings,
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
            chaos: ChaosSettings { rate: 0.0, seed: 42, faults: None },
        }
    }
}

/// A fault chaos mode can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChaosFault {
    /// Every open Subscribe stream ends (`UNAVAILABLE`), as in maintenance.
    StreamReset,
    /// Access tokens end, as at a session timeout.
    SessionsExpired,
    /// The org moves instance: replay ids issued before are refused.
    Migration,
    /// The service account's password changes (its sessions end); changed back after.
    PasswordChange,
    /// The service account is deactivated (its sessions end), then reactivated.
    Deactivation,
    /// Refresh tokens rotate on each use.
    RefreshRotation,
    /// Tokens are refused outside a range no client is in.
    IpRestriction,
    /// REST and Metadata answer nothing.
    Stall,
    /// The daily API allowance is spent.
    ApiLimit,
    /// No REST or Metadata request is served at once (`ConcurrentPerOrgLongTxn`).
    ConcurrencyLimit,
    /// No new Subscribe stream is accepted (the concurrent-client limit); open ones end.
    SubscriptionLimit,
    /// The event-delivery allocation is spent.
    DeliveryAllocation,
    /// Each batch of events waits before it is sent.
    SlowDelivery,
    /// Events leave in bursts.
    BurstyDelivery,
}

pub const ALL: [ChaosFault; 14] = [
    ChaosFault::StreamReset,
    ChaosFault::SessionsExpired,
    ChaosFault::Migration,
    ChaosFault::PasswordChange,
    ChaosFault::Deactivation,
    ChaosFault::RefreshRotation,
    ChaosFault::IpRestriction,
    ChaosFault::Stall,
    ChaosFault::ApiLimit,
    ChaosFault::ConcurrencyLimit,
    ChaosFault::SubscriptionLimit,
    ChaosFault::DeliveryAllocation,
    ChaosFault::SlowDelivery,
    ChaosFault::BurstyDelivery,
];

/// How chaos runs: off at rate 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosSettings {
    /// Faults a minute (0: off).
    pub rate: f64,
    #[serde(default)]
    pub seed: u64,
    /// The faults to draw from (all when absent).
    #[serde(default)]
    pub faults: Option<Vec<ChaosFault>>,
}
