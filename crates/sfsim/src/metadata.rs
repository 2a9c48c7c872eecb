//! The SOAP Metadata API: `readMetadata` of `RealTimeEventSettings` (Event Manager's
//! streaming and storing switches), `describeMetadata` (the types sfsim knows) and
//! `listMetadata` of them, with SOAP faults for bad sessions.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use quick_xml::Reader;
use quick_xml::events::Event;

use crate::clock::now_ms;
use crate::oauth::escape;
use crate::org::EventType;
use crate::sim::Sim;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/services/Soap/m/{version}", post(soap))
        .route("/services/Soap/m/{version}/", post(soap))
        .route("/services/Soap/m/{version}/{org}", post(soap))
}

const ENVELOPE_OPEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="http://soap.sforce.com/2006/04/metadata" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>"#;
const ENVELOPE_CLOSE: &str = "</soapenv:Body></soapenv:Envelope>";

fn xml(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml; charset=utf-8")], format!("{ENVELOPE_OPEN}{body}{ENVELOPE_CLOSE}"))
        .into_response()
}

pub(crate) fn fault(code: &str, message: &str) -> Response {
    xml(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "<soapenv:Fault><faultcode xmlns:sf=\"http://soap.sforce.com/2006/04/metadata\">sf:{code}</faultcode><faultstring>{code}: {}</faultstring></soapenv:Fault>",
            escape(message)
        ),
    )
}

/// What we need from the request: session id, operation, type and full names.
#[derive(Default, Debug)]
struct SoapRequest {
    session_id: String,
    operation: String,
    metadata_type: String,
    full_names: Vec<String>,
    /// `listMetadata`: the type of each query.
    queried_types: Vec<String>,
}

