//! `tripline`: the one binary. Subcommands are thin: each parses its flags and calls a
//! library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tripline", version, about = "Self-hosted insider-risk monitor for Salesforce report downloads")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the emulated Salesforce org (OAuth, REST/SOQL, Metadata API, Pub/Sub gRPC).
    Sfsim(SfsimArgs),
}

/// Every flag can also be set by the environment variable named beside it.
#[derive(Args)]
struct SfsimArgs {
    /// Seed for the generated org and its activity.
    #[arg(long, env = "SFSIM_SEED", default_value_t = 42)]
    seed: u64,
    /// How many people the generated org has.
    #[arg(long, env = "SFSIM_USERS", default_value_t = 500)]
    users: usize,
    /// Load the org from this JSON file (as written by --dump-org) instead of generating it.
    #[arg(long, env = "SFSIM_ORG_FILE")]
    org_file: Option<PathBuf>,
    /// Write the org as JSON to this file, then go on serving.
    #[arg(long)]
    dump_org: Option<PathBuf>,
    /// Simulated events per second (logins, report runs and exports, logouts).
    #[arg(long, env = "SFSIM_ACTIVITY", default_value_t = 0.0)]
    activity: f64,
    /// Address of the HTTP listener (OAuth, REST, Metadata API, control API).
    #[arg(long, env = "SFSIM_HTTP", default_value = "127.0.0.1:8443")]
    http: SocketAddr,
    /// Address of the plaintext Pub/Sub gRPC listener.
    #[arg(long, env = "SFSIM_GRPC", default_value = "127.0.0.1:7011")]
    grpc: SocketAddr,
    /// Address of the TLS Pub/Sub gRPC listener.
    #[arg(long, env = "SFSIM_GRPC_TLS", default_value = "127.0.0.1:7443")]
    grpc_tls: SocketAddr,
    /// PEM certificate for TLS (a self-signed one is made when absent; needs --tls-key).
    #[arg(long, env = "SFSIM_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "SFSIM_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Write the TLS certificate (PEM) here, for clients to trust.
    #[arg(long)]
    tls_cert_out: Option<PathBuf>,
    /// OAuth callback URLs registered on the connected app (repeatable).
    #[arg(
        long = "callback-url",
        env = "SFSIM_CALLBACK_URLS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080/oauth/salesforce/callback"
    )]
    callback_urls: Vec<String>,
    /// Access-token lifetime (session timeout), in seconds.
    #[arg(long, env = "SFSIM_SESSION_TIMEOUT", default_value_t = 7200)]
    session_timeout: u64,
    /// Pub/Sub retention window, in seconds.
    #[arg(long, env = "SFSIM_RETENTION", default_value_t = 72 * 3600)]
    retention: u64,
    /// Seconds between keepalive responses on an idle Subscribe stream.
    #[arg(long, env = "SFSIM_KEEPALIVE", default_value_t = 270)]
    keepalive: u64,
    /// Seconds a Subscribe stream with nothing requested waits before it is closed.
    #[arg(long, env = "SFSIM_IDLE_TIMEOUT", default_value_t = 60)]
    idle_timeout: u64,
    /// Daily API request allowance.
    #[arg(long, env = "SFSIM_API_LIMIT", default_value_t = 100_000)]
    api_limit: i64,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    let outcome =
        tokio::runtime::Runtime::new().context("starting the async runtime").and_then(|runtime| match cli.command {
            Command::Sfsim(args) => runtime.block_on(run_sfsim(args)),
        });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain, one cause per line, without a backtrace.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_sfsim(args: SfsimArgs) -> anyhow::Result<()> {
    let tls_cert = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((
            std::fs::read_to_string(cert).with_context(|| format!("reading {}", cert.display()))?,
            std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?,
        )),
        _ => None,
    };
    let config = sfsim::Config {
        seed: args.seed,
        users: args.users,
        org_file: args.org_file,
        activity_rate: args.activity,
        http_addr: args.http,
        grpc_addr: args.grpc,
        grpc_tls_addr: Some(args.grpc_tls),
        tls_cert,
        public_url: None,
        callback_urls: args.callback_urls,
        session_timeout: Duration::from_secs(args.session_timeout),
        retention: Duration::from_secs(args.retention),
        keepalive: Duration::from_secs(args.keepalive),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        api_daily_limit: args.api_limit,
    };
    let running = sfsim::start(config).await?;
    let sim = &running.sim;
    if let Some(path) = &args.dump_org {
        let file = sim.org().to_file();
        std::fs::write(path, serde_json::to_string_pretty(&file)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.tls_cert_out {
        std::fs::write(path, &sim.tls_cert_pem).with_context(|| format!("writing {}", path.display()))?;
    }
    {
        let org = sim.org();
        let service = &org.service_user;
        println!("sfsim: {} ({}), {} users", org.name, org.id, org.table("User").len());
        println!("  login / instance URL : {}", sim.base_url);
        println!(
            "  Pub/Sub gRPC         : http://{}  (TLS: https://{})",
            running.grpc_addr,
            running.grpc_tls_addr.map(|a| a.to_string()).unwrap_or_default()
        );
        println!(
            "  service account      : {} / {}",
            org.username(service),
            org.passwords.get(service.as_str()).map(String::as_str).unwrap_or_default()
        );
        println!("  connected app        : client_id {}", org.app.client_id);
        println!("                         client_secret {}", org.app.client_secret);
        println!("  control API          : {}/control/v1/org", sim.base_url);
    }
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    Ok(())
}
