//! A blocking face on tokio-postgres, so that `PostgresStore` keeps the synchronous
//! `Store` trait: the connections run on the store's own small runtime, and each call
//! waits for its answer on the calling thread (as a call into SQLite does).
//!
//! Waiting uses `futures_executor::block_on`, never a Tokio runtime's `block_on`: a
//! client's requests and answers pass through channels to the connection task, so
//! they can be awaited from any thread, a Tokio worker included.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Row, Statement};

use crate::store::rows::Cells;
use crate::store::sql::Param;
use crate::store::{Result, StoreError};

pub(super) type Arg<'a> = &'a (dyn ToSql + Sync);

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

/// A uniqueness rule broken by the statement: the name of the thing taken.
pub(super) fn unique(e: tokio_postgres::Error, what: &str) -> StoreError {
    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
        StoreError::Conflict(format!("{what} already exists"))
    } else {
        e.into()
    }
}

impl Cells for Row {
    type Error = StoreError;
    fn int(&self, i: usize) -> Result<i64> {
        Ok(self.try_get(i)?)
    }
    fn int_opt(&self, i: usize) -> Result<Option<i64>> {
        Ok(self.try_get(i)?)
    }
    fn text(&self, i: usize) -> Result<String> {
        Ok(self.try_get(i)?)
    }
    fn text_opt(&self, i: usize) -> Result<Option<String>> {
        Ok(self.try_get(i)?)
    }
    fn flag(&self, i: usize) -> Result<bool> {
        Ok(self.try_get(i)?)
    }
    fn corrupt(i: usize, cause: Box<dyn std::error::Error + Send + Sync>) -> StoreError {
        StoreError::Corrupt(format!("column {i}: {cause}"))
    }
}

/// Built parameters as driver arguments.
pub(super) fn boxed(params: &[Param]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    params
        .iter()
        .map(|p| -> Box<dyn ToSql + Sync + Send> {
            match p {
                Param::Int(v) => Box::new(*v),
                Param::Real(v) => Box::new(*v),
                Param::Text(v) => Box::new(v.clone()),
            }
        })
        .collect()
}

pub(super) fn args(boxed: &[Box<dyn ToSql + Sync + Send>]) -> Vec<Arg<'_>> {
    boxed.iter().map(|b| &**b as Arg<'_>).collect()
}

