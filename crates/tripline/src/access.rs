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

crate::named::named_enum! {
    /// What a console account may do. Each role includes the ones below it.
    pub enum Role ("role") {
        /// Dashboards only.
        Viewer = "viewer",
        /// Also Forensic Search, monitored users, exports.
        Analyst = "analyst",
        /// Also data connections, accounts, API tokens, settings, the audit log.
        Admin = "admin",
    }
}

impl Role {
    /// Holds at least the rights of `needed`.
    pub fn includes(self, needed: Role) -> bool {
        self >= needed
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Viewer => "Viewer",
            Role::Analyst => "Analyst",
            Role::Admin => "Admin",
        }
    }
}

/// A person who signs in to the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: i64,
    /// Unique without regard to case.
    pub username: String,
    pub role: Role,
    pub created_at: i64,
}

/// An account's username: 1 to 100 characters, no spaces or control characters.
pub fn check_username(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("a username is 1 to 100 characters without spaces".into());
    }
    Ok(name)
}

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD: usize = 12;

/// An argon2id hash (PHC string, random salt) of a password of at least
/// [`MIN_PASSWORD`] characters.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    if password.chars().count() < MIN_PASSWORD {
        return Err(format!("a password has at least {MIN_PASSWORD} characters"));
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing the password: {e}"))
}

/// Does `password` match the stored hash? A hash that cannot be read matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .is_ok_and(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A random password for a first admin (about 120 bits, easy to copy).
pub fn generate_password() -> String {
    salesforce::oauth::random_token(15)
}

/// A signed-in console session as stored (the cookie holds a secret whose hash is
/// the key).
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub account: Account,
    /// The token every form of this session must carry.
    pub csrf: String,
    pub expires_at: i64,
}
