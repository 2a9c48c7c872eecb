//! TLS as Tripline's clients use it (notification receivers, PostgreSQL): the public
//! roots, plus the certificates of a private CA an admin names.

use rustls_pki_types::pem::PemObject;
use tokio_rustls::rustls;

/// A client configuration trusting the public roots and the PEM certificates in
/// `ca_pem`; the error says what was wrong with them.
pub(crate) fn client_config(ca_pem: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(pem) = ca_pem {
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("the CA certificate: {e}"))?;
            roots.add(cert).map_err(|e| format!("the CA certificate: {e}"))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