/// One connection and the statements prepared on it.
struct Slot {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// A few connections to one database.
pub(super) struct Pool {
    url: String,
    /// TLS as the URL's `sslmode` asks (`prefer` by default: TLS when the server
    /// offers it, its certificate checked against the public roots and a private CA).
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    slots: Vec<Mutex<Option<Slot>>>,
    turn: std::sync::atomic::AtomicUsize,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Statements run on a connection or in a transaction, prepared once per connection.
pub(super) struct Db<'a, C> {
    c: &'a C,
    statements: &'a mut HashMap<String, Statement>,
}

impl<C: GenericClient + Sync> Db<'_, C> {
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = futures_executor::block_on(self.c.prepare(sql))?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub(super) fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        let s = self.statement(sql)?;
        Ok(futures_executor::block_on(self.c.execute(&s, args))?)
    }

    /// `exec` whose failure the caller classifies (a uniqueness rule, say).
    pub(super) fn try_exec(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<std::result::Result<u64, tokio_postgres::Error>> {
        let s = self.statement(sql)?;
        Ok(futures_executor::block_on(self.c.execute(&s, args)))
    }

    /// `one` whose failure the caller classifies.
    pub(super) fn try_one(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<std::result::Result<Row, tokio_postgres::Error>> {
        let s = self.statement(sql)?;
        Ok(futures_executor::block_on(self.c.query_one(&s, args)))
    }

    pub(super) fn rows(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        let s = self.statement(sql)?;
        Ok(futures_executor::block_on(self.c.query(&s, args))?)
    }

    pub(super) fn opt(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Row>> {
        let s = self.statement(sql)?;
        Ok(futures_executor::block_on(self.c.query_opt(&s, args))?)
    }

    pub(super) fn one(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Row> {
        let s = self.statement(sql)?;
        Ok(futures_executor::block_on(self.c.query_one(&s, args))?)
    }

    /// Rows of a statement built for this query only (not kept prepared).
    pub(super) fn rows_once(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        Ok(futures_executor::block_on(self.c.query(sql, args))?)
    }

    /// Statements without parameters, such as a migration.
    pub(super) fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(futures_executor::block_on(self.c.batch_execute(sql))?)
    }
}

/// Connections per store: ingest, the alert evaluator, the aggregator and a few
/// console requests at once.
const CONNECTIONS: usize = 6;

impl Pool {
    pub(super) fn new(url: &str, ca_pem: Option<&str>) -> Result<Pool> {
        let tls = crate::tls::client_config(ca_pem).map_err(|e| StoreError::Database(e.into()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tripline-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        let pool = Pool {
            url: url.to_owned(),
            tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls),
            slots: (0..CONNECTIONS).map(|_| Mutex::new(None)).collect(),
            turn: Default::default(),
            runtime: Some(runtime),
        };
        // The first connection now: a wrong address or password is an error at start.
        drop(pool.slot()?);
        Ok(pool)
    }

    fn connect(&self) -> Result<Slot> {
        let runtime = self.runtime.as_ref().ok_or_else(|| StoreError::Database("the store is closed".into()))?;
        let (url, tls) = (self.url.clone(), self.tls.clone());
        let task = runtime.spawn(async move {
            let (client, connection) = tokio_postgres::connect(&url, tls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!("PostgreSQL connection ended: {e}");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        });
        let client = futures_executor::block_on(task).map_err(|e| StoreError::Database(Box::new(e)))??;
        // A node stopped (SIGSTOP, a VM paused) inside a transaction must not hold
        // its locks for ever: the server ends such a session.
        // A delivery's rows are sorted into their order in memory, not in temporary
        // files (the default 4 MB spilled at catch-up sizes; measured).
        futures_executor::block_on(
            client.batch_execute("SET idle_in_transaction_session_timeout = '20s'; SET work_mem = '64MB'"),
        )?;
        Ok(Slot { client, statements: HashMap::new() })
    }

    /// A free connection (or, when all are busy, the next in turn), connected again
    /// if the server closed it.
    fn slot(&self) -> Result<MutexGuard<'_, Option<Slot>>> {
        let mut guard = None;
        for slot in &self.slots {
            if let Ok(free) = slot.try_lock() {
                guard = Some(free);
                break;
            }
        }
        let mut guard = match guard {
            Some(g) => g,
            None => {
                let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.slots.len();
                self.slots[turn].lock().unwrap_or_else(|e| e.into_inner())
            }
        };
        if guard.as_ref().is_none_or(|s| s.client.is_closed()) {
            *guard = Some(self.connect()?);
        }
        Ok(guard)
    }

    /// Runs `f` on a connection, outside any transaction.
    pub(super) fn read<T>(&self, f: impl FnOnce(&mut Db<'_, Client>) -> Result<T>) -> Result<T> {
        let mut guard = self.slot()?;
        let slot = guard.as_mut().expect("connected");
        f(&mut Db { c: &slot.client, statements: &mut slot.statements })
    }

    /// Runs `f` in a transaction, committed when `f` succeeds and rolled back when it fails.
    pub(super) fn write<T>(
        &self,
        f: impl FnOnce(&mut Db<'_, tokio_postgres::Transaction<'_>>) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self.slot()?;
        let Slot { client, statements } = guard.as_mut().expect("connected");
        let tx = futures_executor::block_on(client.transaction())?;
        let value = f(&mut Db { c: &tx, statements })?;
        futures_executor::block_on(tx.commit())?;
        Ok(value)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for slot in &self.slots {
            slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        // Dropping a runtime blocks, which a Tokio worker may not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
