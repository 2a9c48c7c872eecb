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
    /// Everything on one machine: an emulated org with live activity, and the console
    /// (with a one-time admin password) to connect it and watch its report downloads.
    Demo(DemoArgs),
    /// Console accounts: create one (admin, analyst or viewer), list them.
    Admin(AdminArgs),
    /// API tokens for the JSON API: create (shown once; only its hash is kept), list,
    /// revoke. Every change is audited.
    ApiToken(ApiTokenArgs),
    /// The data connections and their health: status, since when, and each problem's
    /// source and fix.
    Connections(ConnectionsArgs),
    /// Forensic Search from the terminal.
    Search(SearchArgs),
    /// Alerts from the terminal: list (formats and --checkpoint as for search), show
    /// one with its downloads and notes, update its state, assignee or notes.
    Alerts(AlertsArgs),
    /// The server: the web console, the JSON API (`/api/v1`, OpenAPI at
    /// `/api/v1/openapi.json`) and the connectors of every stored connection.
    Serve(ServeArgs),
    /// Run the emulated Salesforce org (OAuth, REST/SOQL, Metadata API, Pub/Sub gRPC).
    Sfsim(SfsimArgs),
    /// Move an embedded installation (SQLite) to PostgreSQL: every table copied in
    /// batches (run it again to resume an interrupted copy), then verified by row
    /// counts and checksums. Stop `tripline serve` first. Tokens are sealed again with
    /// TRIPLINE_SECRET_KEY.
    Migrate(MigrateArgs),
}

#[derive(Args)]
struct MigrateArgs {
    /// The SQLite database to copy (its key file beside it opens its tokens).
    #[arg(long)]
    from: PathBuf,
    /// The PostgreSQL database to copy into: new and empty, or an interrupted copy's.
    #[arg(long)]
    to: String,
}

#[derive(Args)]
struct DemoArgs {
    /// Create the Salesforce connection at start through the org's real OAuth pages,
    /// signed in as the service account, without a browser (instead of in the console).
    #[arg(long)]
    auto_connect: bool,
    /// Where the console listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The demo's SQLite database (replaced at each start).
    #[arg(long, env = "TRIPLINE_DATABASE", default_value = "tripline-demo.db")]
    database: PathBuf,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 500)]
    users: usize,
    /// Simulated events per second.
    #[arg(long, default_value_t = 20.0)]
    activity: f64,
    /// Address of the emulated org's HTTP listener.
    #[arg(long, default_value = "127.0.0.1:8443")]
    sfsim_http: SocketAddr,
    /// Address of the emulated org's Pub/Sub listener.
    #[arg(long, default_value = "127.0.0.1:7011")]
    sfsim_grpc: SocketAddr,
}

#[derive(Args)]
struct AdminArgs {
    #[arg(long, env = "TRIPLINE_DATABASE", default_value = "tripline.db", global = true)]
    database: tripline::store::Database,
    #[command(subcommand)]
    action: AdminAction,
}

#[derive(Subcommand)]
enum AdminAction {
    /// Create a console account and print its generated password (only now).
    CreateUser {
        #[arg(long)]
        username: String,
        #[arg(long, value_parser = ["admin", "analyst", "viewer"], default_value = "admin")]
        role: String,
    },
    /// List the console accounts.
    ListUsers,
}

