//! OAuth tokens, authorization codes and browser sign-ins, with Salesforce's rules:
//! access tokens end after the session timeout or on revocation, at most five live
//! access tokens per user per connected app (a sixth revokes the oldest), and inactive
//! or frozen users can neither get nor use tokens.

use std::collections::HashMap;

use sfwire::id::SfId;

use crate::rng::{ALNUM, Rng};

#[derive(Debug, Clone)]
pub struct AccessToken {
    pub user: SfId,
    pub client_id: String,
    pub issued_ms: i64,
    /// Issue order: several tokens can share a millisecond.
    pub serial: u64,
    pub refresh: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub user: SfId,
    pub client_id: String,
    pub scope: String,
}

#[derive(Debug, Clone)]
pub struct AuthCode {
    pub user: SfId,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub issued_ms: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Unknown,
    Expired,
    UserCannotSignIn,
}

/// Most live access tokens per user per connected app.
pub const MAX_TOKENS_PER_USER_APP: usize = 5;
/// An authorization code is good for this long, once.
const CODE_LIFETIME_MS: i64 = 15 * 60 * 1000;

pub struct Sessions {
    pub access: HashMap<String, AccessToken>,
    pub refresh: HashMap<String, RefreshToken>,
    codes: HashMap<String, AuthCode>,
    /// Browser sign-ins on the authorize page: cookie value → user.
    browser: HashMap<String, SfId>,
    rng: Rng,
    issued: u64,
    pub timeout_ms: i64,
    org_id: SfId,
}

impl Sessions {
    pub fn new(seed: u64, org_id: SfId, timeout_ms: i64) -> Sessions {
        Sessions {
            access: HashMap::new(),
            refresh: HashMap::new(),
            codes: HashMap::new(),
            browser: HashMap::new(),
            rng: Rng::derive(seed ^ crate::clock::now_ms() as u64, "sessions"),
            issued: 0,
            timeout_ms,
            org_id,
        }
    }

    /// Issues an access token (`00D...!...`, as Salesforce's look), revoking the
    /// oldest if the user already has five for this app.
    pub fn issue_access(&mut self, user: &SfId, client_id: &str, refresh: Option<String>, now_ms: i64) -> String {
        let mut live: Vec<(u64, String)> = self
            .access
            .iter()
            .filter(|(_, t)| &t.user == user && t.client_id == client_id)
            .map(|(k, t)| (t.serial, k.clone()))
            .collect();
        live.sort();
        while live.len() >= MAX_TOKENS_PER_USER_APP {
            let (_, oldest) = live.remove(0);
            self.access.remove(&oldest);
        }
        let token = format!("{}!{}", self.org_id.short(), self.rng.token(ALNUM, 96));
        self.issued += 1;
        let serial = self.issued;
        self.access.insert(
            token.clone(),
            AccessToken { user: user.clone(), client_id: client_id.into(), issued_ms: now_ms, serial, refresh },
        );
        token
    }

    pub fn issue_refresh(&mut self, user: &SfId, client_id: &str, scope: &str) -> String {
        let token = format!("5Aep861{}", self.rng.token(ALNUM, 80));
        self.refresh.insert(
            token.clone(),
            RefreshToken { user: user.clone(), client_id: client_id.into(), scope: scope.into() },
        );
        token
    }

    pub fn issue_code(&mut self, code: AuthCode) -> String {
        let value = format!("aPrx{}", self.rng.token(ALNUM, 60));
        self.codes.insert(value.clone(), code);
        value
    }

    /// Takes a code (codes are single-use); `None` if unknown or older than 15 minutes.
    pub fn take_code(&mut self, code: &str, now_ms: i64) -> Option<AuthCode> {
        self.codes.remove(code).filter(|c| now_ms - c.issued_ms <= CODE_LIFETIME_MS)
    }

    /// The user behind a live access token. `can_sign_in` says whether a user is
    /// still active and not frozen.
    pub fn validate(
        &mut self,
        token: &str,
        now_ms: i64,
        can_sign_in: impl Fn(&SfId) -> bool,
    ) -> Result<AccessToken, TokenError> {
        let t = self.access.get(token).ok_or(TokenError::Unknown)?;
        if now_ms - t.issued_ms > self.timeout_ms {
            self.access.remove(token);
            return Err(TokenError::Expired);
        }
        if !can_sign_in(&t.user) {
            return Err(TokenError::UserCannotSignIn);
        }
        Ok(t.clone())
    }

    /// Revokes an access or refresh token; revoking a refresh token also revokes the
    /// access tokens issued from it. False if the token is unknown.
    pub fn revoke(&mut self, token: &str) -> bool {
        if self.access.remove(token).is_some() {
            return true;
        }
        if self.refresh.remove(token).is_some() {
            self.access.retain(|_, t| t.refresh.as_deref() != Some(token));
            return true;
        }
        false
    }

    /// Revokes every token of a user (all users when `None`). Returns how many.
    pub fn revoke_user(&mut self, user: Option<&SfId>) -> usize {
        let before = self.access.len() + self.refresh.len();
        self.access.retain(|_, t| user.is_some_and(|u| &t.user != u));
        self.refresh.retain(|_, t| user.is_some_and(|u| &t.user != u));
        before - self.access.len() - self.refresh.len()
    }

    /// Ends access sessions as a session timeout would (refresh tokens stay valid).
    pub fn expire_access(&mut self, user: Option<&SfId>) -> usize {
        let before = self.access.len();
        self.access.retain(|_, t| user.is_some_and(|u| &t.user != u));
        before - self.access.len()
    }

    pub fn browser_sign_in(&mut self, user: &SfId) -> String {
        let cookie = self.rng.token(ALNUM, 40);
        self.browser.insert(cookie.clone(), user.clone());
        cookie
    }

    pub fn browser_user(&self, cookie: &str) -> Option<SfId> {
        self.browser.get(cookie).cloned()
    }
}
