//! `tripline migrate`: an embedded installation's SQLite database copied into a
//! PostgreSQL one, table by table in key order. Each batch commits with the position
//! it reached (`import_progress`), so an interrupted copy resumes where it stopped.
//! Tokens are opened with the source's key and sealed again with the target's. At the
//! end every table is verified: the same number of rows and the same checksum (an
//! order-free sum of row digests over the source's columns, tokens compared opened).

use std::path::Path;

use rusqlite::types::Value;
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;

use super::PostgresStore;
use super::db::Arg;
use crate::store::secrets::SecretBox;
use crate::store::{Result, StoreError};

/// Node state, not data: each installation's nodes claim their own. (SQLite's own
/// tables, `sqlite_*`, are not copied either.)
const NOT_COPIED: &[&str] = &["leases", "nodes"];
/// Copied first: other tables refer to them.
const FIRST: &[&str] = &["connections", "accounts"];
/// Sealed with the installation's key: opened and sealed again.
const SEALED: &[(&str, &str)] =
    &[("connections", "refresh_token"), ("connections", "access_token"), ("channels", "target")];

/// How far the copy is, reported after every batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub table: String,
    pub copied: u64,
    pub total: u64,
}

/// What was copied and checked, by table: (table, rows).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub tables: Vec<(String, u64)>,
    /// The copy continued an earlier, interrupted one.
    pub resumed: bool,
}

