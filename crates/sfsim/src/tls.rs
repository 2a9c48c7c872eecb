//! A self-signed certificate for the TLS Pub/Sub listener, made at start.

use anyhow::Context;

/// (certificate PEM, private key PEM) for `localhost` and `127.0.0.1`.
pub fn self_signed() -> anyhow::Result<(String, String)> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let cert = rcgen::generate_simple_self_signed(names).context("generating a self-signed certificate")?;
    Ok((cert.cert.pem(), cert.signing_key.serialize_pem()))
}
