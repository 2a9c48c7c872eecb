//! The REST API under `/services/data`: versions, query with SOQL and 2,000-record
//! pages, sObject records and descriptions, limits; Salesforce's error shapes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sfwire::id::SfId;

use crate::clock::now_ms;
use crate::faults::DELIVERY_ALLOCATION;
use crate::model::{FieldType, ObjectSchema, Row, Storage, object_for_prefix, object_schema};
use crate::oauth::bearer_user;
use crate::rng::{ALNUM, Rng};
use crate::sim::Sim;
use crate::soql;

/// Oldest and newest API versions served.
pub const MIN_VERSION: u32 = 31;
pub const MAX_VERSION: u32 = 66;
const MAX_BATCH: usize = 2000;
const CURSOR_LIFETIME_MS: i64 = 15 * 60 * 1000;

/// Salesforce accepts resource paths with or without a trailing slash, and clients use
/// both.
/// What REST handlers share: the org, and query cursors (REST's own state).
#[derive(Clone)]
struct RestState {
    sim: Arc<Sim>,
    cursors: Arc<Cursors>,
}

impl FromRef<RestState> for Arc<Sim> {
    fn from_ref(state: &RestState) -> Arc<Sim> {
        state.sim.clone()
    }
}

impl FromRef<RestState> for Arc<Cursors> {
    fn from_ref(state: &RestState) -> Arc<Cursors> {
        state.cursors.clone()
    }
}

pub fn routes(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/services/data", get(versions))
        .route("/services/data/", get(versions))
        .route("/services/data/{version}", get(resources))
        .route("/services/data/{version}/", get(resources))
        .route("/services/data/{version}/query", get(query))
        .route("/services/data/{version}/query/", get(query))
        .route("/services/data/{version}/query/{locator}", get(query_more))
        // queryAll also returns deleted and archived rows; sfsim deletes and archives
        // nothing, so its results are those of query.
        .route("/services/data/{version}/queryAll", get(query))
        .route("/services/data/{version}/queryAll/", get(query))
        .route("/services/data/{version}/limits", get(limits))
        .route("/services/data/{version}/limits/", get(limits))
        .route("/services/data/{version}/sobjects", get(describe_global))
        .route("/services/data/{version}/sobjects/", get(describe_global))
        .route("/services/data/{version}/composite/sobjects/{object}", get(records))
        .route("/services/data/{version}/recent", get(recent))
        .route("/services/data/{version}/recent/", get(recent))
        .route("/services/data/{version}/sobjects/{object}", get(sobject))
        .route("/services/data/{version}/sobjects/{object}/", get(sobject))
        .route("/services/data/{version}/sobjects/{object}/describe", get(describe))
        .route("/services/data/{version}/sobjects/{object}/describe/", get(describe))
        .route("/services/data/{version}/sobjects/{object}/{id}", get(record))
        .route("/services/data/{version}/sobjects/{object}/{id}/", get(record))
        .with_state(RestState { sim, cursors: Arc::default() })
}

/// A REST error: `[{"message": ..., "errorCode": ...}]` with its HTTP status.
pub struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!([{ "message": self.2, "errorCode": self.1 }]))).into_response()
    }
}

fn not_found(message: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "NOT_FOUND", message.into())
}

/// The request with runs of slashes in its path collapsed to one.
pub async fn collapse_slashes(mut request: axum::extract::Request) -> axum::extract::Request {
    let uri = request.uri();
    if uri.path().contains("//") {
        let mut path = String::with_capacity(uri.path().len());
        for c in uri.path().chars() {
            if !(c == '/' && path.ends_with('/')) {
                path.push(c);
            }
        }
        let rebuilt = match uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        if let Ok(collapsed) = rebuilt.parse() {
            *request.uri_mut() = collapsed;
        }
    }
    request
}

