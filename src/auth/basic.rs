//! HTTP Basic api_key:api_secret for the account-level APIs (Applications).

use crate::accounts::{self, Account};
use crate::cache::{Changed, Invalidations, SharedCache};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BasicAuthError {
    #[error("no Basic credentials in the Authorization header")]
    Missing,
    #[error("the api_key or api_secret is wrong")]
    Invalid,
    #[error("database error while checking credentials")]
    Database(#[from] sqlx::Error),
}

/// Checks credentials; argon2 is deliberately slow, so a verified pair is remembered under a
/// SHA-256 of the pair (the secret itself is never kept) until the account changes on any
/// instance (see `cache`), or for the configured time at most.
pub struct BasicAuthenticator {
    pool: PgPool,
    verified: Arc<SharedCache<[u8; 32], Account>>,
}

impl BasicAuthenticator {
    pub fn new(pool: PgPool, ttl: Duration, invalidations: &Invalidations) -> Self {
        BasicAuthenticator { pool, verified: SharedCache::registered(ttl, invalidations) }
    }

    pub async fn verify(&self, api_key: &str, api_secret: &str) -> Result<Account, BasicAuthError> {
        let fingerprint: [u8; 32] = Sha256::new().chain_update(api_key).chain_update([0]).chain_update(api_secret).finalize().into();
        if let Some(account) = self.verified.get(&fingerprint) {
            return Ok(account);
        }
        let read_at = self.verified.generation();
        let account = accounts::repo::find_by_api_key(&self.pool, api_key).await?.ok_or(BasicAuthError::Invalid)?;
        let hash = account.api_secret_hash.clone();
        let secret = api_secret.to_string();
        let ok = tokio::task::spawn_blocking(move || accounts::verify_secret(&secret, &hash)).await.unwrap_or(false);
        if !ok {
            return Err(BasicAuthError::Invalid);
        }
        self.verified.insert(fingerprint, account.clone(), vec![Changed::Account(account.id)], read_at);
        Ok(account)
    }
}
