//! The SOAP API's `login()` (partner `/services/Soap/u/{version}` and enterprise
//! `/c/`): a username and password for a session id usable with every other API, as
//! some clients still sign in (Salesforce is retiring it, but it answers until then).
//! A wrong password, or a user who cannot sign in (inactive, frozen), is the
//! `INVALID_LOGIN` fault.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use quick_xml::Reader;
use quick_xml::events::Event;

use crate::clock::now_ms;
use crate::oauth::escape;
use crate::sim::Sim;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new().route("/services/Soap/u/{version}", post(login)).route("/services/Soap/c/{version}", post(login))
}

const ENVELOPE_OPEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body>"#;
const ENVELOPE_CLOSE: &str = "</soapenv:Body></soapenv:Envelope>";

fn xml(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml; charset=utf-8")], format!("{ENVELOPE_OPEN}{body}{ENVELOPE_CLOSE}"))
        .into_response()
}

/// A login fault, with the `LoginFault` detail clients read the code from.
fn fault(code: &str, message: &str) -> Response {
    let message = escape(message);
    xml(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "<soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {message}</faultstring><detail><sf:LoginFault xsi:type=\"sf:LoginFault\"><sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{message}</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault>"
        ),
    )
}

/// The operation and the text of `username` and `password` in the body.
fn parse(body: &str) -> Result<(String, String, String), String> {
    let mut reader = Reader::from_str(body);
    reader.config_mut().trim_text(true);
    let (mut in_body, mut operation, mut current) = (false, String::new(), String::new());
    let (mut username, mut password) = (String::new(), String::new());
    loop {
        match reader.read_event().map_err(|e| format!("malformed XML: {e}"))? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if in_body && operation.is_empty() {
                    operation = name.clone();
                }
                in_body |= name == "Body";
                current = name;
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| format!("malformed XML: {e}"))?;
                let text = quick_xml::escape::unescape(&text).map_err(|e| format!("malformed XML: {e}"))?;
                match current.as_str() {
                    "username" => username.push_str(&text),
                    "password" => password.push_str(&text),
                    _ => {}
                }
            }
            Event::End(_) => current.clear(),
            Event::Eof => break,
            _ => {}
        }
    }
    Ok((operation, username, password))
}

async fn login(State(sim): State<Arc<Sim>>, Path(version): Path<String>, body: String) -> Response {
    let (operation, username, password) = match parse(&body) {
        Ok(parsed) => parsed,
        Err(m) => return fault("INVALID_SOAP", &m),
    };
    if operation != "login" {
        return fault("INVALID_OPERATION", &format!("{operation:?} needs a session: sign in with login() first"));
    }
    let user = {
        let org = sim.org();
        org.find_user_by_username(&username)
            .filter(|u| org.passwords.get(u.as_str()).is_some_and(|p| *p == password) && org.user_can_sign_in(u))
    };
    let Some(user) = user else {
        return fault("INVALID_LOGIN", "Invalid username, password, security token; or user locked out.");
    };
    if !sim.org().user_can_use_api(&user, now_ms()) {
        return fault("API_CURRENTLY_DISABLED", "API is disabled for this User");
    }
    let session = sim.sessions().issue_access(&user, "soap-login", None, now_ms());
    let org = sim.org();
    let version = escape(version.trim_end_matches('/'));
    let base = &sim.base_url;
    let field = |name: &str| escape(org.user_field(&user, name).as_str().unwrap_or_default());
    xml(
        StatusCode::OK,
        format!(
            "<loginResponse><result><metadataServerUrl>{base}/services/Soap/m/{version}/{org_id}</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>false</sandbox><serverUrl>{base}/services/Soap/u/{version}/{org_id}</serverUrl><sessionId>{session}</sessionId><userId>{user}</userId><userInfo><organizationId>{org_id}</organizationId><organizationName>{org_name}</organizationName><sessionSecondsValid>{valid}</sessionSecondsValid><userEmail>{email}</userEmail><userFullName>{full_name}</userFullName><userId>{user}</userId><userName>{username}</userName></userInfo></result></loginResponse>",
            org_id = org.id,
            org_name = escape(&org.name),
            session = escape(&session),
            valid = sim.config.session_timeout.as_secs(),
            email = field("Email"),
            full_name = field("Name"),
            username = escape(&org.username(&user)),
        ),
    )
}
