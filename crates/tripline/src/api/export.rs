//! The streamed export: every event matching a query, as CSV or JSON Lines, paged
//! from the store a fixed page at a time. Memory stays bounded whatever the client
//! does: the page size is the server's, a few exports run at once (per token and in
//! all), and a client that stops reading is dropped.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Api, ApiError, authenticate, parameters, read_query};
use crate::search::output::{self, Format};

/// Events read from the store at a time.
const PAGE: usize = 1_000;
/// Exports running at once for one token, and in all.
const PER_TOKEN: usize = 2;
const IN_ALL: usize = 8;
/// A client that takes no data for this long is dropped.
const STALL: Duration = Duration::from_secs(30);
/// Bytes sent to the client at a time.
const CHUNK: usize = 64 * 1024;

/// Exports running, by token name.
#[derive(Default)]
pub(crate) struct Slots(Mutex<HashMap<String, usize>>);

/// One running export; its slot is freed when dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    token: String,
}

impl Slots {
    pub(crate) fn take(self: &Arc<Self>, token: &str) -> Option<Slot> {
        let mut running = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = running.values().sum();
        let mine = running.get(token).copied().unwrap_or(0);
        if total >= IN_ALL || mine >= PER_TOKEN {
            return None;
        }
        running.insert(token.to_owned(), mine + 1);
        Some(Slot { slots: self.clone(), token: token.to_owned() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.slots.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = running.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.token);
            }
        }
    }
}

/// Hands what the writer produced to the response body in pieces, waiting at most
/// [`STALL`] for the client to take each.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    runtime: tokio::runtime::Handle,
    buffer: Vec<u8>,
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        match self.runtime.block_on(tokio::time::timeout(STALL, self.tx.send(Ok(chunk)))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the client went away")),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")),
        }
    }
}

pub(super) async fn export(
    State(api): State<Api>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let token = authenticate(&api, &headers)?;
    let params = parameters(raw.as_deref(), &["format"])?;
    let (format, content_type) = match params.get("format").map_or("csv", String::as_str) {
        "csv" => (Format::Csv, "text/csv; charset=utf-8"),
        "jsonl" => (Format::Jsonl, "application/x-ndjson"),
        other => {
            return Err(ApiError::bad_request("invalid_format", format!("format {other:?}: use csv or jsonl")));
        }
    };
    let query = read_query(body).await?;
    let slot = api.exports.take(&token.name).ok_or_else(|| {
        ApiError::too_many(format!("at most {PER_TOKEN} exports per token and {IN_ALL} in all run at once"), 5)
    })?;
    let body = stream(api.store.clone(), query, format, None, slot, super::request_id());
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// Every event matching `query` (from its first page), written as `format` and paged
/// from the store on the blocking pool. `slot` is held until the export ends, however
/// it ends; a failure ends the body with an error, logged under `request_id`.
pub(crate) fn stream(
    store: Arc<dyn crate::store::Store>,
    mut query: crate::search::SearchQuery,
    format: Format,
    columns: Option<Vec<String>>,
    slot: Slot,
    request_id: String,
) -> Body {
    query.page_size = PAGE;
    let (tx, rx) = mpsc::channel(8);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let errors = tx.clone();
        let mut writer =
            output::Writer::new(ChannelWriter { tx, runtime: runtime.clone(), buffer: Vec::new() }, format, columns);
        let outcome = (|| -> Result<(), String> {
            writer.header().map_err(|e| e.to_string())?;
            loop {
                let page = store.search(&query).map_err(|e| {
                    tracing::error!(%request_id, "export: {}", salesforce::error::error_chain(&e));
                    "the server could not read the events".to_owned()
                })?;
                writer.rows(&page.events).map_err(|e| e.to_string())?;
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => break,
                }
            }
            writer.finish().map(|_| ()).map_err(|e| e.to_string())
        })();
        if let Err(e) = outcome {
            tracing::warn!(%request_id, "export ended early: {e}");
            // The status line is gone; ending the body with an error tells the client.
            let _ = runtime.block_on(tokio::time::timeout(STALL, errors.send(Err(io::Error::other(e)))));
        }
    });
    Body::from_stream(ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_at_once_are_bounded_per_token_and_in_all() {
        let slots = Arc::new(Slots::default());
        let a1 = slots.take("a").expect("first");
        let _a2 = slots.take("a").expect("second");
        assert!(slots.take("a").is_none(), "a third for the same token waits");
        let others: Vec<Slot> = (0..IN_ALL - PER_TOKEN).map(|i| slots.take(&format!("t{i}")).expect("room")).collect();
        assert!(slots.take("b").is_none(), "the server is full");
        drop(a1);
        assert!(slots.take("b").is_some(), "a finished export frees its slot");
        drop(others);
    }
}
