//! RSA key pairs for applications created without a public key.

use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{RsaPrivateKey, RsaPublicKey};

pub struct KeyPair {
    /// PKCS#8 PEM (`BEGIN PRIVATE KEY`), the form both SDKs read.
    pub private_pem: String,
    /// SPKI PEM (`BEGIN PUBLIC KEY`).
    pub public_pem: String,
}

pub fn generate() -> KeyPair {
    let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("RSA key generation");
    let public = RsaPublicKey::from(&private);
    KeyPair {
        private_pem: private.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 encoding").to_string(),
        public_pem: public.to_public_key_pem(LineEnding::LF).expect("SPKI encoding"),
    }
}

/// True when `pem` is an RSA public key (SPKI or PKCS#1) that can verify RS256 tokens.
pub fn is_valid_public_key(pem: &str) -> bool {
    use rsa::pkcs1::DecodeRsaPublicKey;
    RsaPublicKey::from_public_key_pem(pem.trim()).is_ok() || RsaPublicKey::from_pkcs1_pem(pem.trim()).is_ok()
}
