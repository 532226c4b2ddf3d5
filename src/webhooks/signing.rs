//! Signed webhooks: `Authorization: Bearer <HS256 JWT>` keyed with the account's signature
//! secret, as Vonage signs them (verifiable with the SDKs' `verify_signature`).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Signer {
    pub api_key: String,
    pub application_id: Uuid,
    pub secret: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    iat: i64,
    jti: String,
    iss: &'static str,
    payload_hash: String,
    api_key: &'a str,
    application_id: String,
}

impl Signer {
    /// The Authorization header value for `body` (empty for GET webhooks).
    pub fn authorization(&self, body: &[u8]) -> String {
        let claims = Claims {
            // Never later than now: pyjwt refuses an iat in the future.
            iat: chrono::Utc::now().timestamp(),
            jti: Uuid::new_v4().to_string(),
            iss: "Vonage",
            payload_hash: hex::encode(Sha256::digest(body)),
            api_key: &self.api_key,
            application_id: self.application_id.to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(self.secret.as_bytes()))
            .expect("HS256 signing cannot fail");
        format!("Bearer {token}")
    }
}
