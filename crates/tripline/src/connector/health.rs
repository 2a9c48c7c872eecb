//! A connection's health: preflight checks of the org (at start and every few
//! minutes) and what the subscribers report, turned into the connection's status.
//! Each problem names its source and what a Salesforce admin can do about it; problems
//! clear by themselves when a later check passes.

use std::time::{Duration, Instant};

use salesforce::api::SalesforceApi;
use salesforce::pubsub::{PubSub, StreamError, StreamHealth};
use serde_json::Value;
use sfwire::soql::quote;

use crate::connection::{Gap, Problem, ProblemSource as Source, QuarantinedEvent};
use crate::store::{Store, StoreError};

/// A failed API call as a problem.
pub(crate) fn from_api_error(e: &salesforce::Error) -> Problem {
    use salesforce::Error as E;
    match e {
        E::Authorization { .. } | E::InvalidSession => Problem::error(
            Source::Token,
            format!(
                "Salesforce refused the connection's token ({e}). If the service account was deactivated or frozen, \
                 reactivate it; if the token was revoked, authorize the connection again."
            ),
        ),
        E::ApiLimit(_) => Problem::error(
            Source::ApiLimits,
            "The org's daily API request limit is used up. Tripline retries with backoff; raise the limit or wait for it to reset.",
        ),
        E::Concurrency(_) => Problem::error(
            Source::ApiLimits,
            "Salesforce refuses requests: the org already serves as many long-running requests as it allows at once (ConcurrentPerOrgLongTxn). Tripline retries; if it lasts, look for an integration holding long requests.",
        ),
        E::IpRestricted(_) => Problem::error(
            Source::Permissions,
            "Salesforce refuses sign-in from this server's IP address (ip restricted): add the address to the connected app's allowed ranges or the service account profile's Login IP Ranges, or relax the app's IP restrictions. No new authorization is needed.",
        ),
        E::Network(m) => Problem::error(Source::Network, format!("Salesforce cannot be reached: {m}")),
        E::Api { code, .. } if code == "API_CURRENTLY_DISABLED" => Problem::error(
            Source::Permissions,
            "The service account may not use the API (API is disabled for this user): give its profile, or a permission set assigned to it, the API Enabled permission.",
        ),
        E::Api { code, .. } if code == "INSUFFICIENT_ACCESS" => Problem::error(
            Source::Permissions,
            format!(
                "The service account lacks a permission ({e}). Its profile needs API Enabled, View Setup and Configuration, and Customize Application."
            ),
        ),
        other => Problem::error(Source::Network, other.to_string()),
    }
}

/// Streaming entities Tripline needs, and the stored object backfill needs.
const STREAMS: [&str; 3] = ["LoginEventStream", "LogoutEventStream", "ReportEventStream"];

/// What a check of the org found.
#[derive(Debug, Default)]
pub(crate) struct OrgCheck {
    pub(crate) problems: Vec<Problem>,
    /// Whether Event Manager streams report events, when the check could tell.
    pub(crate) report_streaming: Option<bool>,
}

/// The service account: can the API be used with its token, is it active, not frozen?
/// Returns false when the API cannot be used at all (nothing else can be checked).
async fn account_checks(api: &SalesforceApi, problems: &mut Vec<Problem>) -> bool {
    let user = api.session().user_id;
    let soql = format!("SELECT Id, IsActive, Username FROM User WHERE Id = {}", quote(&user));
    match api.query(&soql).await {
        Err(e) => {
            problems.push(from_api_error(&e));
            return false;
        }
        Ok(records) => {
            let active = records.first().and_then(|r| r.get("IsActive")).and_then(Value::as_bool);
            if active != Some(true) {
                problems.push(Problem::error(
                    Source::ServiceAccount,
                    "The service account is deactivated: reactivate it in Setup > Users.",
                ));
            }
        }
    }
    let frozen = format!("SELECT IsFrozen FROM UserLogin WHERE UserId = {}", quote(&user));
    if let Ok(records) = api.query(&frozen).await
        && records.iter().any(|r| r.get("IsFrozen").and_then(Value::as_bool) == Some(true))
    {
        problems.push(Problem::error(
            Source::ServiceAccount,
            "The service account is frozen: unfreeze it in Setup > Users.",
        ));
    }
    true
}

/// Event Manager's switches and the licence: one Metadata API call and one Pub/Sub
/// call, cheap enough to run every few seconds.
async fn event_checks(api: &SalesforceApi, pubsub: &PubSub, check: &mut OrgCheck) {
    let problems = &mut check.problems;
    match api.realtime_event_settings().await {
        Ok(settings) => {
            let on = |name: &str| settings.iter().any(|e| e.entity_name == name && e.enabled);
            check.report_streaming = Some(on("ReportEventStream"));
            let off: Vec<&str> = STREAMS.iter().copied().filter(|s| !on(s)).collect();
            if !off.is_empty() {
                problems.push(Problem::error(
                    Source::EventManager,
                    format!("Streaming is off for {} in Setup > Event Manager: enable streaming for these events.", off.join(", ")),
                ));
            }
            if !on("ReportEvent") {
                problems.push(Problem::warning(
                    Source::EventManager,
                    "Storing is off for Report Event: exports missed during an outage cannot be recovered. Enable storing in Event Manager.",
                ));
            }
        }
        Err(salesforce::Error::Api { code, .. }) if code == "INSUFFICIENT_ACCESS" => problems.push(Problem::error(
            Source::Permissions,
            "The service account cannot read Event Manager settings: give its profile the Customize Application permission.",
        )),
        Err(e) => problems.push(from_api_error(&e)),
    }
    match pubsub.topic(sfwire::pubsub::REPORT_TOPIC).await {
        Ok(topic) if !topic.can_subscribe => problems.push(Problem::error(
            Source::Licence,
            "The org cannot stream Real-Time Event Monitoring events: it needs Salesforce Shield or the Event Monitoring add-on.",
        )),
        Ok(_) => {}
        Err(e) => problems.push(from_stream_error(&e)),
    }
}

