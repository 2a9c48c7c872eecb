//! Recovery of exports the stream lost (an expired replay id, a restart without
//! one): they are re-read from the stored `ReportEvent` object through SOQL and
//! applied like a delivery, without a checkpoint. Whatever cannot be re-read is
//! recorded as a gap: a window is never skipped silently.

use salesforce::pubsub::SinkError;
use serde_json::{Map, Value};
use sfwire::events::{EventRecord, ReportEventStream};
use sfwire::pubsub::REPORT_TOPIC;

use super::{ConnectionContext, sink_error};
use crate::connector::Error;
use salesforce::error::error_chain;

/// How far back a recovery with no known start reads: the stored object's default
/// query window.
const DEFAULT_WINDOW_MS: i64 = 72 * 3_600_000;

fn soql_datetime(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Re-reads exports from the stored `ReportEvent` object for a window the stream lost;
/// returns how many report events were read.
async fn backfill_reports(ctx: &ConnectionContext, from_ms: Option<i64>, to_ms: i64) -> Result<usize, Error> {
    let from = from_ms.unwrap_or(to_ms - DEFAULT_WINDOW_MS);
    let soql = format!(
        "SELECT {} FROM ReportEvent WHERE EventDate >= {} AND EventDate <= {}",
        ReportEventStream::FIELDS.join(", "),
        soql_datetime(from),
        soql_datetime(to_ms)
    );
    let records = ctx.api.query(&soql).await?;
    let events: Vec<Map<String, Value>> = records
        .into_iter()
        .filter_map(|r| match r {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .collect();
    let n = events.len();
    let batch = ctx.report_batch(events)?;
    let outcome = ctx.store.apply_reports(&ctx.connection_id, REPORT_TOPIC, &batch, None)?;
    let recovered = outcome.new_file_events + outcome.merged_chunks;
    if recovered > 0 {
        let reason = format!(
            "the event stream no longer held {recovered} export event(s); they were recovered from ReportEvent"
        );
        ctx.store.record_gap(&ctx.connection_id, REPORT_TOPIC, (Some(from), Some(to_ms)), &reason, true)?;
    }
    Ok(n)
}

/// Re-reads exports of [from, to] from the stored ReportEvent object (what is still
/// retained also comes back from EARLIEST; duplicates are no-ops). A window that
/// cannot be read is recorded as a gap, never skipped silently.
pub(super) async fn recover(
    ctx: &ConnectionContext,
    topic: &str,
    from: i64,
    to: i64,
    reason: &str,
) -> Result<(), SinkError> {
    // The stored object only holds what Event Manager stores: with storing off, a
    // query succeeds and returns nothing, which must not pass for a recovery.
    let storing = match ctx.api.realtime_event_settings().await {
        Ok(settings) => settings.iter().any(|e| e.entity_name == "ReportEvent" && e.enabled),
        Err(_) => true, // unknown: try, and let the query's own error speak
    };
    let unrecovered = if !storing {
        Some(format!(
            "{reason}; exports in this window could not be recovered: storing of Report Event is off in Event Manager"
        ))
    } else {
        match backfill_reports(ctx, Some(from), to).await {
            Ok(n) => {
                tracing::info!(topic, "re-read {n} report events from ReportEvent");
                None
            }
            Err(e) => Some(format!(
                "{reason}; exports in this window could not be recovered from ReportEvent: {}",
                error_chain(&e)
            )),
        }
    };
    if let Some(why) = unrecovered {
        ctx.store.record_gap(&ctx.connection_id, topic, (Some(from), Some(to)), &why, false).map_err(sink_error)?;
    }
    Ok(())
}
