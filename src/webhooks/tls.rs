//! TLS for outbound connections to customers: https:// webhooks, answer_url and audio files, and
//! wss:// websocket endpoints share one rustls client configuration. It runs on aws-lc-rs (the
//! crypto library jsonwebtoken already builds) and trusts Mozilla's roots (webpki-roots) plus the
//! certificates of `webhooks.ca_file`, for customers behind a private CA.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

/// Certificates trusted besides the public roots (`webhooks.ca_file`, PEM). Read and checked when
/// the configuration loads, so a missing or bad file stops the start with its reason.
#[derive(Clone, Default)]
pub struct ExtraRoots {
    path: String,
    certificates: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for ExtraRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtraRoots").field("path", &self.path).field("certificates", &self.certificates.len()).finish()
    }
}

impl ExtraRoots {
    /// The certificates of the PEM file at `path` ("" for none), each usable as a trust anchor.
    pub fn load(path: &str) -> Result<ExtraRoots, String> {
        if path.trim().is_empty() {
            return Ok(ExtraRoots::default());
        }
        let unreadable = |e: rustls::pki_types::pem::Error| format!("webhooks.ca_file {path}: {e}");
        let certificates = CertificateDer::pem_file_iter(path).map_err(unreadable)?.collect::<Result<Vec<_>, _>>().map_err(unreadable)?;
        if certificates.is_empty() {
            return Err(format!("webhooks.ca_file {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
        }
        let mut store = RootCertStore::empty();
        for certificate in &certificates {
            store.add(certificate.clone()).map_err(|e| format!("webhooks.ca_file {path}: a certificate cannot be trusted as a root: {e}"))?;
        }
        Ok(ExtraRoots { path: path.to_string(), certificates })
    }

    /// For `#[serde(deserialize_with)]`: the key holds the file's path.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<ExtraRoots, D::Error> {
        let path = <String as serde::Deserialize>::deserialize(deserializer)?;
        ExtraRoots::load(&path).map_err(serde::de::Error::custom)
    }

    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Makes aws-lc-rs the process's default rustls provider (once; later calls do nothing).
/// reqwest builds a TLS configuration from the default for every client made without one given
/// (the tests' and benches' plain clients); this build compiles no other provider, so without it
/// such a client would panic.
pub fn install_default_provider() {
    if CryptoProvider::get_default().is_none() {
        // Another thread may have installed it meanwhile: that is as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// The client configuration for https:// and wss:// to customers: TLS 1.2 and 1.3, Mozilla's
/// roots and `extra`, no client certificate, no ALPN (HTTP/1.1 and WebSocket upgrades only).
pub fn client_config(extra: &ExtraRoots) -> Arc<ClientConfig> {
    install_default_provider();
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for certificate in &extra.certificates {
        // Checked by `load`.
        let _ = roots.add(certificate.clone());
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_refused_with_its_path() {
        assert!(ExtraRoots::load("").unwrap().is_empty());
        let missing = ExtraRoots::load("/nonexistent/ca.pem").unwrap_err();
        assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
        let empty = std::env::temp_dir().join(format!("outdial-empty-ca-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let refused = ExtraRoots::load(empty.to_str().unwrap()).unwrap_err();
        let _ = std::fs::remove_file(&empty);
        assert!(refused.contains("no PEM certificate"), "{refused}");
    }
}
