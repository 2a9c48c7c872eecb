//! Where a connection may sign in. An admin types a My Domain URL; the server must
//! never fetch an arbitrary host, so only Salesforce's login host shapes are accepted,
//! plus origins an operator explicitly allows (sfsim, tests).

use std::fmt;

/// A validated login origin such as `https://acme.my.salesforce.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginHost(String);

/// Why a typed URL is not a Salesforce login host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginHostError {
    #[error("{0:?} is not a URL")]
    NotAUrl(String),
    #[error("a My Domain URL has only a host: remove {0:?}")]
    Extra(String),
    #[error("Salesforce login URLs use https")]
    NotHttps,
    #[error(
        "{0:?} is not a Salesforce login host: expected login.salesforce.com, test.salesforce.com or a My Domain such as NAME.my.salesforce.com"
    )]
    NotSalesforce(String),
}

pub const PRODUCTION: &str = "https://login.salesforce.com";
pub const SANDBOX: &str = "https://test.salesforce.com";

fn label_ok(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Is `host` one of Salesforce's login host shapes?
fn salesforce_host(host: &str) -> bool {
    if host == "login.salesforce.com" || host == "test.salesforce.com" {
        return true;
    }
    let shapes = [
        ".sandbox.my.salesforce.com",
        ".develop.my.salesforce.com",
        ".scratch.my.salesforce.com",
        ".my.salesforce.com",
    ];
    shapes.iter().any(|suffix| {
        host.strip_suffix(suffix).is_some_and(|name| match *suffix {
            // NAME--SANDBOX
            ".sandbox.my.salesforce.com" => {
                name.split_once("--").is_some_and(|(a, b)| label_ok(a) && label_ok(b) && !b.contains("--"))
            }
            // NAME-dev-ed
            ".develop.my.salesforce.com" => name.strip_suffix("-dev-ed").is_some_and(label_ok),
            _ => label_ok(name),
        })
    })
}

impl LoginHost {
    pub fn production() -> LoginHost {
        LoginHost(PRODUCTION.into())
    }

    /// Parses what an admin typed. Blank means the standard production login host.
    /// `allowed` lists extra origins (`http://127.0.0.1:8443`) accepted as they are.
    pub fn parse(text: &str, allowed: &[String]) -> Result<LoginHost, LoginHostError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(LoginHost::production());
        }
        let with_scheme = if text.contains("://") { text.to_owned() } else { format!("https://{text}") };
        let url = url::Url::parse(&with_scheme).map_err(|_| LoginHostError::NotAUrl(text.into()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(LoginHostError::Extra("the user name".into()));
        }
        if url.path() != "/" && !url.path().is_empty() {
            return Err(LoginHostError::Extra(url.path().into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(LoginHostError::Extra("the query".into()));
        }
        let origin = url.origin().ascii_serialization();
        if allowed.iter().any(|a| a.trim_end_matches('/') == origin) {
            return Ok(LoginHost(origin));
        }
        if url.scheme() != "https" {
            return Err(LoginHostError::NotHttps);
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if url.port().is_some() || !salesforce_host(&host) {
            return Err(LoginHostError::NotSalesforce(text.into()));
        }
        Ok(LoginHost(format!("https://{host}")))
    }

    /// The origin, e.g. `https://acme.my.salesforce.com`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LoginHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks an `instance_url` from a token response before any call goes to it:
/// Salesforce's own domains over https, or an allowed origin.
pub fn instance_url_ok(instance_url: &str, allowed: &[String]) -> bool {
    let Ok(url) = url::Url::parse(instance_url) else { return false };
    let origin = url.origin().ascii_serialization();
    if allowed.iter().any(|a| a.trim_end_matches('/') == origin) {
        return true;
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    url.scheme() == "https"
        && url.port().is_none()
        && [".salesforce.com", ".force.com", ".cloudforce.com"].iter().any(|d| host.ends_with(d))
        && host.split('.').all(label_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salesforce_shapes_are_accepted() {
        let ok = |t: &str| LoginHost::parse(t, &[]).map(|h| h.0);
        assert_eq!(ok(""), Ok(PRODUCTION.into()));
        assert_eq!(ok("acme.my.salesforce.com"), Ok("https://acme.my.salesforce.com".into()));
        assert_eq!(ok(" https://Acme.My.Salesforce.com/ "), Ok("https://acme.my.salesforce.com".into()));
        assert_eq!(ok("acme--uat.sandbox.my.salesforce.com"), Ok("https://acme--uat.sandbox.my.salesforce.com".into()));
        assert_eq!(
            ok("acme-dev-ed.develop.my.salesforce.com"),
            Ok("https://acme-dev-ed.develop.my.salesforce.com".into())
        );
        assert_eq!(ok("acme.scratch.my.salesforce.com"), Ok("https://acme.scratch.my.salesforce.com".into()));
        assert_eq!(ok("test.salesforce.com"), Ok(SANDBOX.into()));
    }

    #[test]
    fn other_hosts_are_refused() {
        let err = |t: &str| LoginHost::parse(t, &[]).expect_err(t);
        assert!(matches!(err("evil.example"), LoginHostError::NotSalesforce(_)));
        assert!(matches!(err("acme.my.salesforce.com.evil.example"), LoginHostError::NotSalesforce(_)));
        assert!(matches!(err("http://acme.my.salesforce.com"), LoginHostError::NotHttps));
        assert!(matches!(err("https://acme.my.salesforce.com:8443"), LoginHostError::NotSalesforce(_)));
        assert!(matches!(err("https://acme.my.salesforce.com/secur/login"), LoginHostError::Extra(_)));
        assert!(matches!(err("https://user@acme.my.salesforce.com"), LoginHostError::Extra(_)));
        assert!(matches!(err("169.254.169.254"), LoginHostError::NotSalesforce(_)));
        assert!(matches!(err("-x.my.salesforce.com"), LoginHostError::NotSalesforce(_)));
        assert!(matches!(err("a.b.my.salesforce.com"), LoginHostError::NotSalesforce(_)));
    }

    #[test]
    fn instance_urls_must_be_salesforce_hosts() {
        assert!(instance_url_ok("https://acme.my.salesforce.com", &[]));
        assert!(instance_url_ok("https://na123.salesforce.com", &[]));
        assert!(!instance_url_ok("https://evil.example", &[]));
        assert!(!instance_url_ok("http://acme.my.salesforce.com", &[]));
        assert!(!instance_url_ok("https://salesforce.com.evil.example", &[]));
        assert!(instance_url_ok("http://127.0.0.1:8443", &["http://127.0.0.1:8443".into()]));
    }

    #[test]
    fn allow_list_admits_emulated_orgs() {
        let allowed = vec!["http://127.0.0.1:8443".to_string()];
        assert_eq!(
            LoginHost::parse("http://127.0.0.1:8443/", &allowed).map(|h| h.0),
            Ok("http://127.0.0.1:8443".into())
        );
        assert!(LoginHost::parse("http://127.0.0.1:8444", &allowed).is_err());
    }
}