/// How the rows of a table are walked in order: by rowid, or by the primary key of a
/// table without one.
struct Table {
    name: String,
    columns: Vec<String>,
    /// PostgreSQL's type of each column (`bigint`, `integer`, `boolean`, `text`,
    /// `bytea`, `ARRAY`).
    types: Vec<String>,
    key: Vec<String>,
    rowid: bool,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn source_tables(db: &rusqlite::Connection) -> Result<Vec<(String, bool)>> {
    let mut stmt = db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let mut tables: Vec<(String, bool)> = stmt
        .query_map([], |r| {
            let (name, sql): (String, String) = (r.get(0)?, r.get(1)?);
            Ok((name, !sql.contains("WITHOUT ROWID")))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .filter(|(n, _)| !NOT_COPIED.contains(&n.as_str()) && !n.starts_with("sqlite_"))
        .collect();
    tables.sort_by_key(|(n, _)| (FIRST.iter().position(|f| f == n).unwrap_or(FIRST.len()), n.clone()));
    Ok(tables)
}

/// A source value as the target column takes it.
fn to_target(value: Value, ty: &str, table: &str, column: &str) -> Result<Box<dyn ToSql + Sync + Send>> {
    let wrong = |v: &Value| corrupt(format!("{table}.{column}: {v:?} cannot go into a {ty} column"));
    Ok(match (value, ty) {
        (Value::Null, "bigint") => Box::new(None::<i64>),
        (Value::Null, "integer") => Box::new(None::<i32>),
        (Value::Null, "boolean") => Box::new(None::<bool>),
        (Value::Null, "bytea") => Box::new(None::<Vec<u8>>),
        (Value::Null, "ARRAY") => Box::new(None::<Vec<i64>>),
        (Value::Null, _) => Box::new(None::<String>),
        (Value::Integer(v), "bigint") => Box::new(v),
        (Value::Integer(v), "integer") => Box::new(i32::try_from(v).map_err(|_| wrong(&Value::Integer(v)))?),
        (Value::Integer(v), "boolean") => Box::new(v != 0),
        (Value::Text(t), "text") => Box::new(t),
        (Value::Text(t), "ARRAY") => {
            Box::new(serde_json::from_str::<Vec<i64>>(&t).map_err(|_| wrong(&Value::Text(t)))?)
        }
        (Value::Blob(b), "bytea") => Box::new(b),
        (other, _) => return Err(wrong(&other)),
    })
}

/// The digest of one row: its columns' canonical text, in order.
fn digest(values: &[String]) -> u64 {
    let mut hash = Sha256::new();
    for v in values {
        hash.update(v.as_bytes());
        hash.update([0]);
    }
    let out = hash.finalize();
    u64::from_le_bytes(out[..8].try_into().unwrap_or_default())
}

fn canonical_source(v: &Value, ty: &str) -> String {
    match (v, ty) {
        (Value::Null, _) => "\u{2205}".into(),
        (Value::Integer(i), "boolean") => u8::from(*i != 0).to_string(),
        (Value::Integer(i), _) => i.to_string(),
        (Value::Real(f), _) => f.to_string(),
        (Value::Text(t), "ARRAY") => {
            serde_json::from_str::<Vec<i64>>(t).map_or_else(|_| t.clone(), |a| format!("{a:?}"))
        }
        (Value::Text(t), _) => t.clone(),
        (Value::Blob(b), _) => hex::encode(b),
    }
}

fn canonical_target(row: &tokio_postgres::Row, i: usize, ty: &str) -> Result<String> {
    let null = || "\u{2205}".to_owned();
    Ok(match ty {
        "bigint" => row.try_get::<_, Option<i64>>(i)?.map_or_else(null, |v| v.to_string()),
        "integer" => row.try_get::<_, Option<i32>>(i)?.map_or_else(null, |v| v.to_string()),
        "boolean" => row.try_get::<_, Option<bool>>(i)?.map_or_else(null, |v| u8::from(v).to_string()),
        "bytea" => row.try_get::<_, Option<Vec<u8>>>(i)?.map_or_else(null, hex::encode),
        "ARRAY" => row.try_get::<_, Option<Vec<i64>>>(i)?.map_or_else(null, |a| format!("{a:?}")),
        _ => row.try_get::<_, Option<String>>(i)?.unwrap_or_else(null),
    })
}

impl PostgresStore {
    /// Copies the SQLite database at `source` (whose tokens `source_key` opens) into
    /// this one, which must be new or an interrupted copy's; `progress` hears after
    /// each batch and may stop the copy (returning false), which a later call resumes.
    /// The source must not be in use (stop `tripline serve` first).
    pub fn import_sqlite(
        &self,
        source: &Path,
        source_key: &SecretBox,
        mut progress: impl FnMut(&Progress) -> bool,
    ) -> Result<Option<Report>> {
        if !source.is_file() {
            return Err(StoreError::NotFound(format!("no Tripline database at {}", source.display())));
        }
        let db = rusqlite::Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let resumed = self.pool.write(|tx| {
            let started = tx.opt("SELECT 1 FROM pg_tables WHERE tablename = 'import_progress'", &[])?.is_some();
            if !started {
                let used = tx
                    .one(
                        "SELECT (SELECT COUNT(*) FROM connections) + (SELECT COUNT(*) FROM file_events)
                              + (SELECT COUNT(*) FROM accounts) + (SELECT COUNT(*) FROM rules)",
                        &[],
                    )?
                    .get::<_, i64>(0);
                if used > 0 {
                    return Err(StoreError::Conflict(
                        "the PostgreSQL database already holds Tripline data: migrate into a new database".into(),
                    ));
                }
                tx.batch(
                    "CREATE TABLE import_progress (source_table TEXT PRIMARY KEY, last_key TEXT, copied BIGINT NOT NULL,
                     done BOOLEAN NOT NULL)",
                )?;
            }
            Ok(started)
        })?;
        let mut report = Report { resumed, ..Report::default() };
        for (name, rowid) in source_tables(&db)? {
            let table = self.describe(&db, &name, rowid)?;
            let total: i64 = db.query_row(&format!("SELECT COUNT(*) FROM \"{name}\""), [], |r| r.get(0))?;
            if !self.copy(&db, &table, total as u64, source_key, &mut progress)? {
                return Ok(None);
            }
            report.tables.push((name, total as u64));
        }
        self.pool.write(|tx| {
            // Identity columns go on after the highest copied value.
            for row in tx.rows(
                "SELECT table_name::text, column_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND is_identity = 'YES'",
                &[],
            )? {
                let (table, column): (String, String) = (row.get(0), row.get(1));
                tx.batch(&format!(
                    "SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'),
                                   COALESCE((SELECT MAX(\"{column}\") FROM \"{table}\"), 0) + 1, false)"
                ))?;
            }
            Ok(())
        })?;
        for (name, rows) in &report.tables {
            let rowid = source_tables(&db)?.into_iter().find(|(n, _)| n == name).is_some_and(|(_, r)| r);
            let table = self.describe(&db, name, rowid)?;
            self.verify(&db, &table, *rows, source_key)?;
        }
        // Statistics for the planner, as a bulk load leaves it none.
        self.pool.write(|tx| tx.batch("DROP TABLE import_progress; ANALYZE"))?;
        Ok(Some(report))
    }

    /// A source table's columns, their target types and its walking key; a column the
    /// target lacks is refused (the schemas drifted), never dropped.
    fn describe(&self, db: &rusqlite::Connection, name: &str, rowid: bool) -> Result<Table> {
        let mut stmt = db.prepare(&format!("PRAGMA table_info(\"{name}\")"))?;
        let info: Vec<(String, i64)> =
            stmt.query_map([], |r| Ok((r.get(1)?, r.get(5)?)))?.collect::<rusqlite::Result<Vec<_>>>()?;
        let target: Vec<(String, String)> = self.pool.read(|c| {
            Ok(c.rows(
                "SELECT column_name::text, data_type::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1",
                &[&name],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })?;
        if target.is_empty() {
            return Err(corrupt(format!("the PostgreSQL schema has no table {name}")));
        }
        let mut types = Vec::new();
        for (column, _) in &info {
            let ty = target
                .iter()
                .find(|(c, _)| c == column)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| corrupt(format!("the PostgreSQL table {name} has no column {column}")))?;
            types.push(ty);
        }
        let mut key: Vec<(i64, String)> =
            info.iter().filter(|(_, pk)| *pk > 0).map(|(c, pk)| (*pk, c.clone())).collect();
        key.sort();
        Ok(Table {
            name: name.to_owned(),
            columns: info.into_iter().map(|(c, _)| c).collect(),
            types,
            key: key.into_iter().map(|(_, c)| c).collect(),
            rowid,
        })
    }

    /// Copies a table from where an earlier run stopped; false when `progress` said stop.
    fn copy(
        &self,
        db: &rusqlite::Connection,
        table: &Table,
        total: u64,
        source_key: &SecretBox,
        progress: &mut impl FnMut(&Progress) -> bool,
    ) -> Result<bool> {
        let name = &table.name;
        let state = self
            .pool
            .read(|c| c.opt("SELECT last_key, copied, done FROM import_progress WHERE source_table = $1", &[name]))?;
        let mut first = state.is_none();
        let (mut last, mut copied) = match &state {
            Some(r) if r.get::<_, bool>(2) => return Ok(true),
            Some(r) => (r.get::<_, Option<String>>(0), r.get::<_, i64>(1) as u64),
            None => (None, 0),
        };
        let key_columns: Vec<String> =
            if table.rowid { vec!["rowid".to_owned()] } else { table.key.iter().map(|k| format!("\"{k}\"")).collect() };
        let select_columns = table.columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
        let batch = (60_000 / table.columns.len().max(1)).clamp(1, 2_000);
        let sealed: Vec<bool> = table.columns.iter().map(|c| SEALED.contains(&(name.as_str(), c.as_str()))).collect();
        loop {
            // The next batch of rows after the last key copied, in key order.
            let after: Vec<Value> = match &last {
                Some(text) => serde_json::from_str::<Vec<serde_json::Value>>(text)
                    .map_err(|e| corrupt(format!("import_progress of {name}: {e}")))?
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::Number(n) => Value::Integer(n.as_i64().unwrap_or_default()),
                        serde_json::Value::String(s) => Value::Text(s),
                        _ => Value::Null,
                    })
                    .collect(),
                None => Vec::new(),
            };
            let filter = if after.is_empty() {
                String::new()
            } else {
                let marks = (1..=after.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
                format!("WHERE ({}) > ({marks})", key_columns.join(", "))
            };
            let sql = format!(
                "SELECT {}, {select_columns} FROM \"{name}\" {filter} ORDER BY {} LIMIT {batch}",
                key_columns.join(", "),
                key_columns.join(", ")
            );
            let mut stmt = db.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(after.iter()))?;
            let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
            // Each row's integer columns as read (for the file events' months).
            let mut times: Vec<Vec<i64>> = Vec::new();
            let (mut n, mut key) = (0usize, Vec::new());
            while let Some(r) = rows.next()? {
                key = (0..key_columns.len())
                    .map(|i| -> rusqlite::Result<serde_json::Value> {
                        Ok(match r.get::<_, Value>(i)? {
                            Value::Integer(v) => serde_json::json!(v),
                            Value::Text(t) => serde_json::json!(t),
                            _ => serde_json::Value::Null,
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut integers = Vec::with_capacity(table.columns.len());
                for (i, column) in table.columns.iter().enumerate() {
                    let mut v: Value = r.get(key_columns.len() + i)?;
                    integers.push(if let Value::Integer(x) = v { x } else { 0 });
                    if sealed[i]
                        && let Value::Text(t) = &v
                    {
                        v = Value::Text(self.secrets.seal(&source_key.open(t)?)?);
                    }
                    values.push(to_target(v, &table.types[i], name, column)?);
                }
                times.push(integers);
                n += 1;
            }
            if n == 0 {
                self.pool.write(|tx| {
                    tx.exec(
                        "INSERT INTO import_progress (source_table, last_key, copied, done) VALUES ($1, $2, $3, TRUE)
                         ON CONFLICT (source_table) DO UPDATE SET done = TRUE",
                        &[name, &last, &(copied as i64)],
                    )?;
                    if first {
                        tx.batch(&format!("DELETE FROM \"{name}\""))?;
                    }
                    Ok(())
                })?;
                return Ok(true);
            }
            let width = table.columns.len();
            let tuples = (0..n)
                .map(|row| {
                    let marks = (1..=width).map(|c| format!("${}", row * width + c)).collect::<Vec<_>>();
                    format!("({})", marks.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let insert = format!("INSERT INTO \"{name}\" ({select_columns}) OVERRIDING SYSTEM VALUE VALUES {tuples}");
            let next_key = serde_json::to_string(&key).map_err(corrupt)?;
            let observed = table.columns.iter().position(|c| c == "observed_at").filter(|_| name == "file_events");
            let made = self.pool.write(|tx| {
                // File events go into the partitions of their months.
                let made = match observed {
                    Some(at) => {
                        tx.one("SELECT pg_advisory_xact_lock($1)", &[&super::FILE_EVENT_LOCK])?;
                        self.partitions.ensure(tx, times.iter().map(|row| row[at]))?
                    }
                    None => Vec::new(),
                };
                if first {
                    // Rows the new schema put in (the singletons' first positions).
                    tx.batch(&format!("DELETE FROM \"{name}\""))?;
                }
                let args: Vec<Arg<'_>> = values.iter().map(|b| &**b as Arg<'_>).collect();
                tx.rows_once(&insert, &args)?;
                tx.exec(
                    "INSERT INTO import_progress (source_table, last_key, copied, done) VALUES ($1, $2, $3, FALSE)
                     ON CONFLICT (source_table) DO UPDATE SET last_key = excluded.last_key, copied = excluded.copied",
                    &[name, &next_key, &((copied + n as u64) as i64)],
                )?;
                Ok(made)
            })?;
            self.partitions.known(made);
            (first, copied, last) = (false, copied + n as u64, Some(next_key));
            if !progress(&Progress { table: name.clone(), copied, total }) {
                return Ok(false);
            }
        }
    }

    /// The same rows on both sides: count and order-free checksum.
    fn verify(&self, db: &rusqlite::Connection, table: &Table, rows: u64, source_key: &SecretBox) -> Result<()> {
        let name = &table.name;
        let sealed: Vec<bool> = table.columns.iter().map(|c| SEALED.contains(&(name.as_str(), c.as_str()))).collect();
        let columns = table.columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
        let (mut source_sum, mut source_rows) = (0u64, 0u64);
        let mut stmt = db.prepare(&format!("SELECT {columns} FROM \"{name}\""))?;
        let mut cursor = stmt.query([])?;
        while let Some(r) = cursor.next()? {
            let mut values = Vec::with_capacity(table.columns.len());
            for (i, (ty, sealed)) in table.types.iter().zip(&sealed).enumerate() {
                let v: Value = r.get(i)?;
                values.push(match (&v, sealed) {
                    (Value::Text(t), true) => source_key.open(t)?,
                    _ => canonical_source(&v, ty),
                });
            }
            source_sum = source_sum.wrapping_add(digest(&values));
            source_rows += 1;
        }
        let (target_sum, target_rows) = self.pool.write(|tx| {
            tx.batch(&format!("DECLARE verify NO SCROLL CURSOR FOR SELECT {columns} FROM \"{name}\""))?;
            let (mut sum, mut count) = (0u64, 0u64);
            loop {
                let batch = tx.rows_once("FETCH 5000 FROM verify", &[])?;
                if batch.is_empty() {
                    break;
                }
                for r in &batch {
                    let mut values = Vec::with_capacity(table.columns.len());
                    for (i, (ty, sealed)) in table.types.iter().zip(&sealed).enumerate() {
                        let text = canonical_target(r, i, ty)?;
                        values.push(if *sealed && text != "\u{2205}" { self.secrets.open(&text)? } else { text });
                    }
                    sum = sum.wrapping_add(digest(&values));
                    count += 1;
                }
            }
            Ok((sum, count))
        })?;
        if (source_rows, source_sum) != (target_rows, target_sum) || source_rows != rows {
            return Err(corrupt(format!(
                "{name} differs after the copy: {source_rows} rows in SQLite, {target_rows} in PostgreSQL{}",
                if source_rows == target_rows { " (their contents differ)" } else { "" }
            )));
        }
        Ok(())
    }
}
