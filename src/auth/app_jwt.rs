//! RS256 application JWTs: minted like the Vonage SDKs do, verified against the application's key.

use super::throttle::{LoginKey, LoginThrottle};
use crate::accounts;
use crate::applications::{self, Application};
use crate::cache::{Changed, Invalidations, SharedCache};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    application_id: String,
    iat: i64,
    jti: String,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("no Bearer token in the Authorization header")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is signed with {0}; only RS256 is accepted")]
    WrongAlgorithm(String),
    #[error("the token has no application_id claim")]
    NoApplicationId,
    #[error("no application with this application_id")]
    UnknownApplication,
    #[error("the token's signature does not match the application's public key")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token has no exp claim")]
    NoExpiry,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token was issued in the future (iat)")]
    IssuedInFuture,
    #[error("the token lives longer than the {0} s allowed")]
    TooLong(i64),
    #[error("too many failed logins; retry after {0:?}")]
    Throttled(Duration),
    #[error("database error while checking the token")]
    Database(#[from] sqlx::Error),
}

/// The application a verified token speaks for.
#[derive(Debug, Clone)]
pub struct AuthenticatedApp {
    pub application: Arc<Application>,
    /// The owning account's call-creation limit, and whether calls above it queue.
    pub calls_per_second: i32,
    pub queue_over_rate: bool,
}

#[derive(Clone)]
struct CachedKey {
    app: AuthenticatedApp,
    key: Arc<DecodingKey>,
}

/// Verifies tokens; parsed keys are cached (the Python SDK mints a token per request, so
/// parsing PEM each time would dominate) until the application or its account changes on any
/// instance (see `cache`), or for `CACHE_TTL` at most.
pub struct AppJwtVerifier {
    pool: PgPool,
    cache: Arc<SharedCache<Uuid, CachedKey>>,
    leeway_s: u64,
    max_ttl_s: i64,
    throttle: Arc<LoginThrottle>,
}

const CACHE_TTL: Duration = Duration::from_secs(30);

impl AppJwtVerifier {
    pub fn new(pool: PgPool, leeway_s: u64, max_ttl_s: i64, invalidations: &Invalidations, throttle: Arc<LoginThrottle>) -> Self {
        AppJwtVerifier { pool, cache: SharedCache::registered(CACHE_TTL, invalidations), leeway_s, max_ttl_s, throttle }
    }

    async fn key_for(&self, id: Uuid) -> Result<(AuthenticatedApp, Arc<DecodingKey>), JwtError> {
        if let Some(hit) = self.cache.get(&id) {
            return Ok((hit.app, hit.key));
        }
        let read_at = self.cache.generation();
        let app = applications::repo::find(&self.pool, id).await?.ok_or(JwtError::UnknownApplication)?;
        let account = accounts::repo::find(&self.pool, app.account_id).await?.ok_or(JwtError::UnknownApplication)?;
        let key = DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes()).map_err(|_| JwtError::UnknownApplication)?;
        let read_from = vec![Changed::Application(id), Changed::Account(account.id)];
        let app = AuthenticatedApp {
            application: Arc::new(app),
            calls_per_second: account.calls_per_second,
            queue_over_rate: account.over_rate == "queue",
        };
        let key = Arc::new(key);
        self.cache.insert(id, CachedKey { app: app.clone(), key: key.clone() }, read_from, read_at);
        Ok((app, key))
    }

    /// Checks the token `client` sent, unless it or the application it names failed too often
    /// lately.
    pub async fn verify(&self, token: &str, client: IpAddr) -> Result<AuthenticatedApp, JwtError> {
        let key = claimed_application(token).map(LoginKey::Application);
        self.throttle.check(client, key).map_err(|t| JwtError::Throttled(t.0))?;
        let verified = self.check(token).await;
        match &verified {
            Ok(app) => self.throttle.succeeded(client, LoginKey::Application(app.application.id)),
            Err(JwtError::Database(_)) => {}
            Err(_) => self.throttle.failed(client, key),
        }
        verified
    }

    async fn check(&self, token: &str) -> Result<AuthenticatedApp, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(JwtError::WrongAlgorithm(format!("{:?}", header.alg)));
        }
        // The key to check with depends on the claim, so read it before the signature is checked.
        let unverified = unverified_claims(token)?;
        let app_id = unverified
            .get("application_id")
            .and_then(|v| v.as_str())
            .ok_or(JwtError::NoApplicationId)?;
        let app_id = Uuid::parse_str(app_id).map_err(|_| JwtError::UnknownApplication)?;
        let (authenticated, key) = self.key_for(app_id).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = self.leeway_s;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        let claims = match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
            Ok(data) => data.claims,
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                return Err(match e.kind() {
                    ErrorKind::ExpiredSignature => JwtError::Expired,
                    ErrorKind::ImmatureSignature => JwtError::NotYetValid,
                    ErrorKind::InvalidSignature => JwtError::BadSignature,
                    ErrorKind::MissingRequiredClaim(_) => JwtError::NoExpiry,
                    _ => JwtError::Malformed,
                });
            }
        };
        let now = chrono::Utc::now().timestamp();
        if claims.iat > now + self.leeway_s as i64 {
            return Err(JwtError::IssuedInFuture);
        }
        if claims.exp - claims.iat > self.max_ttl_s {
            return Err(JwtError::TooLong(self.max_ttl_s));
        }
        Ok(authenticated)
    }
}

/// The application a token says it is for, before anything is checked.
fn claimed_application(token: &str) -> Option<Uuid> {
    let claims = unverified_claims(token).ok()?;
    Uuid::parse_str(claims.get("application_id")?.as_str()?).ok()
}

fn unverified_claims(token: &str) -> Result<serde_json::Value, JwtError> {
    let payload = token.split('.').nth(1).ok_or(JwtError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// A token as the Vonage SDKs and CLI make it: RS256, `application_id`, `iat`, `jti`, `exp`.
pub fn mint_application_jwt(application_id: Uuid, private_key_pem: &str, ttl_s: i64) -> Result<String, jsonwebtoken::errors::Error> {
    let iat = chrono::Utc::now().timestamp();
    let claims = Claims { application_id: application_id.to_string(), iat, jti: Uuid::new_v4().to_string(), exp: iat + ttl_s, nbf: None };
    let key = EncodingKey::from_rsa_pem(private_key_pem.as_bytes())?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key)
}
