//! Trunk passwords sealed at rest: ChaCha20-Poly1305 under `sip.credentials_key`, a random
//! nonce per password, and the trunk's id as associated data (a sealed password copied onto
//! another trunk does not open).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use base64::Engine;
use uuid::Uuid;

/// The stored form: VERSION, nonce, ciphertext and tag.
const VERSION: u8 = 1;
const KEY_LEN: usize = 32;

/// What to tell an operator whose key is missing.
pub const NO_KEY: &str = "set sip.credentials_key (OUTDIAL__SIP__CREDENTIALS_KEY) to store trunk passwords";

/// The key that seals trunk passwords. Its bytes never reach logs (`Debug` prints none).
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialKey([u8; KEY_LEN]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("sip.credentials_key must be 32 random bytes written as 64 hex characters or as base64 (e.g. the output of `openssl rand -hex 32`)")]
    Malformed,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the stored password cannot be opened with sip.credentials_key (was it sealed with another key?)")]
pub struct OpenError;

impl std::fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialKey(<redacted>)")
    }
}

impl CredentialKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> CredentialKey {
        CredentialKey(bytes)
    }

    /// 64 hex characters, or base64 (standard or URL-safe, padded or not) of 32 bytes.
    pub fn parse(text: &str) -> Result<CredentialKey, KeyError> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| KeyError::Malformed)?
        } else {
            let engines = [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            engines.iter().find_map(|e| e.decode(text).ok()).ok_or(KeyError::Malformed)?
        };
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| KeyError::Malformed)?;
        Ok(CredentialKey(bytes))
    }

    /// For `config`: an empty or absent value is no key; anything else must parse.
    pub fn deserialize_optional<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<CredentialKey>, D::Error> {
        let text: Option<String> = serde::Deserialize::deserialize(deserializer)?;
        match text.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(t) => CredentialKey::parse(t).map(Some).map_err(serde::de::Error::custom),
        }
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("a 32-byte ChaCha20-Poly1305 key"))
    }

    /// Seals `password` for the trunk `trunk_id`.
    pub fn seal(&self, trunk_id: Uuid, password: &str) -> Vec<u8> {
        // A random 96-bit nonce per password: a key seals few enough for collisions not to matter.
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system's random source");
        let mut in_out = password.as_bytes().to_vec();
        self.aead()
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(trunk_id.as_bytes()), &mut in_out)
            .expect("sealing a short password");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&in_out);
        sealed
    }

    /// Opens what `seal` stored for the same trunk.
    pub fn open(&self, trunk_id: Uuid, sealed: &[u8]) -> Result<String, OpenError> {
        let (&version, rest) = sealed.split_first().ok_or(OpenError)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError)?;
        let mut in_out = ciphertext.to_vec();
        let plain = self.aead().open_in_place(nonce, Aad::from(trunk_id.as_bytes()), &mut in_out).map_err(|_| OpenError)?;
        String::from_utf8(plain.to_vec()).map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_hex_or_base64_and_nothing_else() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let key = CredentialKey::parse(hex).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.0);
        assert_eq!(CredentialKey::parse(&b64).unwrap(), key);
        assert_eq!(CredentialKey::parse(b64.trim_end_matches('=')).unwrap(), key);
        for bad in ["", "abc", &hex[..62], "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", "c2hvcnQ="] {
            assert_eq!(CredentialKey::parse(bad), Err(KeyError::Malformed), "{bad}");
        }
        assert!(!format!("{key:?}").contains("0011"), "Debug shows no key bytes");
    }

    #[test]
    fn a_sealed_password_opens_only_with_its_key_and_trunk() {
        let key = CredentialKey::from_bytes([7; 32]);
        let trunk = Uuid::new_v4();
        let sealed = key.seal(trunk, "s3cret-pass");
        assert!(!sealed.windows(11).any(|w| w == b"s3cret-pass"), "no plaintext in the sealed form");
        assert_ne!(sealed, key.seal(trunk, "s3cret-pass"), "a fresh nonce each time");
        assert_eq!(key.open(trunk, &sealed).unwrap(), "s3cret-pass");
        assert_eq!(key.open(Uuid::new_v4(), &sealed), Err(OpenError), "bound to its trunk");
        assert_eq!(CredentialKey::from_bytes([8; 32]).open(trunk, &sealed), Err(OpenError), "another key");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(trunk, &tampered), Err(OpenError));
        assert_eq!(key.open(trunk, &[]), Err(OpenError));
    }
}