/// A path nothing serves: under `/services/` Salesforce's error body (clients show its
/// message), elsewhere a bare 404.
pub async fn unknown(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/services/") {
        not_found("The requested resource does not exist").into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// Paged query results waiting for `nextRecordsUrl`.
#[derive(Default)]
struct Cursors(Mutex<HashMap<String, Cursor>>);

struct Cursor {
    records: Vec<serde_json::Value>,
    batch: usize,
    created_ms: i64,
}

fn version_of(text: &str) -> Result<String, ApiError> {
    let number = text.strip_prefix('v').and_then(|v| v.strip_suffix(".0")).and_then(|v| v.parse::<u32>().ok());
    match number {
        Some(n) if (MIN_VERSION..=MAX_VERSION).contains(&n) => Ok(format!("v{n}.0")),
        _ => Err(not_found("The requested resource does not exist")),
    }
}

/// Authenticates the call and counts it against the daily API limit.
fn api_call(sim: &Sim, headers: &HeaderMap) -> Result<SfId, ApiError> {
    let user = bearer_user(sim, headers)
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "INVALID_SESSION_ID", "Session expired or invalid".into()))?;
    if !sim.org().user_can_use_api(&user, now_ms()) {
        return Err(ApiError(StatusCode::FORBIDDEN, "API_CURRENTLY_DISABLED", "API is disabled for this User".into()));
    }
    if !sim.spend_api_call() {
        return Err(ApiError(StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.".into()));
    }
    Ok(user)
}

/// Adds `Sforce-Limit-Info`, as every Salesforce API response has.
fn with_usage(sim: &Sim, body: serde_json::Value) -> Response {
    let max = sim.config.api_daily_limit;
    let used = max - sim.api_remaining.load(Ordering::Relaxed);
    let mut response = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("api-usage={used}/{max}")) {
        response.headers_mut().insert("sforce-limit-info", v);
    }
    response
}

async fn versions() -> Json<serde_json::Value> {
    let list: Vec<_> = (MIN_VERSION..=MAX_VERSION)
        .map(|n| json!({ "label": format!("API {n}.0"), "url": format!("/services/data/v{n}.0"), "version": format!("{n}.0") }))
        .collect();
    Json(list.into())
}

async fn resources(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(version): Path<String>,
) -> Result<Response, ApiError> {
    let v = version_of(&version)?;
    let user = api_call(&sim, &headers)?;
    let base = format!("/services/data/{v}");
    // Clients holding only a token and an instance URL find out who they are here.
    let identity = format!("{}/id/{}/{user}", sim.base_url, sim.org().id);
    Ok(with_usage(
        &sim,
        json!({
            "sobjects": format!("{base}/sobjects"),
            "query": format!("{base}/query"),
            "limits": format!("{base}/limits"),
            "identity": identity,
            "recent": format!("{base}/recent"),
        }),
    ))
}

async fn limits(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(version): Path<String>,
) -> Result<Response, ApiError> {
    version_of(&version)?;
    api_call(&sim, &headers)?;
    let remaining = sim.api_remaining.load(Ordering::Relaxed);
    let mut limits = serde_json::Map::new();
    for (name, max) in FIXED_LIMITS {
        limits.insert(name.into(), json!({ "Max": max, "Remaining": max }));
    }
    limits.insert("DailyApiRequests".into(), json!({ "Max": sim.config.api_daily_limit, "Remaining": remaining }));
    let delivered = sim.faults.delivery_remaining().unwrap_or(DELIVERY_ALLOCATION);
    limits.insert("DailyDeliveredPlatformEvents".into(), json!({ "Max": DELIVERY_ALLOCATION, "Remaining": delivered }));
    Ok(with_usage(&sim, serde_json::Value::Object(limits)))
}

/// The other allocations `limits` names, each with a plausible maximum (they vary by
/// edition and licences); sfsim spends none of them (all remain).
const FIXED_LIMITS: [(&str, i64); 22] = [
    ("ConcurrentAsyncGetReportInstances", 200),
    ("ConcurrentSyncReportRuns", 20),
    ("DailyAsyncApexExecutions", 250_000),
    ("DailyBulkApiBatches", 15_000),
    ("DailyBulkV2QueryFileStorageMB", 976_562),
    ("DailyBulkV2QueryJobs", 10_000),
    ("DailyDurableGenericStreamingApiEvents", 10_000),
    ("DailyDurableStreamingApiEvents", 1_000_000),
    ("DailyGenericStreamingApiEvents", 10_000),
    ("DailyStandardVolumePlatformEvents", 10_000),
    ("DailyStreamingApiEvents", 1_000_000),
    ("DailyWorkflowEmails", 100_000),
    ("DataStorageMB", 1_024),
    ("DurableStreamingApiConcurrentClients", 1_000),
    ("FileStorageMB", 10_240),
    ("HourlyAsyncReportRuns", 1_200),
    ("HourlyDashboardRefreshes", 200),
    ("HourlyPublishedPlatformEvents", 250_000),
    ("HourlySyncReportRuns", 500),
    ("MassEmail", 5_000),
    ("SingleEmail", 5_000),
    ("StreamingApiConcurrentClients", 1_000),
];