fn parse(body: &str) -> Result<SoapRequest, String> {
    let mut reader = Reader::from_str(body);
    reader.config_mut().trim_text(true);
    let mut request = SoapRequest::default();
    let mut path: Vec<String> = Vec::new();
    let mut in_body = false;
    loop {
        match reader.read_event().map_err(|e| format!("malformed XML: {e}"))? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if in_body && request.operation.is_empty() {
                    request.operation = name.clone();
                }
                if name == "Body" {
                    in_body = true;
                }
                path.push(name);
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if in_body && request.operation.is_empty() {
                    request.operation = name;
                }
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| format!("malformed XML: {e}"))?.into_owned();
                let text = quick_xml::escape::unescape(&text).map_err(|e| format!("malformed XML: {e}"))?.into_owned();
                match path.last().map(String::as_str) {
                    Some("sessionId") => request.session_id = text,
                    Some("type") if path.iter().any(|p| p == "queries") => request.queried_types.push(text),
                    Some("type") => request.metadata_type = text,
                    Some("fullNames") => request.full_names.push(text),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !in_body {
        return Err("the request is not a SOAP envelope with a Body".into());
    }
    Ok(request)
}

async fn soap(State(sim): State<Arc<Sim>>, body: String) -> Response {
    let request = match parse(&body) {
        Ok(r) => r,
        Err(e) => return fault("INVALID_XML", &e),
    };
    let user = {
        let org = sim.org();
        sim.sessions().validate(&request.session_id, now_ms(), |u| org.user_can_sign_in(u)).ok().map(|t| t.user)
    };
    let Some(user) = user else {
        return fault("INVALID_SESSION_ID", "Invalid Session ID found in SessionHeader: Illegal Session");
    };
    if !sim.org().user_can_use_api(&user, now_ms()) {
        return fault("API_CURRENTLY_DISABLED", "API is disabled for this User");
    }
    if !sim.spend_api_call() {
        return fault("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.");
    }
    let org = sim.org();
    if !org.user_has_permission(&user, "PermissionsCustomizeApplication", now_ms()) {
        return fault("INSUFFICIENT_ACCESS", "reading metadata needs the Customize Application permission");
    }
    match request.operation.as_str() {
        "readMetadata" => read_metadata(&org, &request),
        "describeMetadata" => describe_metadata(),
        "listMetadata" => list_metadata(&org, &request),
        other => fault(
            "UNKNOWN_OPERATION",
            &format!("sfsim emulates readMetadata, describeMetadata and listMetadata, not {other}"),
        ),
    }
}

/// The metadata types sfsim knows: (xmlName, directoryName, suffix, inFolder).
const TYPES: [(&str, &str, &str, bool); 6] = [
    ("ConnectedApp", "connectedApps", "connectedApp", false),
    ("PermissionSet", "permissionsets", "permissionset", false),
    ("Profile", "profiles", "profile", false),
    ("Report", "reports", "report", true),
    ("Settings", "settings", "settings", false),
    ("TransactionSecurityPolicy", "transactionSecurityPolicies", "transactionSecurityPolicy", false),
];

fn describe_metadata() -> Response {
    let mut objects = String::new();
    for (name, directory, suffix, in_folder) in TYPES {
        objects.push_str(&format!(
            "<metadataObjects><directoryName>{directory}</directoryName><inFolder>{in_folder}</inFolder><metaFile>false</metaFile><suffix>{suffix}</suffix><xmlName>{name}</xmlName></metadataObjects>"
        ));
    }
    xml(
        StatusCode::OK,
        format!(
            "<describeMetadataResponse><result>{objects}<organizationNamespace></organizationNamespace><partialSaveAllowed>true</partialSaveAllowed><testRequired>false</testRequired></result></describeMetadataResponse>"
        ),
    )
}

/// One `FileProperties` per component of the queried types (Report lists none: its
/// components are listed per folder, and sfsim's reports live in no folder).
fn list_metadata(org: &crate::org::Org, request: &SoapRequest) -> Response {
    let created =
        org.table("Organization").rows().next().map(|r| org.table("Organization").value(r, "CreatedDate").to_json());
    let created = created.and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let admin = org.service_user.to_string();
    let mut results = String::new();
    for kind in &request.queried_types {
        let (directory, suffix) = match TYPES.iter().find(|t| t.0 == kind.as_str()) {
            Some((_, d, s, _)) => (*d, *s),
            None if kind == "RealTimeEventSettings" => ("settings", "settings"),
            None => return fault("INVALID_TYPE", &format!("Unknown type name '{kind}' specified in listMetadata")),
        };
        let components: Vec<(String, String)> = match kind.as_str() {
            "RealTimeEventSettings" => vec![("RealTimeEvent".into(), String::new())],
            "Settings" => vec![("RealTimeEvent".into(), String::new())],
            "ConnectedApp" => vec![("Tripline".into(), String::new())],
            "Profile" => {
                let t = org.table("Profile");
                t.rows().map(|r| (string(t.value(r, "Name")), string(t.value(r, "Id")))).collect()
            }
            "PermissionSet" => {
                let t = org.table("PermissionSet");
                t.rows()
                    .filter(|r| t.value(r, "IsOwnedByProfile") != &crate::model::Value::Bool(true))
                    .filter(|r| t.value(r, "Type").as_str() != Some("Group"))
                    .map(|r| (string(t.value(r, "Name")), string(t.value(r, "Id"))))
                    .collect()
            }
            _ => Vec::new(),
        };
        for (name, id) in components {
            results.push_str(&format!(
                "<result><createdById>{admin}</createdById><createdByName>sfsim</createdByName><createdDate>{created}</createdDate><fileName>{directory}/{file}.{suffix}</fileName><fullName>{name}</fullName><id>{id}</id><lastModifiedById>{admin}</lastModifiedById><lastModifiedByName>sfsim</lastModifiedByName><lastModifiedDate>{created}</lastModifiedDate><manageableState>unmanaged</manageableState><type>{kind}</type></result>",
                name = escape(&name),
                file = escape(&name),
                id = escape(&id),
                kind = escape(kind),
            ));
        }
    }
    xml(StatusCode::OK, format!("<listMetadataResponse>{results}</listMetadataResponse>"))
}

fn string(v: &crate::model::Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn read_metadata(org: &crate::org::Org, request: &SoapRequest) -> Response {
    if request.metadata_type != "RealTimeEventSettings" {
        return fault("INVALID_TYPE", &format!("sfsim does not emulate metadata type {:?}", request.metadata_type));
    }
    let mut records = String::new();
    for name in &request.full_names {
        if name != "RealTimeEvent" {
            // A name that does not exist is not an error: Salesforce answers a nil
            // record in its place.
            records.push_str("<records xsi:nil=\"true\"/>");
            continue;
        }
        records.push_str("<records xsi:type=\"RealTimeEventSettings\"><fullName>RealTimeEvent</fullName>");
        for e in EventType::ALL {
            for (entity, on) in
                [(e.stream_entity(), org.settings.streaming(e)), (e.storage_entity(), org.settings.storing(e))]
            {
                records.push_str(&format!(
                    "<realTimeEvents><entityName>{entity}</entityName><isEnabled>{on}</isEnabled></realTimeEvents>"
                ));
            }
        }
        records.push_str("</records>");
    }
    xml(StatusCode::OK, format!("<readMetadataResponse><result>{records}</result></readMetadataResponse>"))
}
