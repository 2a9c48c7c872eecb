//! The people behind events: Salesforce users as Tripline knows them, and the UI
//! sessions their login events open (how exports are attributed to a person).

use serde::{Deserialize, Serialize};
use sfwire::id::SfId;

/// A Salesforce user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesforceUser {
    pub user_id: SfId,
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// A UI session learned from a login event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub session_key: String,
    pub login_key: Option<String>,
    pub user_id: SfId,
    pub username: Option<String>,
    pub source_ip: Option<String>,
    pub browser: Option<String>,
    pub platform: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub login_at: i64,
}

/// A login or logout event.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginRecord {
    pub event_identifier: String,
    pub logout: bool,
    pub success: bool,
    pub status: Option<String>,
    pub session: Session,
}
