//! TLS for the tests' customer servers, as a customer behind a private CA has it: a CA made in
//! the test (rcgen), a server certificate it signs for 127.0.0.1 and localhost, the CA's PEM
//! file for `webhooks.ca_file`, and a TLS front that serves a plain server over TLS.
#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A private CA and a server certificate it signed.
pub struct TestCa {
    /// The CA certificate as PEM, in a file of its own (removed when dropped).
    pub ca_file: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Outdial test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        server_params.distinguished_name.push(DnType::CommonName, "customer.test");
        let server_key = KeyPair::generate().unwrap();
        let server_cert = server_params.signed_by(&server_key, &ca).unwrap();
        let ca_file = std::env::temp_dir().join(format!("outdial-test-ca-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![server_cert.der().clone(), ca.der().clone()], server_key.into())
            .unwrap();
        TestCa { ca_file, server: Arc::new(server) }
    }

    /// The path for `webhooks.ca_file`.
    pub fn ca_path(&self) -> String {
        self.ca_file.to_str().unwrap().to_string()
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server.clone())
    }

    /// A webhook receiver served over https at 127.0.0.1 with this CA's certificate (trust it
    /// with `webhooks.ca_file`).
    pub async fn receiver(&self) -> super::receiver::Receiver {
        let plain = super::receiver::Receiver::start().await;
        let port = self.front(plain.port()).await;
        plain.with_base(format!("https://127.0.0.1:{port}"))
    }

    /// Serves the plain server at 127.0.0.1:`plain_port` over TLS: every connection to the
    /// returned port is decrypted and its bytes relayed both ways.
    pub async fn front(&self, plain_port: u16) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = self.acceptor();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to relay.
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", plain_port)).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        port
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}
