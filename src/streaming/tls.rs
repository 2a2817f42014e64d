//! HTTPS for the streaming server, when `streaming.tls_cert_file` and
//! `streaming.tls_key_file` are set (both PEM).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::StreamingError;
use crate::config::StreamingConfig;

pub fn acceptor(config: &StreamingConfig) -> Result<Option<TlsAcceptor>, StreamingError> {
    let (Some(cert_file), Some(key_file)) = (&config.tls_cert_file, &config.tls_key_file) else { return Ok(None) };
    let fail =
        |what: &std::path::Path, e: &dyn std::fmt::Display| StreamingError::Tls(format!("{}: {e}", what.display()));
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert_file).and_then(|certs| certs.collect()).map_err(|e| fail(cert_file, &e))?;
    if certs.is_empty() {
        return Err(fail(cert_file, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| fail(key_file, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| StreamingError::Tls(e.to_string()))?;
    // Upgrades (SPDY, WebSocket) exist only in HTTP/1.1.
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}
