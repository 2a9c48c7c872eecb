//! How to build and serve the org.

use std::net::SocketAddr;
use std::time::Duration;

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
    pub chaos: crate::chaos::ChaosSettings,
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
            chaos: crate::chaos::ChaosSettings { rate: 0.0, seed: 42, faults: None },
        }
    }
}
