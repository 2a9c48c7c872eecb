//! A throwaway PostgreSQL server for tests, demos and benchmarks: `initdb` and
//! `pg_ctl` from the machine's PostgreSQL server package, in a temporary directory,
//! listening on a free loopback port, stopped and removed when dropped. As root, the
//! server runs as the unprivileged `postgres` user (PostgreSQL refuses root).
//!
//! `TRIPLINE_TEST_POSTGRES` (a `postgres://` URL of a server where databases may be
//! created) is used instead when set.

use std::path::{Path, PathBuf};
use std::process::Command;

use tokio_postgres::NoTls;

use crate::store::{Result, StoreError};

pub struct PrivateServer {
    /// Where databases are created: `postgres://user@host:port`.
    base: String,
    /// The server we started (none when `TRIPLINE_TEST_POSTGRES` named one).
    process: Option<Started>,
}

struct Started {
    bin: PathBuf,
    data: PathBuf,
    owner: Option<String>,
    _dir: tempfile::TempDir,
}

fn failed(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("{what}: {detail}").into())
}

/// The directory of `initdb`, `pg_ctl` and `postgres` (the newest version installed).
fn server_binaries() -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        failed(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin",
            "install the server package (apt-get install postgresql-15) or set TRIPLINE_TEST_POSTGRES",
        )
    })
}

/// Runs a server program, as `owner` when given.
fn run(bin: &Path, program: &str, owner: Option<&str>, args: &[&str]) -> Result<()> {
    let mut command = match owner {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(bin.join(program));
            c
        }
        None => Command::new(bin.join(program)),
    };
    let output = command.args(args).output().map_err(|e| failed(program, e))?;
    if !output.status.success() {
        return Err(failed(program, String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| failed("a free port", e))?;
    Ok(listener.local_addr().map_err(|e| failed("a free port", e))?.port())
}

impl PrivateServer {
    /// Starts a server. `durable` keeps PostgreSQL's crash safety (fsync, full page
    /// writes) as a real installation has it, for benchmarks; tests go without.
    pub fn start(durable: bool) -> Result<PrivateServer> {
        PrivateServer::start_with(durable, None)
    }

    /// A server that also offers TLS with this certificate and key (PEM).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Result<PrivateServer> {
        PrivateServer::start_with(false, Some((cert_pem, key_pem)))
    }

    fn start_with(durable: bool, tls: Option<(&str, &str)>) -> Result<PrivateServer> {
        if let Ok(url) = std::env::var("TRIPLINE_TEST_POSTGRES") {
            return Ok(PrivateServer { base: url.trim_end_matches('/').to_owned(), process: None });
        }
        let bin = server_binaries()?;
        let dir = tempfile::Builder::new().prefix("tripline-pg").tempdir().map_err(|e| failed("a directory", e))?;
        let root =
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").map_err(|e| failed("uid", e))?) == 0;
        let owner = root.then(|| "postgres".to_owned());
        let uid = if root { Some(passwd_uid("postgres")?) } else { None };
        if let Some(uid) = uid {
            std::os::unix::fs::chown(dir.path(), Some(uid), None).map_err(|e| failed("chown", e))?;
        }
        let data = dir.path().join("data");
        let data_arg = data.to_str().ok_or_else(|| failed("path", "not UTF-8"))?;
        run(
            &bin,
            "initdb",
            owner.as_deref(),
            &[
                "-D",
                data_arg,
                "-A",
                "trust",
                "-U",
                "tripline",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
        )?;
        let port = free_port()?;
        let mut options =
            format!("-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=200", dir.path().display());
        if !durable {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        if let Some((cert, key)) = tls {
            // The server reads them as its own user, the key readable by it alone.
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = dir.path().join(name);
                std::fs::write(&path, pem).map_err(|e| failed(name, e))?;
                std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .map_err(|e| failed(name, e))?;
                if let Some(uid) = uid {
                    std::os::unix::fs::chown(&path, Some(uid), None).map_err(|e| failed("chown", e))?;
                }
            }
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                dir.path().display()
            ));
        }
        let log = dir.path().join("server.log");
        run(
            &bin,
            "pg_ctl",
            owner.as_deref(),
            &["-D", data_arg, "-o", &options, "-l", log.to_str().unwrap_or_default(), "-w", "-t", "60", "start"],
        )?;
        Ok(PrivateServer {
            base: format!("postgres://tripline@127.0.0.1:{port}"),
            process: Some(Started { bin, data, owner, _dir: dir }),
        })
    }

    /// Creates a new empty database and answers its URL.
    pub fn database(&self) -> Result<String> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            chrono::Utc::now().timestamp_micros(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let admin = format!("{}/postgres", self.base);
        let create = format!("CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'");
        // Its own thread and runtime: callers may be inside a Tokio runtime.
        std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| failed("a runtime", e))?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin, NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&create).await?;
                Ok(())
            })
        })
        .join()
        .map_err(|_| failed("creating a database", "the thread panicked"))??;
        Ok(format!("{}/{name}", self.base))
    }
}

/// The uid of a user named in /etc/passwd.
fn passwd_uid(user: &str) -> Result<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| failed("/etc/passwd", e))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user))
        .and_then(|f| f.get(2)?.parse().ok())
        .ok_or_else(|| failed("no user named postgres", "install the PostgreSQL server package"))
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(s) = &self.process
            && let Some(data) = s.data.to_str()
        {
            let _ = run(&s.bin, "pg_ctl", s.owner.as_deref(), &["-D", data, "-m", "immediate", "-w", "stop"]);
        }
    }
}
