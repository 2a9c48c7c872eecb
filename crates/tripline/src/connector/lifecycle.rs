//! The states a person puts a connection in: Paused (not monitored until resumed) and
//! Deauthorized (its Salesforce tokens revoked; a new authorization is needed).
//! Initializing, Monitoring and Error are set by the connector itself.

use salesforce::login::LoginHost;

use super::Error;
use crate::connection::{ConnectionStatus, StatusDetail};
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
