//! A self-signed certificate for the TLS Pub/Sub listener, made at start.

use anyhow::Context;

/// A generated certificate: what the listeners present, and what clients trust.
pub struct Generated {
    /// The server certificate followed by its issuing CA (PEM).
    pub chain_pem: String,
    pub key_pem: String,
    /// The CA certificate clients add to their trust store (PEM).
    pub ca_pem: String,
}

/// A private CA and a server certificate it signs for `localhost` and `127.0.0.1`.
/// (Some TLS stacks refuse a self-signed server certificate as its own trust anchor.)
pub fn self_signed() -> anyhow::Result<Generated> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "sfsim local CA");
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).context("signing the CA certificate")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().context("generating the server key")?;
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).context("server parameters")?;
    params.distinguished_name.push(DnType::CommonName, "sfsim");
    let cert = params.signed_by(&key, &issuer).context("signing the server certificate")?;
    Ok(Generated {
        chain_pem: format!("{}{}", cert.pem(), ca_cert.pem()),
        key_pem: key.serialize_pem(),
        ca_pem: ca_cert.pem(),
    })
}

/// Serves `app` over HTTPS on `listener` (OAuth, REST and the Metadata API, as
/// Salesforce does; some client libraries insist on https).
pub fn serve_https(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<()> {
    use std::sync::Arc;
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("reading the TLS certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("reading the TLS key")?;
    let config =
        ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).context("TLS configuration")?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            let app = app.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer)));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                let _ = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service).await;
            });
        }
    });
    Ok(())
}
