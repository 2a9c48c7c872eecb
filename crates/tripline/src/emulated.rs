//! The emulated org (sfsim) as a data connection: the app settings that reach it,
//! and authorization through its real sign-in and consent pages as the service
//! account, with no browser. Used by `tripline demo --auto-connect`, the tests and
//! the benchmarks.

use salesforce::login::LoginHost;
use salesforce::oauth::MONITORING_SCOPE;
use salesforce::pubsub::Endpoint;

use crate::connection::ConnectionRecord;
use crate::connector::{Error, NewConnection, SalesforceApp, finish_authorization};
use crate::store::Store;

/// The connected app and endpoints of a running sfsim, with its origin allowed.
pub fn app(org: &sfsim::Running, redirect_uri: &str) -> SalesforceApp {
    let (client_id, client_secret) = org.connected_app();
    SalesforceApp {
        client_id,
        client_secret,
        redirect_uri: redirect_uri.into(),
        pubsub: Endpoint { url: format!("http://{}", org.grpc_addr), ca_pem: None },
        allowed_origins: vec![org.base_url().to_owned()],
    }
}

/// Signs in at the org as its service account, clicks Allow, and completes the
/// authorization of `new` as Tripline's callback would.
pub async fn authorize(
    store: &dyn Store,
    app: &SalesforceApp,
    org: &sfsim::Running,
    new: &NewConnection,
) -> Result<ConnectionRecord, Error> {
    let login = LoginHost::parse(org.base_url(), &app.allowed_origins)?;
    let start = app.oauth(login.clone(), reqwest::Client::new()).start(MONITORING_SCOPE);
    let (user, password) = org.service_account();
    let callback = sfsim::browser::sign_in_and_allow(&start.url, &user, &password)
        .await
        .map_err(|e| Error::Authorization(format!("signing in at the emulated org: {e:#}")))?;
    let state = callback.state.unwrap_or_default();
    finish_authorization(store, app, &login, new, &start, &state, &callback.code).await
}
