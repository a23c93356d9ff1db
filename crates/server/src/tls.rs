//! HTTPS without a reverse proxy: rustls with the certificate chain and key of `[http]`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// The TLS settings of the server: TLS 1.2 and 1.3, ring's algorithms, no client certificates.
pub fn server_config((cert, key): (&Path, &Path)) -> Result<rustls::ServerConfig, Error> {
    let invalid = |path: &Path, problem: String| Error::Config(format!("{}: {problem}", path.display()));
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid(cert, "no PEM certificate in it".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, format!("no PEM private key: {e}")))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| invalid(cert, format!("certificate and key do not fit together: {e}")))
}