#[derive(Args)]
struct ApiTokenArgs {
    #[arg(long, env = "TRIPLINE_DATABASE", default_value = "tripline.db", global = true)]
    database: tripline::store::Database,
    #[command(subcommand)]
    action: TokenAction,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token and print it (only now).
    Create {
        /// A unique name saying who uses the token (e.g. "siem").
        #[arg(long)]
        name: String,
        /// Expire after this long (90d, 12w, 24h...). Default: never.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List the tokens: name, created, last used, expiry, revocation.
    List,
    /// Revoke a token for good.
    Revoke {
        /// The token's name.
        name: String,
    },
}

#[derive(Args)]
struct ConnectionsArgs {
    #[arg(long, env = "TRIPLINE_DATABASE", default_value = "tripline.db", global = true)]
    database: tripline::store::Database,
    #[command(subcommand)]
    action: Option<ConnectionsAction>,
    /// Also print each connection's status history.
    #[arg(long)]
    history: bool,
    /// Pause a connection (by id): `serve` no longer monitors it from its next start.
    #[arg(long, value_name = "ID", conflicts_with_all = ["resume", "deauthorize"])]
    pause: Option<String>,
    /// Resume a paused connection (by id).
    #[arg(long, value_name = "ID", conflicts_with = "deauthorize")]
    resume: Option<String>,
    /// Revoke a connection's Salesforce tokens and stop monitoring it for good (by id).
    #[arg(long, value_name = "ID")]
    deauthorize: Option<String>,
    /// Origins allowed besides Salesforce's own hosts (for --deauthorize against sfsim).
    #[arg(long = "allow-origin", env = "TRIPLINE_ALLOW_ORIGINS", value_delimiter = ',', global = true)]
    allow_origins: Vec<String>,
}

#[derive(Subcommand)]
enum ConnectionsAction {
    /// Add a Salesforce connection from a terminal: prints the address to authorize at
    /// (open it in any browser and sign in as the service account), listens on the
    /// callback URL for Salesforce's answer, and stores the connection. Run it while
    /// `tripline serve` is stopped (it listens where serve would); serve monitors the
    /// connection from its next start.
    Add(AddArgs),
}

#[derive(Args)]
struct AddArgs {
    /// The display name (unique, in any case).
    #[arg(long)]
    name: String,
    /// Who to monitor: `all`, `users FILE` or `groups FILE` (a CSV, as in the console).
    #[arg(long, num_args = 1..=2, value_names = ["MODE", "FILE"], required = true)]
    scope: Vec<String>,
    /// The org's My Domain URL (default: login.salesforce.com).
    #[arg(long)]
    my_domain: Option<String>,
    /// The connected app's consumer key.
    #[arg(long, env = "TRIPLINE_SALESFORCE_CLIENT_ID")]
    salesforce_client_id: String,
    /// The connected app's consumer secret.
    #[arg(long, env = "TRIPLINE_SALESFORCE_CLIENT_SECRET", hide_env_values = true)]
    salesforce_client_secret: String,
    /// The callback URL registered on the connected app; this command listens there.
    #[arg(long, env = "TRIPLINE_REDIRECT_URI", default_value = "http://127.0.0.1:8080/oauth/salesforce/callback")]
    redirect_uri: url::Url,
    /// Corporate IP ranges (CIDR), as for `serve`.
    #[arg(long = "corporate-ip-range", env = "TRIPLINE_CORPORATE_IP_RANGES", value_delimiter = ',')]
    corporate_ip_ranges: Vec<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// The SQLite file, or a postgres:// URL shared by several nodes.
    #[arg(long, env = "TRIPLINE_DATABASE", default_value = "tripline.db")]
    database: tripline::store::Database,
    /// This node's name among the nodes of one database (default: the host name).
    /// Unique per node; a node restarted under its name takes its connections back at once.
    #[arg(long, env = "TRIPLINE_NODE_NAME")]
    node_name: Option<String>,
    /// Create the database if there is none (without it, a missing database is an
    /// error, so that a mistyped path never starts an empty installation).
    #[arg(long)]
    init: bool,
    /// Where the console and the JSON API listen.
    #[arg(long, env = "TRIPLINE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The address people reach the console at, when it differs from --listen (a
    /// proxy, TLS in front). With https, session cookies are marked Secure.
    #[arg(long, env = "TRIPLINE_PUBLIC_URL")]
    public_url: Option<url::Url>,
    /// Corporate IP ranges (CIDR) for connections added in the console: downloads
    /// from other addresses count as going to unmonitored devices (repeatable).
    #[arg(long = "corporate-ip-range", env = "TRIPLINE_CORPORATE_IP_RANGES", value_delimiter = ',')]
    corporate_ip_ranges: Vec<String>,
    /// The connected app's consumer key.
    #[arg(long, env = "TRIPLINE_SALESFORCE_CLIENT_ID")]
    salesforce_client_id: String,
    /// The connected app's consumer secret.
    #[arg(long, env = "TRIPLINE_SALESFORCE_CLIENT_SECRET", hide_env_values = true)]
    salesforce_client_secret: String,
    /// The OAuth callback URL registered on the connected app (default: the public
    /// URL's /oauth/salesforce/callback).
    #[arg(long, env = "TRIPLINE_REDIRECT_URI")]
    redirect_uri: Option<String>,
    /// The Pub/Sub API endpoint.
    #[arg(long, env = "TRIPLINE_PUBSUB_URL", default_value = salesforce::pubsub::SALESFORCE_ENDPOINT)]
    pubsub_url: String,
    /// A PEM CA certificate to trust for the Pub/Sub endpoint (an emulated org).
    #[arg(long, env = "TRIPLINE_PUBSUB_CA")]
    pubsub_ca: Option<PathBuf>,
    /// Origins allowed besides Salesforce's own hosts, e.g. an sfsim address (repeatable).
    #[arg(long = "allow-origin", env = "TRIPLINE_ALLOW_ORIGINS", value_delimiter = ',')]
    allow_origins: Vec<String>,
    /// Minutes between scans of the monitored users.
    #[arg(long, env = "TRIPLINE_RESCAN_MINUTES", default_value_t = 15)]
    rescan_minutes: u64,
    /// Seconds between checks of Event Manager and the licence (one Metadata API call
    /// each): a fault shows within about this long.
    #[arg(long, env = "TRIPLINE_CHECK_SECONDS", default_value_t = 5)]
    check_seconds: u64,
    /// Minutes between reconciliations of stored exports with Salesforce's stored
    /// ReportEvent object.
    #[arg(long, env = "TRIPLINE_RECONCILE_MINUTES", default_value_t = 60)]
    reconcile_minutes: u64,
}

#[derive(Args)]
struct SearchArgs {
    /// The database to search.
    #[arg(long, env = "TRIPLINE_DATABASE", default_value = "tripline.db")]
    database: tripline::store::Database,
    /// Events within this long before now (7d, 24h, 90m...). Default 7d.
    #[arg(long, conflicts_with = "from")]
    since: Option<String>,
    /// Start of the time range (RFC 3339, e.g. 2026-11-01T00:00:00Z).
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// End of the time range (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    /// A user: username, email or Salesforce id (repeatable: any of them).
    #[arg(long)]
    user: Vec<String>,
    /// Report name pattern; `*` matches any text (e.g. "*Pipeline*").
    #[arg(long)]
    report_name: Option<String>,
    /// Only exports of at least this many rows.
    #[arg(long)]
    min_rows: Option<u64>,
    #[arg(long, value_parser = ["corporate", "unmonitored"])]
    destination: Option<String>,
    #[arg(long, value_parser = ["no-risk", "low", "moderate", "high", "critical"])]
    severity: Vec<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: tripline::search::output::Format,
    /// Comma-separated columns for table and CSV output.
    #[arg(long)]
    columns: Option<String>,
    /// Return only events not returned before under this name, then remember them.
    #[arg(long)]
    checkpoint: Option<String>,
    /// Oldest first (default: newest first).
    #[arg(long)]
    oldest_first: bool,
}

#[derive(Args)]
struct AlertsArgs {
    /// The database.
    #[arg(long, global = true, env = "TRIPLINE_DATABASE", default_value = "tripline.db")]
    database: tripline::store::Database,
    #[command(subcommand)]
    action: AlertsAction,
}

#[derive(Subcommand)]
enum AlertsAction {
    /// Alerts, newest first (with --checkpoint: those not listed before, oldest first).
    List {
        /// States (repeatable): open, in-progress, true-positive, benign, false-positive.
        #[arg(long)]
        state: Vec<String>,
        /// This severity or higher: low, moderate, high, critical.
        #[arg(long)]
        severity: Option<String>,
        /// Only this rule (its id).
        #[arg(long)]
        rule: Option<i64>,
        /// Only this user (username or Salesforce id).
        #[arg(long)]
        user: Option<String>,
        /// At most this many (without --checkpoint).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, value_enum, default_value = "table")]
        format: tripline::search::output::Format,
        /// Return only alerts not returned before under this name, then remember them.
        #[arg(long)]
        checkpoint: Option<String>,
    },
    /// One alert: its details, downloads and notes (JSON).
    Show { id: String },
    /// Triage an alert (audited).
    Update {
        id: String,
        /// open, in-progress, true-positive, benign or false-positive.
        #[arg(long)]
        state: Option<String>,
        /// A console account's username ("" unassigns).
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
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
    /// Also serve OAuth, REST and the Metadata API over HTTPS here; the instance URL
    /// then is https (as Salesforce's is).
    #[arg(long, env = "SFSIM_HTTPS")]
    https: Option<SocketAddr>,
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
    /// Chaos mode: inject the org's faults at random, this many a minute (each logged,
    /// from --seed; see docs/sfsim.md).
    #[arg(long, env = "SFSIM_CHAOS", default_value_t = 0.0)]
    chaos: f64,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    let outcome =
        tokio::runtime::Runtime::new().context("starting the async runtime").and_then(|runtime| match cli.command {
            Command::Demo(args) => runtime.block_on(run_demo(args)),
            Command::Admin(args) => run_admin(args),
            Command::ApiToken(args) => run_api_token(args),
            Command::Connections(args) => run_connections(args),
            Command::Search(args) => run_search(args).or_else(quiet_broken_pipe),
            Command::Alerts(args) => run_alerts(args).or_else(quiet_broken_pipe),
            Command::Serve(args) => runtime.block_on(run_serve(args)),
            Command::Sfsim(args) => runtime.block_on(run_sfsim(args)),
            Command::Migrate(args) => run_migrate(args),
        });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain of causes, without a backtrace.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_migrate(args: MigrateArgs) -> anyhow::Result<()> {
    use std::io::Write;
    use tripline::store::secrets::SecretBox;
    let tripline::store::Database::Postgres(url) = args.to.parse::<tripline::store::Database>()? else {
        anyhow::bail!("--to must be a postgres:// URL");
    };
    let source_key = SecretBox::of_sqlite(&args.from)?;
    let ca = tripline::store::Database::postgres_ca()?;
    let target = tripline::store::postgres::PostgresStore::connect_with_ca(&url, SecretBox::from_env()?, ca.as_deref())
        .context("connecting to the PostgreSQL database")?;
    let mut shown = (String::new(), std::time::Instant::now());
    let outcome = target.import_sqlite(&args.from, &source_key, |p| {
        // One line per table, redrawn at most ten times a second.
        if p.table != shown.0 {
            if !shown.0.is_empty() {
                eprintln!();
            }
            shown = (p.table.clone(), std::time::Instant::now());
        } else if shown.1.elapsed() < std::time::Duration::from_millis(100) && p.copied < p.total {
            return true;
        }
        shown.1 = std::time::Instant::now();
        let percent = (p.copied * 100).checked_div(p.total).unwrap_or(100).min(100);
        let width = 30 * percent as usize / 100;
        eprint!(
            "\r  {:<20} [{}{}] {:>3}%  {} of {} rows",
            p.table,
            "#".repeat(width),
            " ".repeat(30 - width),
            percent,
            p.copied,
            p.total
        );
        let _ = std::io::stderr().flush();
        true
    });
    if !shown.0.is_empty() {
        eprintln!();
    }
    let report = outcome?.context("the copy stopped")?;
    let rows: u64 = report.tables.iter().map(|(_, n)| n).sum();
    println!(
        "{} tables, {rows} rows copied{} and verified (row counts and checksums match).",
        report.tables.len(),
        if report.resumed { " (continuing an interrupted copy)" } else { "" }
    );
    println!(
        "Start the nodes with --database {} and the same TRIPLINE_SECRET_KEY.",
        tripline::store::Database::Postgres(url)
    );
    Ok(())
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
        https_addr: args.https,
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
        chaos: sfsim::chaos::ChaosSettings { rate: args.chaos, seed: args.seed, faults: None },
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

/// Output cut short by the reader (`| head`) is not a failure.
fn quiet_broken_pipe(e: anyhow::Error) -> anyhow::Result<()> {
    match e.downcast_ref::<std::io::Error>() {
        Some(io) if io.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(e),
    }
}

fn run_search(args: SearchArgs) -> anyhow::Result<()> {
    use tripline::search::{Field, Filter, Op, SearchQuery, Sort, output};

    let store = args.database.open()?;
    let now = chrono::Utc::now().timestamp_millis();
    let parse_time = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|d| d.timestamp_millis())
            .with_context(|| format!("{text:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z"))
    };
    let (from_ms, to_ms) = match (&args.from, &args.to) {
        (Some(from), Some(to)) => (parse_time(from)?, parse_time(to)?),
        _ => (now - tripline::search::parse_duration(args.since.as_deref().unwrap_or("7d"))?, now + 1),
    };
    let mut filters = Vec::new();
    if !args.user.is_empty() {
        let mut any = Vec::new();
        for u in &args.user {
            for field in [Field::Username, Field::Email, Field::UserId] {
                any.push(Filter::Term { field, op: Op::Is(u.clone()) });
            }
        }
        filters.push(Filter::Any(any));
    }
    if let Some(pattern) = &args.report_name {
        filters.push(Filter::Term { field: Field::ReportName, op: Op::Matches(pattern.clone()) });
    }
    if let Some(rows) = args.min_rows {
        filters.push(Filter::Term { field: Field::Rows, op: Op::Greater(rows as f64 - 0.5) });
    }
    if let Some(d) = &args.destination {
        filters.push(Filter::Term { field: Field::Destination, op: Op::Is(d.clone()) });
    }
    if !args.severity.is_empty() {
        filters.push(Filter::Term { field: Field::Severity, op: Op::AnyOf(args.severity.clone()) });
    }
    let columns = args.columns.as_deref().map(output::parse_columns).transpose().map_err(anyhow::Error::msg)?;
    let after_seq = match &args.checkpoint {
        Some(name) => Some(store.search_checkpoint(name)?),
        None => None,
    };
    let mut query = SearchQuery {
        from_ms,
        to_ms,
        filter: Filter::All(filters),
        sort: Sort { field: Field::ObservedAt, descending: !args.oldest_first },
        page_size: 1000,
        after: None,
        after_seq,
    };
    query.validate().map_err(anyhow::Error::msg)?;
    let stdout = std::io::stdout();
    let mut writer = output::Writer::new(stdout.lock(), args.format, columns);
    writer.header()?;
    let mut max_seq = after_seq.unwrap_or(0);
    loop {
        let page = store.search(&query)?;
        writer.rows(&page.events)?;
        max_seq = page.events.iter().map(|e| e.seq).fold(max_seq, i64::max);
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    writer.finish()?;
    if let Some(name) = &args.checkpoint {
        store.set_search_checkpoint(name, max_seq)?;
    }
    Ok(())
}

/// The demo's alerting: the recommended rules (the quieter ones enabled) and two
/// people who hold Export Reports on the departing employees list.
fn demo_alerting(store: &dyn tripline::store::Store, org: &sfsim::Running) -> anyhow::Result<()> {
    const ENABLED: [&str; 4] = [
        "Departing employee exports",
        "Mass export within an hour",
        "Large export of customer data",
        "Critical-risk export",
    ];
    for draft in tripline::alerts::recommended::recommended() {
        let rule = store.create_rule(&draft, "demo")?;
        if ENABLED.contains(&rule.name.as_str()) {
            store.set_rule_enabled(rule.id, true, "demo")?;
        }
    }
    let departing: Vec<String> = {
        let org = org.sim.org();
        let now = chrono::Utc::now().timestamp_millis();
        org.user_ids()
            .into_iter()
            .filter(|u| org.user_active(u) && org.user_has_permission(u, "PermissionsExportReport", now))
            .filter(|u| *u != org.service_user)
            .take(2)
            .map(|u| org.username(&u).to_lowercase())
            .collect()
    };
    let now = chrono::Utc::now();
    let entries: Vec<tripline::risk::WatchEntry> = departing
        .into_iter()
        .map(|username| tripline::risk::WatchEntry {
            kind: tripline::risk::WatchKind::Departing,
            username,
            departure: Some((now + chrono::Duration::days(14)).date_naive()),
            note: Some("Resigned; last day in two weeks".into()),
            added_at: now.timestamp_millis(),
            added_by: "demo".into(),
        })
        .collect();
    store.add_watch_entries(&entries, "demo")?;
    Ok(())
}

async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    use tripline::store::Store;

    // The console's address comes first: the emulated org registers its callback.
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let console_url = format!("http://{}", listener.local_addr()?);
    let callback = format!("{console_url}/oauth/salesforce/callback");
    let config = sfsim::Config {
        seed: args.seed,
        users: args.users,
        activity_rate: args.activity,
        http_addr: args.sfsim_http,
        grpc_addr: args.sfsim_grpc,
        callback_urls: vec![callback.clone()],
        ..sfsim::Config::default()
    };
    let org = sfsim::start(config).await?;
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", args.database.display()));
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("replacing {}", path.display()))?;
        }
    }
    let store: Arc<dyn Store> = Arc::new(tripline::store::sqlite::SqliteStore::create(&args.database)?);
    let password = tripline::access::generate_password();
    let hash = tripline::access::hash_password(&password).map_err(anyhow::Error::msg)?;
    store.create_account("admin", tripline::access::Role::Admin, &hash, "demo")?;
    let app = tripline::emulated::app(&org, &callback);
    let corporate: Vec<String> = sfsim::activity::CORPORATE_CIDRS.iter().map(|c| (*c).to_owned()).collect();
    demo_alerting(&*store, &org)?;
    if args.auto_connect {
        let new = tripline::connector::NewConnection {
            display_name: "Salesforce (demo)".into(),
            scope: tripline::connection::ScopeMode::All,
            scope_lines: None,
            corporate_cidrs: corporate.clone(),
        };
        tripline::emulated::authorize(&*store, &app, &org, &new).await?;
    }
    let membership = tripline::connector::fleet::Membership::new(None, Some(console_url.clone()));
    let mut server = tripline::server::Server::start_as(store, &app, Default::default(), membership).await?;
    server.console.corporate_cidrs = corporate;
    server.console.suggested_my_domain = Some(org.base_url().to_owned());
    server.console.public_url = Some(console_url.clone());
    let (service, service_password) = org.service_account();
    println!("Tripline demo");
    println!("  console           : {console_url}");
    println!("  sign in as        : admin / {password}   (one-time password for this demo)");
    println!("  emulated org      : {}", org.base_url());
    println!("  its service user  : {service} / {service_password}   (sign in with it when you authorize)");
    if args.auto_connect {
        println!("  connection        : \"Salesforce (demo)\" added; downloads are arriving.");
    } else {
        println!("  next              : Administration > Data Connections > Add data connection");
    }
    println!("Press Ctrl-C to stop.");
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
}

async fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    use tripline::store::Store;

    let ca_pem = match &args.pubsub_ca {
        Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?),
        None => None,
    };
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let public = match &args.public_url {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => {
            let mut local = listener.local_addr()?;
            if local.ip().is_unspecified() {
                // Listening on every interface: no one browses to 0.0.0.0.
                eprintln!(
                    "note: set --public-url to the address people open the console at (used for the OAuth callback)"
                );
                local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{local}")
        }
    };
    let app = tripline::connector::SalesforceApp {
        client_id: args.salesforce_client_id,
        client_secret: args.salesforce_client_secret,
        redirect_uri: args.redirect_uri.unwrap_or_else(|| format!("{public}/oauth/salesforce/callback")),
        pubsub: salesforce::pubsub::Endpoint { url: args.pubsub_url, ca_pem },
        allowed_origins: args.allow_origins,
    };
    let store: Arc<dyn Store> = Arc::from(if args.init {
        args.database.create()?
    } else {
        args.database.open().context("start with --init to create one")?
    });
    let settings = tripline::connector::RunSettings {
        rescan_every: Duration::from_secs(args.rescan_minutes.max(1) * 60),
        check_every: Duration::from_secs(args.check_seconds.max(1)),
        reconcile_every: Duration::from_secs(args.reconcile_minutes.max(1) * 60),
        ..Default::default()
    };
    let no_accounts = store.accounts()?.is_empty();
    let membership = tripline::connector::fleet::Membership::new(args.node_name, Some(public.clone()));
    let mut server = tripline::server::Server::start_as(store, &app, settings, membership).await?;
    server.console.secure_cookies = public.starts_with("https://");
    server.console.corporate_cidrs = args.corporate_ip_ranges;
    server.console.public_url = Some(public.clone());
    println!("tripline serve: console on {public}/ ; JSON API on {public}/api/v1 (OpenAPI: /api/v1/openapi.json)");
    if no_accounts {
        let token = salesforce::oauth::random_token(24);
        println!("No console account exists yet. Create the first administrator (this link works once):");
        println!("  {public}/setup?token={token}");
        server.console.setup_token = Some(token);
    }
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
}