/// Checks the org: with `full`, the service account too (a few REST calls); without,
/// Event Manager and the licence only. An org that does not answer within `deadline`
/// is a network problem, not a wait.
pub(crate) async fn check_org(api: &SalesforceApi, pubsub: &PubSub, full: bool, deadline: Duration) -> OrgCheck {
    let run = async {
        let mut check = OrgCheck::default();
        if full && !account_checks(api, &mut check.problems).await {
            return check;
        }
        event_checks(api, pubsub, &mut check).await;
        check
    };
    match tokio::time::timeout(deadline, run).await {
        Ok(check) => check,
        Err(_) => OrgCheck { problems: vec![silent(deadline)], report_streaming: None },
    }
}

/// An org that gave no answer within `deadline`.
pub(crate) fn silent(deadline: Duration) -> Problem {
    Problem::error(
        Source::Network,
        format!(
            "Salesforce did not answer within {} s: it may be down or unreachable from this server.",
            deadline.as_secs()
        ),
    )
}

/// One cause, one problem: without the licence, Event Manager's switches and the
/// windows that cannot be re-read meanwhile (the stored object is hidden too) say
/// nothing more; and each source is named once (the first, most direct, report wins).
pub(crate) fn one_per_cause(problems: Vec<Problem>) -> Vec<Problem> {
    let licence = problems.iter().any(|p| p.source == Source::Licence);
    let mut seen = std::collections::HashSet::new();
    problems
        .into_iter()
        .filter(|p| !(licence && matches!(p.source, Source::EventManager | Source::EventStream)))
        .filter(|p| seen.insert((p.source, p.severity)))
        .collect()
}

pub(crate) fn from_stream_error(e: &StreamError) -> Problem {
    match e {
        StreamError::Denied(m) => Problem::error(
            Source::Licence,
            format!(
                "Salesforce refused the event stream ({m}): the org needs Shield or the Event Monitoring add-on, and the service account the View Real-Time Event Monitoring Data permission."
            ),
        ),
        StreamError::Auth(m) => Problem::error(Source::Token, format!("The event stream rejected the token: {m}")),
        StreamError::Limit(m) => Problem::error(
            Source::ApiLimits,
            format!(
                "Salesforce refused the event stream ({m}): the org's concurrent Pub/Sub clients or its event-delivery allocation are used up. Tripline retries with backoff; close other subscribers or wait for the allocation to reset."
            ),
        ),
        other => Problem::error(Source::Network, format!("Event stream: {other}")),
    }
}

/// How long a stream may fail for passing reasons (a reset, a timeout) before it is
/// shown as a problem.
const PASSING: Duration = Duration::from_secs(10);

/// Problems the subscribers report: a denial, a missing topic, a refused token or a
/// limit of the org at once; any other failure once it has lasted longer than a
/// passing hiccup.
pub(crate) fn from_streams(health: &[(String, StreamHealth, Instant)]) -> Vec<Problem> {
    health
        .iter()
        .filter_map(|(topic, h, since)| match h {
            StreamHealth::Retrying {
                error:
                    e @ (StreamError::Denied(_) | StreamError::NotFound(_) | StreamError::Auth(_) | StreamError::Limit(_)),
                ..
            } => {
                let mut p = from_stream_error(e);
                p.message = format!("{topic}: {}", p.message);
                Some(p)
            }
            StreamHealth::Retrying { error, .. } if since.elapsed() > PASSING => Some(Problem::error(
                Source::Network,
                format!("{topic}: the event stream has been failing for {} s: {error}", since.elapsed().as_secs()),
            )),
            _ => None,
        })
        .collect()
}

/// A warning for each window of events that could not be recovered.
fn from_gaps(gaps: &[Gap]) -> Vec<Problem> {
    gaps.iter()
        .filter(|g| !g.recovered)
        .map(|g| {
            let when = |ms: Option<i64>| ms.map(crate::search::output::time_text).unwrap_or_else(|| "now".into());
            Problem::warning(
                Source::EventStream,
                format!(
                    "Events of {} between {} and {} may be missing: {}",
                    g.topic,
                    when(Some(g.from_ms)),
                    when(g.to_ms),
                    g.reason
                ),
            )
        })
        .collect()
}

/// A warning when events were kept aside because they could not be read.
fn from_quarantine(count: usize, newest: Option<&QuarantinedEvent>) -> Option<Problem> {
    let newest = newest?;
    Some(Problem::warning(
        Source::EventStream,
        format!(
            "{count} event(s) could not be read and are kept aside for review; monitoring went on past them. Newest, on {}: {}",
            newest.topic, newest.reason
        ),
    ))
}

/// What the store knows is wrong: windows the streams lost, events kept aside.
pub(crate) fn stored(store: &dyn Store, connection: &str) -> Result<Vec<Problem>, StoreError> {
    let mut problems = from_gaps(&store.gaps(connection)?);
    let (count, newest) = store.quarantine(connection, 1)?;
    problems.extend(from_quarantine(count, newest.first()));
    Ok(problems)
}
