//! A scenario: an emulated org, a Tripline store, and an authorized connection.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tripline::connection::ScopeMode;
use tripline::connection::{ConnectionRecord, ConnectionStatus};
use tripline::connector::{NewConnection, RunSettings, SalesforceApp};
use tripline::events::FileEvent;
use tripline::search::{Field, Filter, Op, SearchQuery, Sort};
use tripline::server::Server;
use tripline::store::Store;
use tripline::store::sqlite::SqliteStore;

pub const CALLBACK: &str = "http://127.0.0.1:9/oauth/salesforce/callback";

pub struct Scenario {
    pub org: sfsim::Running,
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub app: SalesforceApp,
    pub dir: tempfile::TempDir,
    /// What `tripline serve` is given as `--database`.
    pub database: String,
    /// The private PostgreSQL server the store lives on, if it does (stopped last).
    pub postgres: Option<tripline::store::postgres::private::PrivateServer>,
}

/// The key PostgreSQL scenarios seal tokens with, in process and in `serve`.
const POSTGRES_KEY: [u8; 32] = [7; 32];

/// `TEST_LOG=debug` (or any tracing filter, such as `tripline=debug,sfsim=info`)
/// prints the logs of the test being run, with their connection and topic spans.
pub fn logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

impl Scenario {
    /// The org and an SQLite store.
    pub async fn new(users: usize) -> Scenario {
        Scenario::start(users, false).await
    }

    /// The org and a PostgreSQL store, on a private server.
    pub async fn on_postgres(users: usize) -> Scenario {
        Scenario::start(users, true).await
    }