/// `Sforce-Query-Options: batchSize=N` (200 to 2,000).
fn batch_size(headers: &HeaderMap) -> usize {
    headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|p| p.trim().strip_prefix("batchSize=")))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .map_or(MAX_BATCH, |n| n.clamp(200, MAX_BATCH))
}

async fn query(
    State(sim): State<Arc<Sim>>,
    State(cursors): State<Arc<Cursors>>,
    headers: HeaderMap,
    Path(version): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let v = version_of(&version)?;
    api_call(&sim, &headers)?;
    let Some(text) = params.get("q") else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string must be provided in the q parameter".into(),
        ));
    };
    let now = now_ms();
    let parsed = soql::parse(text, now).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.code, e.message))?;
    if params.get("columns").is_some_and(|c| c == "true") {
        // The columns the query would return, not its rows (command-line clients ask
        // for them to lay out a table).
        let columns = soql::columns(&parsed).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.code, e.located(text)))?;
        return Ok(with_usage(&sim, columns));
    }
    let result = {
        let org = sim.org();
        let hidden = !org.settings.licence && object_schema(&parsed.object).is_some_and(|o| o.is_big_object());
        if hidden {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "INVALID_TYPE",
                format!("sObject type '{}' is not supported.", parsed.object),
            ));
        }
        soql::execute(&org, &parsed, now, &v).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.code, e.located(text)))?
    };
    let batch = batch_size(&headers);
    Ok(with_usage(&sim, page(&cursors, &v, result.total_size, result.records, 0, batch)))
}

/// One page of results starting at `offset`, parking the rest behind a locator.
fn page(
    cursors: &Cursors,
    v: &str,
    total: usize,
    mut records: Vec<serde_json::Value>,
    offset: usize,
    batch: usize,
) -> serde_json::Value {
    if records.len() <= offset + batch {
        let rest = records.split_off(offset.min(records.len()));
        return json!({ "totalSize": total, "done": true, "records": rest });
    }
    let next = offset + batch;
    let this_page: Vec<serde_json::Value> = records[offset..next].to_vec();
    let locator = format!("01g{}", Rng::new(now_ms() as u64 ^ total as u64 ^ offset as u64).token(ALNUM, 15));
    let mut cursors = cursors.0.lock().unwrap_or_else(|e| e.into_inner());
    let now = now_ms();
    cursors.retain(|_, c| now - c.created_ms < CURSOR_LIFETIME_MS);
    cursors.insert(locator.clone(), Cursor { records, batch, created_ms: now });
    json!({
        "totalSize": total,
        "done": false,
        "nextRecordsUrl": format!("/services/data/{v}/query/{locator}-{next}"),
        "records": this_page,
    })
}

async fn query_more(
    State(sim): State<Arc<Sim>>,
    State(cursors): State<Arc<Cursors>>,
    headers: HeaderMap,
    Path((version, locator)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let v = version_of(&version)?;
    api_call(&sim, &headers)?;
    let invalid = || ApiError(StatusCode::BAD_REQUEST, "INVALID_QUERY_LOCATOR", "invalid query locator".into());
    let (id, offset) = locator.rsplit_once('-').ok_or_else(invalid)?;
    let offset: usize = offset.parse().map_err(|_| invalid())?;
    let cursor = cursors.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id).ok_or_else(invalid)?;
    let total = cursor.records.len();
    if offset > total {
        return Err(invalid());
    }
    let body = page(&cursors, &v, total, cursor.records, offset, cursor.batch);
    Ok(with_usage(&sim, body))
}