fn run_admin(args: AdminArgs) -> anyhow::Result<()> {
    let store = args.database.open()?;
    match args.action {
        AdminAction::CreateUser { username, role } => {
            let username = tripline::access::check_username(&username).map_err(anyhow::Error::msg)?;
            let role: tripline::access::Role = role.parse()?;
            let password = tripline::access::generate_password();
            let hash = tripline::access::hash_password(&password).map_err(anyhow::Error::msg)?;
            store.create_account(username, role, &hash, &cli_actor())?;
            println!("{password}");
            eprintln!("Account {username:?} ({}) created. Its password is shown only now.", role.label());
        }
        AdminAction::ListUsers => {
            println!("{:<32} {:<8} CREATED", "USERNAME", "ROLE");
            for a in store.accounts()? {
                println!(
                    "{:<32} {:<8} {}",
                    clean(&a.username),
                    a.role.as_str(),
                    tripline::search::output::time_text(a.created_at)
                );
            }
        }
    }
    Ok(())
}

fn run_connections(args: ConnectionsArgs) -> anyhow::Result<()> {
    use tripline::search::output::time_text;

    let store = args.database.open()?;
    let actor = cli_actor();
    if let Some(ConnectionsAction::Add(add)) = args.action {
        let runtime = tokio::runtime::Runtime::new()?;
        return runtime.block_on(run_connections_add(&*store, add, args.allow_origins));
    }
    if let Some(id) = &args.pause {
        tripline::connector::lifecycle::pause(&*store, id, &actor)?;
    }
    if let Some(id) = &args.resume {
        tripline::connector::lifecycle::resume(&*store, id, &actor)?;
    }
    if let Some(id) = &args.deauthorize {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(tripline::connector::lifecycle::deauthorize(&*store, id, &args.allow_origins, &actor))?;
    }
    let connections = store.connections()?;
    if connections.is_empty() {
        println!("No data connections.");
    }
    // Salesforce-side text (names, messages) is printed without control characters.
    for c in connections {
        let since = c.status_detail.as_ref().map(|d| format!(" since {}", time_text(d.since))).unwrap_or_default();
        println!(
            "{}  [{}]{}  ({}; org {}; {} monitored users)",
            clean(&c.display_name),
            c.status.as_str().to_uppercase(),
            since,
            c.login_url,
            c.org_id,
            store.scope(&c.id)?.len()
        );
        for p in c.status_detail.iter().flat_map(|d| &d.problems) {
            println!("  {} ({}): {}", p.severity.as_str(), p.source, clean(&p.message));
        }
        for gap in store.gaps(&c.id)? {
            println!("  gap on {}: {}", gap.topic, clean(&gap.reason));
        }
        let (kept_aside, _) = store.quarantine(&c.id, 0)?;
        if kept_aside > 0 {
            println!("  {kept_aside} event(s) kept aside because they could not be read");
        }
        if args.history {
            for h in store.status_history(&c.id)? {
                println!("    {}  {:<12} by {}", time_text(h.at), h.status, h.actor);
            }
        }
    }
    Ok(())
}