    async fn start(users: usize, postgres: bool) -> Scenario {
        logs();
        let config = sfsim::Config { users, seed: 5, callback_urls: vec![CALLBACK.into()], ..sfsim::Config::default() };
        let org = sfsim::start(config).await.expect("sfsim");
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, database, postgres): (Arc<dyn Store>, String, _) = if postgres {
            let server =
                tripline::store::postgres::private::PrivateServer::start(false).expect("a private PostgreSQL server");
            let url = server.database().expect("a database");
            let key = tripline::store::secrets::SecretBox::from_key(&POSTGRES_KEY).expect("key");
            let store = tripline::store::postgres::PostgresStore::connect(&url, key).expect("store");
            (Arc::new(store), url, Some(server))
        } else {
            let path = dir.path().join("tripline.db");
            let store = SqliteStore::create(&path).expect("store");
            (Arc::new(store), path.display().to_string(), None)
        };
        let app = tripline::emulated::app(&org, CALLBACK);
        Scenario { org, http: reqwest::Client::new(), store, app, dir, database, postgres }
    }

    /// `tripline serve` as its own process on this scenario's database (for SIGKILLs).
    /// `SERVE_LOG` sets its log filter (default `error`), `SERVE_LOG_FILE` a file its
    /// logs are appended to (else they are dropped).
    pub fn serve_process(&self) -> std::process::Child {
        self.serve_node(None)
    }

    /// `tripline serve` as a named node of this scenario's database.
    pub fn serve_node(&self, name: Option<&str>) -> std::process::Child {
        let output = match std::env::var_os("SERVE_LOG_FILE") {
            Some(path) => std::process::Stdio::from(
                std::fs::OpenOptions::new().create(true).append(true).open(path).expect("the serve log file"),
            ),
            None => std::process::Stdio::null(),
        };
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tripline"));
        if self.postgres.is_some() {
            let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, POSTGRES_KEY);
            command.env("TRIPLINE_SECRET_KEY", key);
        }
        command.args(["serve", "--database", &self.database]);
        if let Some(name) = name {
            command.args(["--node-name", name]);
        }
        command
            .args([
                "--salesforce-client-id",
                &self.app.client_id,
                "--salesforce-client-secret",
                &self.app.client_secret,
            ])
            .args([
                "--pubsub-url",
                &self.app.pubsub.url,
                "--allow-origin",
                self.org.base_url(),
                "--listen",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", std::env::var("SERVE_LOG").unwrap_or_else(|_| "error".into()))
            .stdout(output)
            .spawn()
            .expect("tripline serve starts")
    }

    /// A POST to the org's control API.
    pub async fn control(&self, path: &str, body: Value) -> Value {
        self.org.control().post(path, &body).await.expect("control")
    }

    /// A GET of the org's control API.
    pub async fn control_get(&self, path: &str) -> Value {
        self.org.control().get(path).await.expect("control")
    }

    /// The id of the permission set with this label (a profile's own set has the
    /// profile's name).
    pub async fn permission_set(&self, label: &str) -> String {
        let sets = self.control_get("/permission-sets").await;
        let found = sets.as_array().and_then(|list| list.iter().find(|p| p["Label"] == label).cloned());
        found.and_then(|p| p["Id"].as_str().map(str::to_owned)).unwrap_or_else(|| panic!("no permission set {label:?}"))
    }

    pub async fn users(&self) -> Vec<Value> {
        self.control_get("/users").await.as_array().cloned().unwrap_or_default()
    }

    /// The service account authorizes a connection through sfsim's sign-in pages.
    pub async fn connect(&self, name: &str, scope: ScopeMode) -> ConnectionRecord {
        let new = NewConnection {
            display_name: name.into(),
            scope,
            scope_lines: None,
            corporate_cidrs: vec!["10.20.0.0/16".into(), "198.51.100.0/24".into()],
        };
        self.try_connect(&new).await.expect("authorized")
    }

    pub async fn try_connect(&self, new: &NewConnection) -> Result<ConnectionRecord, tripline::connector::Error> {
        tripline::emulated::authorize(&*self.store, &self.app, &self.org, new).await
    }

    pub async fn run(&self, record: &ConnectionRecord) -> tripline::connector::RunningConnection {
        self.run_with(
            record,
            RunSettings {
                check_every: Duration::from_millis(100),
                preflight_every: Duration::from_millis(200),
                ..RunSettings::default()
            },
        )
        .await
    }

    pub async fn run_with(
        &self,
        record: &ConnectionRecord,
        mut settings: RunSettings,
    ) -> tripline::connector::RunningConnection {
        settings.stream.min_backoff = Duration::from_millis(20);
        settings.stream.max_backoff = Duration::from_millis(300);
        let running =
            tripline::connector::start(self.store.clone(), record, &self.app, settings).await.expect("connector");
        streaming(&running.context).await;
        running
    }

    /// The whole server (every stored connection running, the JSON API) on a free
    /// loopback port, as `tripline serve` assembles it.
    pub async fn serve(&self) -> Served {
        self.serve_console(tripline::console::ConsoleSettings::default()).await
    }

    /// The whole server with these console settings.
    pub async fn serve_console(&self, console: tripline::console::ConsoleSettings) -> Served {
        let mut settings = RunSettings {
            check_every: Duration::from_millis(100),
            preflight_every: Duration::from_millis(200),
            ..RunSettings::default()
        };
        settings.stream.min_backoff = Duration::from_millis(20);
        settings.stream.max_backoff = Duration::from_millis(300);
        let mut server = Server::start(self.store.clone(), &self.app, settings).await.expect("server");
        server.console = console;
        for context in server.fleet.contexts().await {
            streaming(&context).await;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Served { base, stop, task }
    }

    /// Every stored file event, oldest first (page after page: a soak stores more than
    /// one page holds).
    pub fn events(&self) -> Vec<FileEvent> {
        let mut query = SearchQuery {
            from_ms: 0,
            to_ms: i64::MAX,
            filter: Filter::All(vec![]),
            sort: Sort { field: Field::ObservedAt, descending: false },
            page_size: 10_000,
            after: None,
            after_seq: None,
        };
        let mut events = Vec::new();
        loop {
            let page = self.store.search(&query).expect("search");
            events.extend(page.events);
            match page.next {
                Some(next) => query.after = Some(next),
                None => return events,
            }
        }
    }

    /// The stored exports as execution id → chunk count (what crash and soak tests
    /// compare with what was published).
    pub fn stored_exports(&self) -> std::collections::BTreeMap<String, u64> {
        self.events().into_iter().map(|e| (e.execution_id.unwrap_or_default(), e.chunk_count as u64)).collect()
    }

    pub fn events_of(&self, user_id: &str) -> Vec<FileEvent> {
        self.events().into_iter().filter(|e| e.user_id.as_str() == user_id).collect()
    }

    /// Waits until `check` holds on the stored events.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&[FileEvent]) -> bool) -> Vec<FileEvent> {
        for _ in 0..300 {
            let events = self.events();
            if check(&events) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        panic!("timed out waiting for {what}: {:#?}", self.events());
    }

    /// Waits until the connection's status and problem sources are as given.
    pub async fn wait_status(&self, connection: &str, status: ConnectionStatus, sources: &[&str]) -> ConnectionRecord {
        for _ in 0..300 {
            let record = self.store.connection(connection).expect("connection");
            let found: Vec<&str> =
                record.status_detail.iter().flat_map(|d| &d.problems).map(|p| p.source.as_str()).collect();
            if record.status == status && sources.iter().all(|s| found.contains(s)) {
                return record;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{connection} never reached {status} {sources:?}: {:#?}", self.store.connection(connection).ok());
    }

    pub fn filter_user(user_id: &str) -> Filter {
        Filter::Term { field: Field::UserId, op: Op::Is(user_id.into()) }
    }

    pub async fn export(&self, user: &str, body: Value) -> Value {
        self.control(&format!("/users/{user}/export"), body).await
    }

    /// Users who hold Export Reports, can sign in, and are not the service account.
    pub async fn exporters(&self) -> Vec<Value> {
        let service = self.org.sim.org().service_user.to_string();
        self.users()
            .await
            .into_iter()
            .filter(|u| {
                u["can_export_reports"] == true
                    && u["active"] == true
                    && u["frozen"] == false
                    && u["id"] != service.as_str()
            })
            .collect()
    }
}

/// A small deterministic generator, seeded per run (tests print the seed, to replay a
/// failure).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Exports published before a subscriber streams are read back from EARLIEST, but
/// tests that count on timing wait until all three topics stream.
async fn streaming(context: &tripline::connector::ConnectionContext) {
    for _ in 0..200 {
        if context.stream_health().len() == 3 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A running server; stops (connectors included) when asked.
pub struct Served {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("server task").expect("served");
    }
}

pub fn id(user: &Value) -> String {
    user["id"].as_str().expect("id").to_owned()
}

pub fn no_body() -> Value {
    json!({})
}
