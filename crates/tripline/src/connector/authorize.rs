//! Adding a connection: the OAuth web server flow's end (code for tokens), the check
//! of the requested scope against the org, and the stored record. A scope that names
//! users or groups the org does not have is refused by CSV line, and nothing is kept.

use salesforce::api::SalesforceApi;
use salesforce::login::LoginHost;
use salesforce::oauth::{AuthorizationStart, Tokens};
use sfwire::id::SfId;

use super::scope;
use super::scope_csv::{CsvKind, ScopeCsv};
use super::{Error, SalesforceApp};
use crate::connection::{ConnectionRecord, ConnectionStatus, ScopeMode};
use crate::store::Store;

/// What a new connection is asked to be.
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub display_name: String,
    pub scope: ScopeMode,
    /// The CSV line of each scope entry, for error messages (default: 1, 2, ...).
    pub scope_lines: Option<Vec<usize>>,
    pub corporate_cidrs: Vec<String>,
}

impl NewConnection {
    /// A connection scoped by an uploaded CSV file.
    pub fn from_csv(display_name: &str, csv: &ScopeCsv, corporate_cidrs: Vec<String>) -> NewConnection {
        let values = csv.values();
        let scope = match csv.kind {
            CsvKind::Users => ScopeMode::Users(values),
            CsvKind::Groups => ScopeMode::Groups(values),
        };
        NewConnection {
            display_name: display_name.into(),
            scope,
            scope_lines: Some(csv.entries.iter().map(|(l, _)| *l).collect()),
            corporate_cidrs,
        }
    }

    /// The scope's entries with their lines (none for All).
    fn scope_csv(&self) -> Option<ScopeCsv> {
        let kind = match &self.scope {
            ScopeMode::All => return None,
            ScopeMode::Users(_) => CsvKind::Users,
            ScopeMode::Groups(_) => CsvKind::Groups,
        };
        let entries = self.scope.entries();
        let lines = self.scope_lines.clone().unwrap_or_else(|| (1..=entries.len()).collect());
        Some(ScopeCsv { kind, entries: lines.into_iter().zip(entries.iter().cloned()).collect() })
    }
}

/// Stores a connection authorized by `tokens` (from the web server flow).
pub(crate) fn save_authorized(
    store: &dyn Store,
    app: &SalesforceApp,
    login: &LoginHost,
    new: &NewConnection,
    tokens: &Tokens,
) -> Result<ConnectionRecord, Error> {
    let unusable = |what: &str| Error::Authorization(format!("Salesforce's answer cannot be used: {what}"));
    let (org_id, user_id) = tokens.org_and_user().ok_or_else(|| unusable("the identity URL names no org and user"))?;
    if !salesforce::login::instance_url_ok(&tokens.instance_url, &app.allowed_origins) {
        return Err(unusable(&format!("the instance URL {} is not a Salesforce host", tokens.instance_url)));
    }
    let record = ConnectionRecord {
        id: salesforce::oauth::random_token(12),
        display_name: new.display_name.clone(),
        org_id: SfId::parse(org_id).map_err(|e| unusable(&format!("the org id: {e}")))?,
        instance_url: tokens.instance_url.clone(),
        login_url: login.to_string(),
        scope: new.scope.clone(),
        corporate_cidrs: new.corporate_cidrs.clone(),
        refresh_token: tokens
            .refresh_token
            .clone()
            .ok_or_else(|| unusable("no refresh token (the connected app must grant refresh_token)"))?,
        access_token: tokens.access_token.clone(),
        service_user_id: SfId::parse(user_id).map_err(|e| unusable(&format!("the user id: {e}")))?,
        status: ConnectionStatus::Initializing,
        status_detail: None,
        created_at: chrono::Utc::now().timestamp_millis(),
        scope_scanned_at: None,
        reconciled_to: None,
    };
    store.create_connection(&record)?;
    store.set_status(&record.id, ConnectionStatus::Initializing, None, "authorization")?;
    Ok(record)
}

/// Completes a web server flow from its callback parameters and stores the connection.
pub async fn finish_authorization(
    store: &dyn Store,
    app: &SalesforceApp,
    login: &LoginHost,
    new: &NewConnection,
    start: &AuthorizationStart,
    state: &str,
    code: &str,
) -> Result<ConnectionRecord, Error> {
    let oauth = app.oauth(login.clone(), reqwest::Client::new());
    let tokens = oauth.finish(start, state, code).await?;
    let api = SalesforceApi::new(oauth.clone(), &tokens, app.allowed_origins.clone(), reqwest::Client::new())?;
    let unknown = scope::unknown_entries(&api, &new.scope).await?;
    if let Some(csv) = new.scope_csv()
        && let Err(refused) = csv.reject_unknown(&unknown)
    {
        // Nothing is kept: not even the new token.
        if let Err(e) = oauth.revoke(&api.refresh_token()).await {
            tracing::warn!("revoking the token of a refused authorization: {e}");
        }
        return Err(refused.into());
    }
    save_authorized(store, app, login, new, &tokens)
}

/// A sign-in at Salesforce as its callback answered it.
pub struct SignIn<'a> {
    pub login: &'a LoginHost,
    pub start: &'a AuthorizationStart,
    pub state: &'a str,
    pub code: &'a str,
}

/// Completes a new authorization of an existing connection (its token was revoked, or
/// it was deauthorized): the service account must sign in to the same org. The
/// connection keeps its id, history and checkpoints and starts Initializing.
pub async fn finish_reauthorization(
    store: &dyn Store,
    app: &SalesforceApp,
    id: &str,
    answer: SignIn<'_>,
    actor: &str,
) -> Result<(), Error> {
    let record = store.connection(id)?;
    let oauth = app.oauth(answer.login.clone(), reqwest::Client::new());
    let tokens = oauth.finish(answer.start, answer.state, answer.code).await?;
    let unusable = |what: String| Error::Authorization(format!("Salesforce's answer cannot be used: {what}"));
    let (org_id, _) = tokens.org_and_user().ok_or_else(|| unusable("the identity URL names no org and user".into()))?;
    let refresh = tokens
        .refresh_token
        .clone()
        .ok_or_else(|| unusable("no refresh token (the connected app must grant refresh_token)".into()))?;
    if !org_id.eq_ignore_ascii_case(record.org_id.as_str()) {
        if let Err(e) = oauth.revoke(&refresh).await {
            tracing::warn!("revoking the token of a refused reauthorization: {e}");
        }
        return Err(Error::Refused(format!(
            "That sign-in was to another org ({org_id}); \"{}\" monitors org {}. Sign in as the service account of that org.",
            record.display_name,
            record.org_id.as_str()
        )));
    }
    if !salesforce::login::instance_url_ok(&tokens.instance_url, &app.allowed_origins) {
        return Err(unusable(format!("the instance URL {} is not a Salesforce host", tokens.instance_url)));
    }
    store.reauthorize(id, &refresh, &tokens.access_token, &tokens.instance_url, actor)?;
    Ok(())
}
