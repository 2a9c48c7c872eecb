//! One connection's API session: a single access token reused by every call and
//! refreshed when Salesforce says it expired; REST and SOQL with paging; the Metadata
//! API read of Event Manager's settings.

use std::sync::RwLock;

use quick_xml::Reader;
use quick_xml::events::Event;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, request_limit};
use crate::oauth::{OAuthClient, Tokens};

/// The API version Tripline speaks.
pub const API_VERSION: &str = "v62.0";

/// The live access token and where to use it.
#[derive(Debug, Clone)]
pub struct Session {
    pub instance_url: String,
    pub access_token: String,
    pub org_id: String,
    pub user_id: String,
}

impl Session {
    fn from_tokens(tokens: &Tokens) -> Result<Session, Error> {
        let (org, user) =
            tokens.org_and_user().ok_or_else(|| Error::Protocol(format!("identity URL {:?}", tokens.id)))?;
        Ok(Session {
            instance_url: tokens.instance_url.trim_end_matches('/').to_owned(),
            access_token: tokens.access_token.clone(),
            org_id: org.to_owned(),
            user_id: user.to_owned(),
        })
    }
}

/// Event Manager's switch for one entity (`ReportEventStream`: streaming,
/// `ReportEvent`: storing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealTimeEvent {
    pub entity_name: String,
    pub enabled: bool,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    message: String,
    #[serde(rename = "errorCode")]
    error_code: String,
}

/// Where a connection's tokens are kept beyond this session (a database).
pub trait TokenKeeper: Send + Sync {
    /// A refreshed session, with the new refresh token when Salesforce rotated it (the
    /// one used is then spent: keep the new one before anything else).
    fn save(&self, session: &Session, rotated: Option<&str>);
    /// The refresh token kept now: another session of the same connection may have
    /// rotated the one this session holds.
    fn refresh_token(&self) -> Option<String>;
}

/// A connection's authenticated access to one org.
pub struct SalesforceApi {
    oauth: OAuthClient,
    refresh_token: RwLock<String>,
    keeper: Option<Box<dyn TokenKeeper>>,
    session: RwLock<Session>,
    refreshing: tokio::sync::Mutex<()>,
    allowed_origins: Vec<String>,
    http: reqwest::Client,
}

impl SalesforceApi {
    /// Starts from a token response that carried a refresh token.
    pub fn new(
        oauth: OAuthClient,
        tokens: &Tokens,
        allowed_origins: Vec<String>,
        http: reqwest::Client,
    ) -> Result<SalesforceApi, Error> {
        let refresh_token = tokens.refresh_token.clone().ok_or_else(|| Error::Authorization {
            error: "no_refresh_token".into(),
            description: "the connected app did not grant refresh_token; add the refresh_token scope".into(),
        })?;
        SalesforceApi::with_refresh_token(oauth, refresh_token, Session::from_tokens(tokens)?, allowed_origins, http)
    }

    /// Resumes from a stored refresh token and the last session.
    pub fn with_refresh_token(
        oauth: OAuthClient,
        refresh_token: String,
        session: Session,
        allowed_origins: Vec<String>,
        http: reqwest::Client,
    ) -> Result<SalesforceApi, Error> {
        if !crate::login::instance_url_ok(&session.instance_url, &allowed_origins) {
            return Err(Error::Protocol(format!("instance URL {:?} is not a Salesforce host", session.instance_url)));
        }
        Ok(SalesforceApi {
            oauth,
            refresh_token: RwLock::new(refresh_token),
            keeper: None,
            session: RwLock::new(session),
            refreshing: tokio::sync::Mutex::new(()),
            allowed_origins,
            http,
        })
    }

