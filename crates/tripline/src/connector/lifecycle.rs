//! What a person does to a connection: pause it (not monitored until resumed),
//! deauthorize it (its Salesforce tokens revoked; a new authorization is needed),
//! change its scope, remove it. Initializing, Monitoring and Error are set by the
//! connector itself.

use std::sync::Arc;

use salesforce::login::LoginHost;

use super::scope_csv::{CsvKind, ScopeCsv};
use super::{Error, SalesforceApp};
use crate::connection::{ConnectionStatus, ScopeMode, StatusDetail};
use crate::store::Store;

pub fn pause(store: &dyn Store, id: &str, actor: &str) -> Result<(), Error> {
    let record = store.connection(id)?;
    if record.status == ConnectionStatus::Deauthorized {
        return Err(Error::Refused(format!("{:?} is deauthorized: authorize it again instead", record.display_name)));
    }
    store.set_status(id, ConnectionStatus::Paused, None, actor)?;
    store.audit(actor, "connection.pause", id)?;
    Ok(())
}

pub fn resume(store: &dyn Store, id: &str, actor: &str) -> Result<(), Error> {
    let record = store.connection(id)?;
    if record.status != ConnectionStatus::Paused {
        return Err(Error::Refused(format!("{:?} is not paused (it is {})", record.display_name, record.status)));
    }
    // The connector sets Monitoring or Error once it has checked the org.
    store.set_status(id, ConnectionStatus::Initializing, None, actor)?;
    store.audit(actor, "connection.resume", id)?;
    Ok(())
}

/// Revokes the refresh token at Salesforce (which ends its sessions too) and marks the
/// connection Deauthorized. `allowed` lists non-Salesforce origins (sfsim).
pub async fn deauthorize(store: &dyn Store, id: &str, allowed: &[String], actor: &str) -> Result<(), Error> {
    let record = store.connection(id)?;
    let login = LoginHost::parse(&record.login_url, allowed)?;
    // Revocation needs no client credentials, only the token.
    let oauth = salesforce::oauth::OAuthClient::new(login, "", "", "", reqwest::Client::new());
    if let Err(e) = oauth.revoke(&record.refresh_token).await {
        // An already revoked token is the state we want; anything else is reported.
        if !matches!(&e, salesforce::Error::Api { status: 400, .. }) {
            return Err(e.into());
        }
    }
    let detail = StatusDetail { problems: Vec::new(), since: chrono::Utc::now().timestamp_millis() };
    store.set_status(id, ConnectionStatus::Deauthorized, Some(&detail), actor)?;
    store.audit(actor, "connection.deauthorize", id)?;
    Ok(())
}

/// Gives a connection a new scope, checked against the org first (entries the org
/// does not have are refused by line, and nothing changes). The connector applies it
/// at its next scan: restart it, or rescan.
pub async fn change_scope(
    store: &Arc<dyn Store>,
    app: &SalesforceApp,
    id: &str,
    scope: &ScopeMode,
    lines: Option<Vec<usize>>,
    actor: &str,
) -> Result<(), Error> {
    let record = store.connection(id)?;
    if record.status == ConnectionStatus::Deauthorized {
        return Err(Error::Refused(format!("{:?} is deauthorized: authorize it again first", record.display_name)));
    }
    let tokens = super::StoredTokens { store: store.clone(), connection_id: record.id.clone() };
    let api = super::api_for(&record, app, reqwest::Client::new())?.with_token_keeper(Box::new(tokens));
    let unknown = super::scope::unknown_entries(&api, scope).await?;
    let kind = match scope {
        ScopeMode::All => None,
        ScopeMode::Users(_) => Some(CsvKind::Users),
        ScopeMode::Groups(_) => Some(CsvKind::Groups),
    };
    if let Some(kind) = kind {
        let entries = scope.entries();
        let lines = lines.unwrap_or_else(|| (1..=entries.len()).collect());
        let csv = ScopeCsv { kind, entries: lines.into_iter().zip(entries.iter().cloned()).collect() };
        csv.reject_unknown(&unknown)?;
    }
    store.set_scope(id, scope, actor)?;
    Ok(())
}

/// Removes a deauthorized connection (its downloads stay searchable).
pub fn remove(store: &dyn Store, id: &str, actor: &str) -> Result<(), Error> {
    let record = store.connection(id)?;
    if record.status != ConnectionStatus::Deauthorized {
        return Err(Error::Refused(format!(
            "{:?} is monitored: deauthorize it before removing it",
            record.display_name
        )));
    }
    store.delete_connection(id, actor)?;
    Ok(())
}
