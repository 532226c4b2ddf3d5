//! Signed webhooks: `Authorization: Bearer <HS256 JWT>` keyed with the account's signature
//! secret, as Vonage signs them (verifiable with the SDKs' `verify_signature`). The same key
//! signs the token a websocket endpoint with `authorization: {"type": "vonage"}` gets on its
//! upgrade request.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How long a websocket upgrade's token is valid: it is minted just before the connection opens.
pub const WEBSOCKET_TOKEN_TTL_S: i64 = 60;

#[derive(Debug, Clone)]
pub struct Signer {
    pub api_key: String,
    pub application_id: Uuid,
    pub secret: String,
}

#[derive(Serialize)]
struct WebhookClaims<'a> {
    iat: i64,
    jti: String,
    iss: &'static str,
    payload_hash: String,
    api_key: &'a str,
    application_id: String,
}

#[derive(Serialize)]
struct WebsocketClaims<'a> {
    iat: i64,
    exp: i64,
    jti: String,
    iss: &'static str,
    api_key: &'a str,
    application_id: String,
    /// The websocket leg's uuid (the `uuid` of its events).
    call_uuid: String,
    conversation_uuid: &'a str,
}

impl Signer {
    /// The Authorization header value for `body` (empty for GET webhooks).
    pub fn authorization(&self, body: &[u8]) -> String {
        self.bearer(&WebhookClaims {
            iat: now(),
            jti: Uuid::new_v4().to_string(),
            iss: "Vonage",
            payload_hash: hex::encode(Sha256::digest(body)),
            api_key: &self.api_key,
            application_id: self.application_id.to_string(),
        })
    }

    /// The Authorization header of the upgrade request to a websocket endpoint with
    /// `authorization: {"type": "vonage"}`: proof for the customer's server that the connection
    /// comes from the platform, valid for `WEBSOCKET_TOKEN_TTL_S`.
    pub fn websocket_authorization(&self, call_uuid: Uuid, conversation_uuid: &str) -> String {
        let iat = now();
        self.bearer(&WebsocketClaims {
            iat,
            exp: iat + WEBSOCKET_TOKEN_TTL_S,
            jti: Uuid::new_v4().to_string(),
            iss: "Vonage",
            api_key: &self.api_key,
            application_id: self.application_id.to_string(),
            call_uuid: call_uuid.to_string(),
            conversation_uuid,
        })
    }

    fn bearer(&self, claims: &impl Serialize) -> String {
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(self.secret.as_bytes()))
            .expect("HS256 signing cannot fail");
        format!("Bearer {token}")
    }
}

/// Never later than now: pyjwt refuses an iat in the future.
fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