    pub fn session(&self) -> Session {
        self.session.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps each refreshed session in `keeper` before it is used, and asks it for the
    /// refresh token when Salesforce refuses the one held.
    pub fn with_token_keeper(mut self, keeper: Box<dyn TokenKeeper>) -> SalesforceApi {
        self.keeper = Some(keeper);
        self
    }

    pub fn refresh_token(&self) -> String {
        self.refresh_token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the keeper holds another refresh token than `used` (taken up if so).
    fn kept_elsewhere(&self, used: &str) -> bool {
        let Some(kept) = self.keeper.as_ref().and_then(|k| k.refresh_token()).filter(|k| k != used) else {
            return false;
        };
        *self.refresh_token.write().unwrap_or_else(|e| e.into_inner()) = kept;
        true
    }

    /// Replaces `stale` with a new access token, once even when many callers saw it fail.
    pub(crate) async fn refresh_session(&self, stale: &str) -> Result<Session, Error> {
        let _one_at_a_time = self.refreshing.lock().await;
        let current = self.session();
        if current.access_token != stale {
            return Ok(current);
        }
        let mut used = self.refresh_token();
        let tokens = match self.oauth.refresh(&used).await {
            Err(Error::Authorization { .. }) if self.kept_elsewhere(&used) => {
                used = self.refresh_token();
                self.oauth.refresh(&used).await?
            }
            answer => answer?,
        };
        // With rotation the used token is spent now: its successor is kept even if the
        // rest of the answer cannot be used.
        let rotated = tokens.refresh_token.as_deref().filter(|t| *t != used);
        if let Some(next) = rotated {
            *self.refresh_token.write().unwrap_or_else(|e| e.into_inner()) = next.to_owned();
        }
        let session = Session::from_tokens(&tokens)?;
        if let Some(keeper) = &self.keeper {
            keeper.save(&session, rotated);
        }
        if !crate::login::instance_url_ok(&session.instance_url, &self.allowed_origins) {
            return Err(Error::Protocol(format!("instance URL {:?} is not a Salesforce host", session.instance_url)));
        }
        *self.session.write().unwrap_or_else(|e| e.into_inner()) = session.clone();
        tracing::debug!("refreshed the Salesforce access token");
        Ok(session)
    }

    /// Whether the instance answers at all: any answer to `GET /services/data/` (the
    /// API versions, which need no session and count against no limit).
    pub async fn answers(&self) -> Result<(), Error> {
        self.http.get(format!("{}/services/data/", self.session().instance_url)).send().await?;
        Ok(())
    }

    /// GET a REST path (`/services/data/...`), refreshing the token once on 401.
    pub(crate) async fn get_json(&self, path: &str) -> Result<Value, Error> {
        let mut session = self.session();
        for attempt in 0..2 {
            let response = self
                .http
                .get(format!("{}{path}", session.instance_url))
                .bearer_auth(&session.access_token)
                .send()
                .await?;
            let status = response.status();
            let body = response.bytes().await?;
            if status.is_success() {
                return serde_json::from_slice(&body).map_err(|e| Error::Protocol(format!("{path}: {e}")));
            }
            let (code, message) = match serde_json::from_slice::<Vec<ApiErrorBody>>(&body) {
                Ok(errors) if !errors.is_empty() => (errors[0].error_code.clone(), errors[0].message.clone()),
                _ => ("UNKNOWN".into(), String::from_utf8_lossy(&body).chars().take(300).collect()),
            };
            match (status.as_u16(), code.as_str()) {
                (401, _) if attempt == 0 => session = self.refresh_session(&session.access_token).await?,
                (401, _) => return Err(Error::InvalidSession),
                (_, "REQUEST_LIMIT_EXCEEDED") => return Err(request_limit(message)),
                (status, _) => return Err(Error::Api { status, code, message }),
            }
        }
        Err(Error::InvalidSession)
    }

    /// Runs a SOQL query and follows `nextRecordsUrl` to the last record.
    pub async fn query(&self, soql: &str) -> Result<Vec<Value>, Error> {
        let mut url = url::Url::parse("http://x/").expect("static");
        url.set_path(&format!("/services/data/{API_VERSION}/query"));
        url.query_pairs_mut().append_pair("q", soql);
        let mut path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
        let mut records = Vec::new();
        loop {
            let mut page = self.get_json(&path).await?;
            match page.get_mut("records").map(Value::take) {
                Some(Value::Array(batch)) => records.extend(batch),
                _ => return Err(Error::Protocol("a query response without records".into())),
            }
            if page.get("done").and_then(Value::as_bool).unwrap_or(true) {
                return Ok(records);
            }
            path = page
                .get("nextRecordsUrl")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::Protocol("done is false but there is no nextRecordsUrl".into()))?
                .to_owned();
        }
    }

    /// Reads `RealTimeEventSettings` through the Metadata API (needs "Customize
    /// Application" on the service account).
    pub async fn realtime_event_settings(&self) -> Result<Vec<RealTimeEvent>, Error> {
        let mut session = self.session();
        let version = API_VERSION.trim_start_matches('v');
        for attempt in 0..2 {
            let body = format!(
                r#"<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:met="http://soap.sforce.com/2006/04/metadata"><soapenv:Header><met:SessionHeader><met:sessionId>{}</met:sessionId></met:SessionHeader></soapenv:Header><soapenv:Body><met:readMetadata><met:type>RealTimeEventSettings</met:type><met:fullNames>RealTimeEvent</met:fullNames></met:readMetadata></soapenv:Body></soapenv:Envelope>"#,
                quick_xml::escape::escape(&session.access_token)
            );
            let response = self
                .http
                .post(format!("{}/services/Soap/m/{version}", session.instance_url))
                .header("Content-Type", "text/xml; charset=utf-8")
                .header("SOAPAction", "\"\"")
                .body(body)
                .send()
                .await?;
            let text = response.text().await?;
            let parsed = parse_settings(&text)?;
            match parsed {
                Ok(events) => return Ok(events),
                Err((code, _)) if code.ends_with("INVALID_SESSION_ID") && attempt == 0 => {
                    session = self.refresh_session(&session.access_token).await?;
                }
                Err((code, message)) => {
                    let code = code.trim_start_matches("sf:").to_owned();
                    return Err(match code.as_str() {
                        "INVALID_SESSION_ID" => Error::InvalidSession,
                        "REQUEST_LIMIT_EXCEEDED" => request_limit(message),
                        _ => Error::Api { status: 500, code, message },
                    });
                }
            }
        }
        Err(Error::InvalidSession)
    }
}

type Fault = (String, String);

/// The `realTimeEvents` of a readMetadata response, or its SOAP fault.
fn parse_settings(xml: &str) -> Result<Result<Vec<RealTimeEvent>, Fault>, Error> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut path: Vec<String> = Vec::new();
    let mut events = Vec::new();
    let mut entity = String::new();
    let (mut fault_code, mut fault_text) = (None, String::new());
    loop {
        match reader.read_event().map_err(|e| Error::Protocol(format!("Metadata API XML: {e}")))? {
            Event::Start(e) => path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned()),
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| Error::Protocol(e.to_string()))?.into_owned();
                match path.last().map(String::as_str) {
                    Some("entityName") => entity = text,
                    Some("isEnabled") => {
                        events.push(RealTimeEvent { entity_name: std::mem::take(&mut entity), enabled: text == "true" })
                    }
                    Some("faultcode") => fault_code = Some(text),
                    Some("faultstring") => fault_text = text,
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(match fault_code {
        Some(code) => Err((code, fault_text)),
        None => Ok(events),
    })
}