async fn run_connections_add(
    store: &dyn tripline::store::Store,
    args: AddArgs,
    allowed_origins: Vec<String>,
) -> anyhow::Result<()> {
    use tripline::connector::scope_csv::{CsvKind, ScopeCsv};

    let new = match args.scope.as_slice() {
        [mode] if mode == "all" => tripline::connector::NewConnection {
            display_name: args.name.clone(),
            scope: tripline::connection::ScopeMode::All,
            scope_lines: None,
            corporate_cidrs: args.corporate_ip_ranges.clone(),
        },
        [mode, file] if mode == "users" || mode == "groups" => {
            let kind = if mode == "users" { CsvKind::Users } else { CsvKind::Groups };
            let bytes = std::fs::read(file).with_context(|| format!("reading {file}"))?;
            let csv = ScopeCsv::parse(&bytes, kind)
                .map_err(|e| anyhow::anyhow!("the scope file cannot be used:\n  {}", e.messages(file).join("\n  ")))?;
            tripline::connector::NewConnection::from_csv(&args.name, &csv, args.corporate_ip_ranges.clone())
        }
        _ => anyhow::bail!("--scope is `all`, `users FILE` or `groups FILE`"),
    };
    let login = match &args.my_domain {
        Some(url) => salesforce::login::LoginHost::parse(url, &allowed_origins)?,
        None => salesforce::login::LoginHost::production(),
    };
    let app = tripline::connector::SalesforceApp {
        client_id: args.salesforce_client_id,
        client_secret: args.salesforce_client_secret,
        redirect_uri: args.redirect_uri.to_string(),
        pubsub: salesforce::pubsub::Endpoint { url: salesforce::pubsub::SALESFORCE_ENDPOINT.into(), ca_pem: None },
        allowed_origins,
    };
    let host = args.redirect_uri.host_str().context("the callback URL has no host")?.to_owned();
    let port = args.redirect_uri.port_or_known_default().context("the callback URL has no port")?;
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await.with_context(|| {
        format!(
            "listening for Salesforce's answer on {host}:{port}: is `tripline serve` running there? Add the connection in its console instead, or stop it first"
        )
    })?;
    let start = app.oauth(login.clone(), reqwest::Client::new()).start(salesforce::oauth::MONITORING_SCOPE);
    println!("Open this address in a browser, sign in as the Salesforce service account and click Allow:");
    println!("  {}", start.url);
    println!("Waiting for Salesforce's answer on {}", args.redirect_uri);
    // The first answer at the callback path ends the wait.
    let (tx, rx) = tokio::sync::oneshot::channel::<std::collections::HashMap<String, String>>();
    let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
    let path = args.redirect_uri.path().to_owned();
    let router = axum::Router::new().route(
        &path,
        axum::routing::get(
            move |axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>| {
                let tx = tx.clone();
                async move {
                    if let Some(tx) = tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
                        let _ = tx.send(q);
                    }
                    "Tripline received Salesforce's answer. Return to the terminal; you may close this window."
                }
            },
        ),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let answer = rx.await.context("the callback listener stopped")?;
    let _ = stop.send(());
    let _ = server.await;
    if let Some(error) = answer.get("error") {
        let why = answer.get("error_description").map(String::as_str).unwrap_or(error);
        anyhow::bail!("Salesforce did not authorize the connection ({why}); nothing was added");
    }
    let code = answer.get("code").context("Salesforce's answer carried no code; nothing was added")?;
    let state = answer.get("state").cloned().unwrap_or_default();
    let record = tripline::connector::finish_authorization(store, &app, &login, &new, &start, &state, code).await?;
    store.audit(&cli_actor(), "connection.add", &record.id)?;
    println!(
        "Connection {:?} added (id {}, org {}). `tripline serve` monitors it from its next start.",
        clean(&record.display_name),
        record.id,
        record.org_id.as_str()
    );
    Ok(())
}