async fn describe_global(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(version): Path<String>,
) -> Result<Response, ApiError> {
    let v = version_of(&version)?;
    api_call(&sim, &headers)?;
    let objects: Vec<_> = crate::model::OBJECTS.iter().map(|o| global_entry(o, &v)).collect();
    Ok(with_usage(&sim, json!({ "encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objects })))
}

/// An object as describeGlobal lists it. sfsim's objects are read through the API only:
/// queryable (stored events too), retrievable by id (tables), nothing else.
fn global_entry(o: &ObjectSchema, v: &str) -> serde_json::Value {
    let table = o.storage == Storage::Table;
    let url = format!("/services/data/{v}/sobjects/{}", o.name);
    json!({
        "name": o.name, "label": o.name, "labelPlural": o.name, "keyPrefix": o.key_prefix,
        "custom": false, "customSetting": false, "deprecatedAndHidden": false, "isInterface": false,
        "queryable": true, "retrieveable": table, "searchable": false, "layoutable": false,
        "createable": false, "updateable": false, "deletable": false, "undeletable": false,
        "mergeable": false, "replicateable": false, "triggerable": false, "feedEnabled": false,
        "activateable": false,
        "urls": {
            "sobject": url,
            "describe": format!("{url}/describe"),
            "rowTemplate": format!("{url}/{{ID}}"),
        }
    })
}

/// `sobjects/{Type}`: the object's basic information (its describeGlobal entry) and
/// the records its user viewed recently (none: sfsim keeps no viewing history).
async fn sobject(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path((version, object)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (v, schema) = object_call(&sim, &headers, &version, &object)?;
    Ok(with_usage(&sim, json!({ "objectDescribe": global_entry(schema, &v), "recentItems": [] })))
}

/// A call on one object: its API version and the object (after the caller's token and
/// the API allowance are checked).
fn object_call(
    sim: &Sim,
    headers: &HeaderMap,
    version: &str,
    object: &str,
) -> Result<(String, &'static ObjectSchema), ApiError> {
    let v = version_of(version)?;
    api_call(sim, headers)?;
    Ok((v, object_schema(object).ok_or_else(|| unknown_object(object))?))
}

/// The object, if its records can be read by id (a big object's cannot: to such a
/// read, `object`, as the caller named it, does not exist).
fn by_id(schema: &'static ObjectSchema, object: &str) -> Result<&'static ObjectSchema, ApiError> {
    if schema.is_big_object() { Err(unknown_object(object)) } else { Ok(schema) }
}

fn unknown_object(name: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("The requested resource does not exist: sObject type '{name}'"),
    )
}

async fn describe(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path((version, object)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (v, schema) = object_call(&sim, &headers, &version, &object)?;
    let fields: Vec<_> = schema
        .fields
        .iter()
        .map(|f| {
            let ty = match f.ty {
                FieldType::Id => "id",
                FieldType::Reference => "reference",
                FieldType::String => "string",
                FieldType::Boolean => "boolean",
                FieldType::Int => "int",
                FieldType::Double => "double",
                FieldType::DateTime => "datetime",
            };
            let soap_type = match f.ty {
                FieldType::Id | FieldType::Reference => "tns:ID",
                FieldType::String => "xsd:string",
                FieldType::Boolean => "xsd:boolean",
                FieldType::Int => "xsd:int",
                FieldType::Double => "xsd:double",
                FieldType::DateTime => "xsd:dateTime",
            };
            let length = match f.ty {
                FieldType::Id | FieldType::Reference => 18,
                FieldType::String => 255,
                _ => 0,
            };
            let relationship = schema.relationships.iter().find(|r| r.id_field == f.name);
            let id = f.name == "Id";
            // sfsim's records are read through the API only: nothing is createable or
            // updateable; every field filters, sorts and groups.
            json!({
                "name": f.name, "label": f.name, "type": ty, "soapType": soap_type,
                "length": length, "byteLength": length * 3,
                "digits": if f.ty == FieldType::Int { 9 } else { 0 },
                "precision": if f.ty == FieldType::Double { 18 } else { 0 },
                "scale": if f.ty == FieldType::Double { 2 } else { 0 },
                "nillable": !id, "idLookup": id, "nameField": f.name == "Name", "unique": false,
                "createable": false, "updateable": false, "custom": false, "calculated": false,
                "autoNumber": false, "externalId": false, "caseSensitive": false,
                "defaultedOnCreate": id, "filterable": true, "sortable": true, "groupable": f.ty != FieldType::Double,
                "relationshipName": relationship.map(|r| r.name),
                "referenceTo": relationship.map(|r| vec![r.target]).unwrap_or_default(),
                "picklistValues": [],
            })
        })
        .collect();
    let mut body = global_entry(schema, &v);
    body["fields"] = fields.into();
    Ok(with_usage(&sim, body))
}

async fn record(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path((version, object, id)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (v, schema) = object_call(&sim, &headers, &version, &object)?;
    let schema = by_id(schema, &object)?;
    let parsed = record_id(schema, &id)
        .ok_or_else(|| not_found(&format!("Provided external ID field does not exist or is not accessible: {id}")))?;
    // `?fields=A,B` returns only those (each must exist), else every field.
    let wanted = match params.get("fields") {
        Some(list) => field_list(schema, list)?,
        None => (0..schema.fields.len()).collect(),
    };
    let found = record_json(&sim.org(), schema, &parsed, &wanted, &v);
    Ok(with_usage(&sim, found.ok_or_else(|| not_found("The requested resource does not exist"))?))
}

/// `composite/sobjects/{Type}?ids=...&fields=...`: several records of one object in one
/// call, in the order asked, null for an id that names none.
async fn records(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path((version, object)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (v, schema) = object_call(&sim, &headers, &version, &object)?;
    let schema = by_id(schema, &object)?;
    let required = |name: &str| {
        params.get(name).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            ApiError(StatusCode::BAD_REQUEST, "MISSING_ARGUMENT", format!("{name} parameter not specified"))
        })
    };
    let ids: Vec<&str> = required("ids")?.split(',').map(str::trim).collect();
    if ids.len() > 2000 {
        return Err(ApiError(StatusCode::BAD_REQUEST, "LIMIT_EXCEEDED", "at most 2000 ids".into()));
    }
    let wanted = field_list(schema, required("fields")?)?;
    let org = sim.org();
    let found: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            record_id(schema, id)
                .and_then(|id| record_json(&org, schema, &id, &wanted, &v))
                .unwrap_or(serde_json::Value::Null)
        })
        .collect();
    drop(org);
    Ok(with_usage(&sim, found.into()))
}

/// The records the caller viewed recently: none, as sfsim has no pages to view them on.
async fn recent(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(version): Path<String>,
) -> Result<Response, ApiError> {
    version_of(&version)?;
    api_call(&sim, &headers)?;
    Ok(with_usage(&sim, json!([])))
}

/// `id` as a record id of `schema` (its key prefix), if it is one.
fn record_id(schema: &ObjectSchema, id: &str) -> Option<SfId> {
    SfId::parse(id).ok().filter(|i| object_for_prefix(i.key_prefix()).is_some_and(|o| o.name == schema.name))
}

/// The fields named in `list` (comma-separated), each of which must exist.
fn field_list(schema: &ObjectSchema, list: &str) -> Result<Vec<usize>, ApiError> {
    list.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| {
            schema.field_index(f).ok_or_else(|| {
                let message = format!("No such column '{f}' on sobject of type {}", schema.name);
                ApiError(StatusCode::BAD_REQUEST, "INVALID_FIELD", message)
            })
        })
        .collect()
}

/// A record with its `attributes` and the `wanted` fields, if it exists.
fn record_json(
    org: &crate::org::Org,
    schema: &'static ObjectSchema,
    id: &SfId,
    wanted: &[usize],
    v: &str,
) -> Option<serde_json::Value> {
    let table = org.table(schema.name);
    let row = table.get(id.as_str())?;
    let mut out = serde_json::Map::new();
    out.insert("attributes".into(), soql::attributes(schema.name, Some(id.as_str()), v));
    for &i in wanted {
        out.insert(schema.fields[i].name.into(), Row::Record(row).value(schema, i).to_json());
    }
    Some(out.into())
}
