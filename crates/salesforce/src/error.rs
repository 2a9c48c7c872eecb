//! What can go wrong talking to Salesforce, classified by what the caller should do.

/// A failed Salesforce call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token endpoint refused (e.g. `invalid_grant`): a person must authorize again.
    #[error("Salesforce refused the authorization ({error}): {description}")]
    Authorization { error: String, description: String },
    /// 401 `INVALID_SESSION_ID` even after refreshing the token.
    #[error("the Salesforce session is invalid or expired")]
    InvalidSession,
    /// 403 `REQUEST_LIMIT_EXCEEDED`: back off until the daily allowance recovers.
    #[error("the org's daily API request limit is exhausted: {0}")]
    ApiLimit(String),
    /// 403 `REQUEST_LIMIT_EXCEEDED` for requests at once (`ConcurrentPerOrgLongTxn`):
    /// others hold the org's slots for long-running requests; retry shortly.
    #[error("the org serves too many long-running requests at once: {0}")]
    Concurrency(String),
    /// `invalid_grant` / `ip restricted`: this server's address is outside the ranges
    /// the connected app (or the user's profile) allows. Fixed in Salesforce, the
    /// same authorization works again.
    #[error("Salesforce refuses sign-in from this server's IP address ({0})")]
    IpRestricted(String),
    /// Any other error Salesforce reported, with its code.
    #[error("Salesforce error {code} (HTTP {status}): {message}")]
    Api { status: u16, code: String, message: String },
    /// The network, TLS or HTTP layer failed: retry later.
    #[error("could not reach Salesforce: {0}")]
    Network(String),
    /// Salesforce answered something we cannot read.
    #[error("unexpected response from Salesforce: {0}")]
    Protocol(String),
}

impl Error {
    /// Errors that a person must fix (re-authorize); retrying alone will not help.
    pub fn needs_person(&self) -> bool {
        matches!(self, Error::Authorization { .. })
    }

    /// The Salesforce error code, when there is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Authorization { error, .. } => Some(error),
            Error::Api { code, .. } => Some(code),
            Error::InvalidSession => Some("INVALID_SESSION_ID"),
            Error::ApiLimit(_) | Error::Concurrency(_) => Some("REQUEST_LIMIT_EXCEEDED"),
            Error::IpRestricted(_) => Some("invalid_grant"),
            _ => None,
        }
    }
}

/// A `REQUEST_LIMIT_EXCEEDED` by its message: the concurrent-request limit or the
/// daily allowance.
pub(crate) fn request_limit(message: String) -> Error {
    if message.contains("ConcurrentPerOrg") { Error::Concurrency(message) } else { Error::ApiLimit(message) }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Error::Network(error_chain(&e))
    }
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
