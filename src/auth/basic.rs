//! HTTP Basic api_key:api_secret for the account-level APIs (Applications).

use super::throttle::{LoginKey, LoginThrottle};
use crate::accounts::{self, Account};
use crate::cache::{Changed, Invalidations, SharedCache};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BasicAuthError {
    #[error("no Basic credentials in the Authorization header")]
    Missing,
    #[error("the api_key or api_secret is wrong")]
    Invalid,
    #[error("too many failed logins; retry after {0:?}")]
    Throttled(Duration),
    #[error("database error while checking credentials")]
    Database(#[from] sqlx::Error),
}

/// Checks credentials; argon2 is deliberately slow, so a verified pair is remembered under a
/// SHA-256 of the pair (the secret itself is never kept) until the account changes on any
/// instance (see `cache`), or for the configured time at most.
pub struct BasicAuthenticator {
    pool: PgPool,
    verified: Arc<SharedCache<[u8; 32], Account>>,
    throttle: Arc<LoginThrottle>,
}

impl BasicAuthenticator {
    pub fn new(pool: PgPool, ttl: Duration, invalidations: &Invalidations, throttle: Arc<LoginThrottle>) -> Self {
        // Made now, not by the first unknown api_key (which would then answer slower than the rest).
        accounts::decoy_hash();
        BasicAuthenticator { pool, verified: SharedCache::registered(ttl, invalidations), throttle }
    }

    /// Checks the pair `client` sent, unless it or `api_key` failed too often lately.
    pub async fn verify(&self, api_key: &str, api_secret: &str, client: IpAddr) -> Result<Account, BasicAuthError> {
        let key = LoginKey::ApiKey(api_key);
        self.throttle.check(client, Some(key)).map_err(|t| BasicAuthError::Throttled(t.0))?;
        let verified = self.check(api_key, api_secret).await;
        match &verified {
            Ok(_) => self.throttle.succeeded(client, key),
            Err(BasicAuthError::Invalid) => self.throttle.failed(client, Some(key)),
            Err(_) => {}
        }
        verified
    }

    async fn check(&self, api_key: &str, api_secret: &str) -> Result<Account, BasicAuthError> {
        let fingerprint: [u8; 32] = Sha256::new().chain_update(api_key).chain_update([0]).chain_update(api_secret).finalize().into();
        if let Some(account) = self.verified.get(&fingerprint) {
            return Ok(account);
        }
        let read_at = self.verified.generation();
        let account = accounts::repo::find_by_api_key(&self.pool, api_key).await?;
        // An unknown api_key costs a full argon2 check too: answering it faster would tell
        // which keys exist (and make guessing keys cheaper than guessing secrets).
        let hash = account.as_ref().map_or(accounts::decoy_hash(), |a| a.api_secret_hash.as_str()).to_string();
        let secret = api_secret.to_string();
        let matches = tokio::task::spawn_blocking(move || accounts::verify_secret(&secret, &hash)).await.unwrap_or(false);
        let account = account.filter(|_| matches).ok_or(BasicAuthError::Invalid)?;
        self.verified.insert(fingerprint, account.clone(), vec![Changed::Account(account.id)], read_at);
        Ok(account)
    }
}