fn run_api_token(args: ApiTokenArgs) -> anyhow::Result<()> {
    use tripline::search::output::time_text;

    let store = args.database.open()?;
    let actor = cli_actor();
    match args.action {
        TokenAction::Create { name, expires_in } => {
            let name = tripline::access::check_token_name(&name).map_err(anyhow::Error::msg)?;
            let expires_at = expires_in
                .map(|d| tripline::search::parse_duration(&d).map(|ms| chrono::Utc::now().timestamp_millis() + ms))
                .transpose()?;
            let (token, hash) = tripline::api::new_token();
            store.add_api_token(name, &hash, expires_at, &actor)?;
            println!("{token}");
            eprintln!("API token {name:?} created. It is shown only now: keep it secret.");
        }
        TokenAction::List => {
            let now = chrono::Utc::now().timestamp_millis();
            let when = |ms: Option<i64>| ms.map_or_else(|| "-".to_owned(), time_text);
            println!("{:<24} {:<8} {:<25} {:<25} {:<25}", "NAME", "STATE", "CREATED", "LAST USED", "EXPIRES");
            for t in store.api_tokens()? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.is_valid(now) {
                    "valid"
                } else {
                    "expired"
                };
                println!(
                    "{:<24} {:<8} {:<25} {:<25} {:<25}",
                    clean(&t.name),
                    state,
                    time_text(t.created_at),
                    when(t.last_used_at),
                    when(t.expires_at)
                );
            }
        }
        TokenAction::Revoke { name } => {
            store.revoke_api_token(&name, &actor)?;
            eprintln!("API token {name:?} revoked.");
        }
    }
    Ok(())
}

