//! Who may use Tripline and what they did: API tokens (kept as hashes, with expiry
//! and revocation) and the audit log of every change a person or token made.

use serde::{Deserialize, Serialize};

/// An API token as stored: never the token itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl ApiToken {
    /// Usable now: not revoked and not expired.
    pub fn is_valid(&self, now_ms: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| now_ms < at)
    }
}

/// A token name: what it is for ("siem"), 1 to 100 printable characters.
pub fn check_token_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err("a token name is 1 to 100 printable characters".into());
    }
    Ok(name)
}

/// One change, by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: i64,
    /// `cli (alice)`, `token siem`, ...
    pub actor: String,
    /// What was done: `api-token.create`, `api-token.revoke`, `connection.pause`, ...
    pub action: String,
    /// What it was done to (a token name, a connection id).
    pub target: String,
}
