//! What can stop a connector call, by cause; each cause maps to the problem the
//! connection shows (source and fix), so no caller has to guess from text.

use salesforce::error::error_chain;
use salesforce::login::LoginHostError;
use salesforce::pubsub::StreamError;

use super::health;
use super::scope_csv::CsvError;
use crate::connection::{Problem, ProblemSource};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A REST, SOQL, Metadata or OAuth call failed.
    #[error(transparent)]
    Salesforce(#[from] salesforce::Error),
    /// The connection's login host is not one this server may sign in at.
    #[error(transparent)]
    LoginHost(#[from] LoginHostError),
    #[error("the event stream: {0}")]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The uploaded scope names users or groups the org does not have.
    #[error(transparent)]
    Scope(#[from] CsvError),
    /// Salesforce's answer to the authorization cannot be used.
    #[error("{0}")]
    Authorization(String),
    /// A setting of the connection is not valid (a corporate IP range).
    #[error("{0}")]
    Setting(String),
    /// The connection is not in a state that allows this.
    #[error("{0}")]
    Refused(String),
    #[error("the HTTP client cannot be built")]
    Http(#[from] reqwest::Error),
}

impl Error {
    /// The problem this failure means for the connection, with what to do.
    pub fn problem(&self) -> Problem {
        match self {
            Error::Salesforce(e) => health::from_api_error(e),
            Error::Stream(e) => health::from_stream_error(e),
            Error::LoginHost(e) => Problem::error(
                ProblemSource::Configuration,
                format!(
                    "The connection's login host cannot be used: {e}. If it is an emulated org, start Tripline with --allow-origin and its URL."
                ),
            ),
            Error::Setting(m) => Problem::error(ProblemSource::Configuration, m.clone()),
            Error::Store(e) => Problem::error(
                ProblemSource::Storage,
                format!("Tripline's database failed ({}): check its disk and file permissions.", error_chain(e)),
            ),
            Error::Authorization(m) => Problem::error(ProblemSource::Token, m.clone()),
            Error::Scope(e) => Problem::error(ProblemSource::Configuration, e.to_string()),
            Error::Refused(m) => Problem::error(ProblemSource::Configuration, m.clone()),
            Error::Http(e) => Problem::error(ProblemSource::Network, format!("{e}")),
        }
    }
}