/// Who acts from this terminal, for the audit log.
fn run_alerts(args: AlertsArgs) -> anyhow::Result<()> {
    use std::io::Write;
    use tripline::alerts::output::{AlertWriter, alert_json};
    use tripline::alerts::{AlertFilter, AlertUpdate};

    let store = args.database.open()?;
    match args.action {
        AlertsAction::List { state, severity, rule, user, limit, format, checkpoint } => {
            let mut filter = AlertFilter {
                states: state.iter().map(|s| s.parse()).collect::<Result<_, _>>()?,
                min_severity: severity.map(|s| s.parse()).transpose()?,
                rule_id: rule,
                user,
                limit: limit.max(1),
                ..AlertFilter::default()
            };
            // A checkpoint's name lives beside search checkpoints, apart from them.
            let key = checkpoint.as_ref().map(|name| format!("alerts/{name}"));
            if let Some(key) = &key {
                filter.after_seq = Some(store.search_checkpoint(key)?);
                filter.limit = 1_000;
            }
            let mut out = AlertWriter::new(std::io::stdout().lock(), format);
            out.header()?;
            let mut last = filter.after_seq.unwrap_or(0);
            loop {
                let (alerts, _) = store.alerts(&filter)?;
                out.rows(&alerts)?;
                last = alerts.iter().map(|a| a.seq).fold(last, i64::max);
                if key.is_none() || alerts.len() < filter.limit {
                    break;
                }
                filter.after_seq = Some(last);
            }
            out.finish()?;
            if let Some(key) = &key {
                store.set_search_checkpoint(key, last)?;
            }
        }
        AlertsAction::Show { id } => {
            let (alert, notes) = store.alert(&id)?.with_context(|| format!("no alert {id}"))?;
            let events = store.alert_events(&id, 10_000)?;
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &alert_json(&alert, Some(&notes), Some(&events)))?;
            writeln!(out)?;
        }
        AlertsAction::Update { id, state, assignee, note } => {
            if let Some(name) = assignee.as_deref().filter(|a| !a.is_empty())
                && !store.accounts()?.iter().any(|a| a.username == name)
            {
                anyhow::bail!("no console account {name:?}");
            }
            let update = AlertUpdate { state: state.map(|s| s.parse()).transpose()?, assignee, note };
            let alert = store.update_alert(&id, &update, &cli_actor())?;
            eprintln!(
                "Alert {} is {} ({}).",
                alert.id,
                alert.state.label(),
                alert.assignee.as_deref().unwrap_or("unassigned")
            );
        }
    }
    Ok(())
}

fn cli_actor() -> String {
    format!("cli ({})", std::env::var("USER").unwrap_or_else(|_| "unknown user".into()))
}

/// Text for a terminal: control and format characters replaced.
fn clean(text: &str) -> String {
    tripline::search::output::terminal_safe(text, usize::MAX)
}
