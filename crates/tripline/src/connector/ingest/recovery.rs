//! Recovery of exports the stream did not carry (an expired replay id, a restart
//! without one, streaming turned off for a while, users newly in scope, or anything
//! the periodic reconciliation finds): they are re-read from the stored `ReportEvent`
//! object through SOQL and applied like a delivery, without a checkpoint (duplicates
//! are no-ops). A window that cannot be re-read is recorded as a gap, once; when it is
//! re-read later, the gap is cleared.

use salesforce::error::error_chain;
use serde_json::Value;
use sfwire::avro::AvroRecord;
use sfwire::events::ReportEventStream;
use sfwire::pubsub::REPORT_TOPIC;

use super::{ConnectionContext, IngestError};

fn soql_datetime(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Is Event Manager storing report events (so that `ReportEvent` can give them back)?
/// Unknown counts as yes: the query's own error then speaks.
pub(crate) async fn storing(ctx: &ConnectionContext) -> bool {
    match ctx.api.realtime_event_settings().await {
        Ok(settings) => settings.iter().any(|e| e.entity_name == "ReportEvent" && e.enabled),
        Err(_) => true,
    }
}

/// Re-reads the report events of [from, to] and applies them; returns how many
/// exports (new file events or chunks) were missing and are now stored.
async fn backfill(ctx: &ConnectionContext, from: i64, to: i64) -> Result<usize, IngestError> {
    let soql = format!(
        "SELECT {} FROM ReportEvent WHERE EventDate >= {} AND EventDate <= {}",
        ReportEventStream::FIELDS.join(", "),
        soql_datetime(from),
        soql_datetime(to)
    );
    let records = ctx.api.query(&soql).await.map_err(IngestError::Salesforce)?;
    let events = records
        .into_iter()
        .filter_map(|r| match r {
            Value::Object(m) => Some(super::from_fields(REPORT_TOPIC, m)),
            _ => None,
        })
        .collect();
    let batch = ctx.report_batch(events)?;
    let outcome = ctx.store.apply_reports(&ctx.connection_id, REPORT_TOPIC, &batch, None)?;
    ctx.hand_over(batch, &outcome);
    Ok(outcome.new_file_events + outcome.merged_chunks)
}

/// Makes sure the exports of [from, to] are stored, re-reading them from `ReportEvent`.
/// Returns whether the window is accounted for; if not, it is recorded as a gap with
/// `reason` and why (once per window start). An unknown scope is an error: the caller
/// must wait, not record anything.
pub(crate) async fn recover(ctx: &ConnectionContext, from: i64, to: i64, reason: &str) -> Result<bool, IngestError> {
    let store = &ctx.store;
    let id = &ctx.connection_id;
    if !storing(ctx).await {
        let why = format!(
            "{reason}; exports in this window could not be recovered: storing of Report Event is off in Event Manager"
        );
        store.record_gap(id, REPORT_TOPIC, from, Some(to), &why, false)?;
        return Ok(false);
    }
    match backfill(ctx, from, to).await {
        Ok(found) => {
            tracing::info!("re-read {from}..{to} from ReportEvent: {found} missing export event(s) stored");
            if found > 0 {
                let why = format!(
                    "{reason}; {found} export event(s) the stream had not delivered were recovered from ReportEvent"
                );
                store.record_gap(id, REPORT_TOPIC, from, Some(to), &why, true)?;
            }
            store.resolve_gaps(id, REPORT_TOPIC, from, to)?;
            Ok(true)
        }
        Err(IngestError::ScopeUnknown) => Err(IngestError::ScopeUnknown),
        Err(e) => {
            let why = format!(
                "{reason}; exports in this window could not be recovered from ReportEvent: {}",
                error_chain(&e)
            );
            store.record_gap(id, REPORT_TOPIC, from, Some(to), &why, false)?;
            Ok(false)
        }
    }
}
