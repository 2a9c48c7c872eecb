//! OAuth 2.0 web server flow with PKCE against a Salesforce login host.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::login::LoginHost;

/// The scopes a monitoring connection asks for.
pub const MONITORING_SCOPE: &str = "api refresh_token";

/// A connected app's credentials and where to sign in.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub login: LoginHost,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    http: reqwest::Client,
}

/// A started authorization: send the person to `url`; keep `state` and
/// `code_verifier` until the callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizationStart {
    pub url: String,
    pub state: String,
    pub code_verifier: String,
}

/// The token endpoint's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    pub instance_url: String,
    /// The identity URL, `.../id/{orgId}/{userId}`.
    pub id: String,
    pub issued_at: String,
    pub signature: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
}

impl Tokens {
    /// (organization id, user id) from the identity URL.
    pub fn org_and_user(&self) -> Option<(&str, &str)> {
        let mut parts = self.id.rsplit('/');
        let user = parts.next()?;
        let org = parts.next()?;
        Some((org, user))
    }
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// `len` bytes of OS randomness, base64url encoded.
pub fn random_token(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    // The OS generator failing is not recoverable; an all-zero state would be unsafe.
    getrandom::fill(&mut bytes).expect("the operating system's random generator");
    URL_SAFE_NO_PAD.encode(bytes)
}

impl OAuthClient {
    pub fn new(
        login: LoginHost,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        http: reqwest::Client,
    ) -> OAuthClient {
        OAuthClient {
            login,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uri: redirect_uri.into(),
            http,
        }
    }

    /// The authorize URL with a fresh `state` and PKCE verifier (S256).
    pub fn start(&self, scope: &str) -> AuthorizationStart {
        let state = random_token(24);
        let code_verifier = random_token(48);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.as_bytes()));
        let mut url = url::Url::parse(&format!("{}/services/oauth2/authorize", self.login))
            .expect("a LoginHost is a valid origin");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", scope)
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("prompt", "login consent");
        AuthorizationStart { url: url.into(), state, code_verifier }
    }

    async fn token_call(&self, form: &[(&str, &str)]) -> Result<Tokens, Error> {
        let response = self.http.post(format!("{}/services/oauth2/token", self.login)).form(form).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        if status.is_success() {
            let tokens: Tokens =
                serde_json::from_slice(&body).map_err(|e| Error::Protocol(format!("token response: {e}")))?;
            if !self.signature_valid(&tokens) {
                return Err(Error::Protocol("the token response's signature does not verify".into()));
            }
            return Ok(tokens);
        }
        match serde_json::from_slice::<TokenError>(&body) {
            Ok(e) if e.error == "invalid_grant" && e.error_description == "ip restricted" => {
                Err(Error::IpRestricted(e.error_description))
            }
            Ok(e) => Err(Error::Authorization { error: e.error, description: e.error_description }),
            Err(_) => Err(Error::Api {
                status: status.as_u16(),
                code: "UNKNOWN".into(),
                message: String::from_utf8_lossy(&body).chars().take(200).collect(),
            }),
        }
    }

    /// `signature` is base64(HMAC-SHA256(client secret, id + issued_at)).
    pub fn signature_valid(&self, tokens: &Tokens) -> bool {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.client_secret.as_bytes()) else { return false };
        mac.update(format!("{}{}", tokens.id, tokens.issued_at).as_bytes());
        STANDARD.decode(&tokens.signature).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
    }

    /// Exchanges the callback's code (after checking its `state`).
    pub async fn finish(&self, start: &AuthorizationStart, state: &str, code: &str) -> Result<Tokens, Error> {
        if state != start.state {
            return Err(Error::Authorization {
                error: "state_mismatch".into(),
                description: "the callback's state does not match this authorization".into(),
            });
        }
        self.token_call(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", &self.client_id),
            ("client_secret", &self.client_secret),
            ("redirect_uri", &self.redirect_uri),
            ("code_verifier", &start.code_verifier),
        ])
        .await
    }

    /// A new access token from a refresh token. `invalid_grant` means a person must
    /// authorize again ([`Error::needs_person`]).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, Error> {
        self.token_call(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &self.client_id),
            ("client_secret", &self.client_secret),
        ])
        .await
    }

    /// Revokes a token (and, for a refresh token, its sessions).
    pub async fn revoke(&self, token: &str) -> Result<(), Error> {
        let response =
            self.http.post(format!("{}/services/oauth2/revoke", self.login)).form(&[("token", token)]).send().await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Error::Api {
                status: response.status().as_u16(),
                code: "REVOKE_FAILED".into(),
                message: response.text().await?,
            })
        }
    }
}
