//! OAuth tokens, authorization codes and browser sign-ins, with Salesforce's rules:
//! access tokens end after the session timeout or on revocation, at most five live
//! access tokens per user per connected app (a sixth revokes the oldest), and inactive
//! or frozen users can neither get nor use tokens. Refresh tokens follow the connected
//! app's policy ([`RefreshPolicy`]: valid until revoked, never usable, expiring after a
//! period or when unused, rotated on each use); an app can be held to IP ranges
//! ([`IpRange`]).

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
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
    /// When the first token of its line was issued (rotation keeps it).
    pub issued_ms: i64,
    pub last_used_ms: i64,
}

/// How long a connected app's refresh tokens stay usable (Salesforce's "Refresh Token
/// Policy"), and whether each use replaces the token (rotation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshPolicy {
    #[serde(default)]
    pub expiry: RefreshExpiry,
    #[serde(default)]
    pub rotate: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum RefreshExpiry {
    #[default]
    UntilRevoked,
    /// "Immediately expire refresh token": none can be used.
    Immediately,
    /// "Expire refresh token after": counted from the first issue.
    After { seconds: u64 },
    /// "Expire refresh token if not used for".
    IfUnused { seconds: u64 },
}

/// An allowed range of client addresses, first to last, as Salesforce's IP ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRange {
    pub start: IpAddr,
    pub end: IpAddr,
}

impl IpRange {
    pub fn check(&self) -> Result<(), String> {
        if self.start.is_ipv4() != self.end.is_ipv4() || self.start > self.end {
            return Err(format!("{} to {} is not a range of one address family, first to last", self.start, self.end));
        }
        Ok(())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.start <= ip && ip <= self.end && self.start.is_ipv4() == ip.is_ipv4()
    }
}

/// Whether a client at `ip` may get or use the app's tokens (`None`: relaxed).
pub fn ip_allowed(ranges: Option<&[IpRange]>, ip: IpAddr) -> bool {
    ranges.is_none_or(|ranges| ranges.iter().any(|r| r.contains(ip)))
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

    pub fn issue_refresh(&mut self, user: &SfId, client_id: &str, scope: &str, now_ms: i64) -> String {
        let token = format!("5Aep861{}", self.rng.token(ALNUM, 80));
        self.refresh.insert(
            token.clone(),
            RefreshToken {
                user: user.clone(),
                client_id: client_id.into(),
                scope: scope.into(),
                issued_ms: now_ms,
                last_used_ms: now_ms,
            },
        );
        token
    }

    /// Uses a refresh token under `policy`: the token to tie new access tokens to (a new
    /// one when rotating: the presented one is then spent), or `None` when it is
    /// unknown, spent, revoked or expired (an expired one is forgotten).
    pub fn use_refresh(
        &mut self,
        presented: &str,
        policy: RefreshPolicy,
        now_ms: i64,
    ) -> Option<(RefreshToken, String)> {
        let token = self.refresh.get(presented)?.clone();
        let expired = match policy.expiry {
            RefreshExpiry::UntilRevoked => false,
            RefreshExpiry::Immediately => true,
            RefreshExpiry::After { seconds } => now_ms - token.issued_ms > seconds as i64 * 1_000,
            RefreshExpiry::IfUnused { seconds } => now_ms - token.last_used_ms > seconds as i64 * 1_000,
        };
        if expired {
            self.revoke(presented);
            return None;
        }
        if !policy.rotate {
            if let Some(t) = self.refresh.get_mut(presented) {
                t.last_used_ms = now_ms;
            }
            return Some((token, presented.to_owned()));
        }
        self.refresh.remove(presented);
        let next = self.issue_refresh(&token.user, &token.client_id, &token.scope, now_ms);
        if let Some(t) = self.refresh.get_mut(&next) {
            t.issued_ms = token.issued_ms;
        }
        // Sessions of the spent token now belong to its successor (revoking it ends them).
        for a in self.access.values_mut().filter(|a| a.refresh.as_deref() == Some(presented)) {
            a.refresh = Some(next.clone());
        }
        Some((token, next))
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

    /// Ends a user's sessions, as a password change or deactivation does: access tokens
    /// and browser sign-ins (refresh tokens stay, for when the user may sign in).
    pub fn end_sessions(&mut self, user: &SfId) -> usize {
        self.browser.retain(|_, u| u != user);
        self.expire_access(Some(user))
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
