//! Console sessions: a random token in an HttpOnly cookie, its SHA-256 in `console_sessions`.

use crate::accounts::{repo::ACCOUNT_COLUMNS, Account};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::time::Duration;

/// A signed-in console: the account, and the token its page echoes on state-changing requests.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    #[sqlx(flatten)]
    pub account: Account,
    pub csrf_token: String,
}

/// A session just opened: `token` goes into the cookie and is never stored.
pub struct Opened {
    pub token: String,
    pub csrf_token: String,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Opens a session for `account_id` lasting `ttl`, sweeping expired ones in the same statement.
pub async fn open(pool: &PgPool, account_id: i64, ttl: Duration) -> Result<Opened, sqlx::Error> {
    let opened = Opened { token: random_token(), csrf_token: random_token() };
    sqlx::query(
        "WITH swept AS (DELETE FROM console_sessions WHERE expires_at < now())
         INSERT INTO console_sessions (token_hash, account_id, csrf_token, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(token_hash(&opened.token))
    .bind(account_id)
    .bind(&opened.csrf_token)
    .bind(ttl.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(opened)
}

/// The live session the cookie's token opens, if any.
pub async fn find(pool: &PgPool, token: &str) -> Result<Option<Session>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ACCOUNT_COLUMNS}, s.csrf_token FROM console_sessions s JOIN accounts ON accounts.id = s.account_id
         WHERE s.token_hash = $1 AND s.expires_at > now()"
    ))
    .bind(token_hash(token))
    .fetch_optional(pool)
    .await
}

/// Whether the session is still open (checked now and then by a long-lived event stream).
pub async fn is_open(pool: &PgPool, token: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM console_sessions WHERE token_hash = $1 AND expires_at > now())")
        .bind(token_hash(token))
        .fetch_one(pool)
        .await
}

pub async fn close(pool: &PgPool, token: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1").bind(token_hash(token)).execute(pool).await?;
    Ok(())
}

/// Compares in time independent of where the strings differ (CSRF tokens).
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
