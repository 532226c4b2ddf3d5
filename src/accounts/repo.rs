//! SQL for accounts.

use super::secrets::{hash_secret, new_api_key, random_alphanumeric};
use super::{Account, NewAccountCredentials};
use crate::cache::{self, Changed};
use sqlx::PgPool;

pub(crate) const ACCOUNT_COLUMNS: &str = "id, name, api_key, api_secret_hash, signature_secret, calls_per_second, over_rate, balance, credit_limit, rates_admin";

pub async fn create(pool: &PgPool, name: &str, calls_per_second: i32) -> Result<NewAccountCredentials, sqlx::Error> {
    create_with(pool, name, calls_per_second, "reject").await
}

pub async fn create_with(pool: &PgPool, name: &str, calls_per_second: i32, over_rate: &str) -> Result<NewAccountCredentials, sqlx::Error> {
    let api_secret = random_alphanumeric(16);
    let signature_secret = random_alphanumeric(32);
    let secret_hash = hash_secret(&api_secret);
    // api keys are short; on the rare collision draw another.
    for _ in 0..5 {
        let api_key = new_api_key();
        let row: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO accounts (name, api_key, api_secret_hash, signature_secret, calls_per_second, over_rate)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (api_key) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(&api_key)
        .bind(&secret_hash)
        .bind(&signature_secret)
        .bind(calls_per_second)
        .bind(over_rate)
        .fetch_optional(pool)
        .await?;
        if let Some((account_id,)) = row {
            return Ok(NewAccountCredentials {
                account_id,
                name: name.to_string(),
                api_key,
                api_secret,
                signature_secret,
                calls_per_second,
                over_rate: over_rate.to_string(),
            });
        }
    }
    Err(sqlx::Error::Protocol("could not find a free api_key".into()))
}

pub async fn find_by_api_key(pool: &PgPool, api_key: &str) -> Result<Option<Account>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE api_key = $1"))
        .bind(api_key)
        .fetch_optional(pool)
        .await
}

pub async fn find(pool: &PgPool, id: i64) -> Result<Option<Account>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

pub async fn first_named(pool: &PgPool, name: &str) -> Result<Option<Account>, sqlx::Error> {
    sqlx::query_as(
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1 ORDER BY id LIMIT 1"),
    )
    .bind(name)
    .fetch_optional(pool)
    .await
}

/// What `outdial account update` may change; None leaves a setting as it is.
#[derive(Debug, Default)]
pub struct AccountChanges<'a> {
    pub calls_per_second: Option<i32>,
    pub over_rate: Option<&'a str>,
    pub credit_limit: Option<rust_decimal::Decimal>,
    pub rates_admin: Option<bool>,
}

/// Changes an account's limits: call rate, what happens above it, credit limit, deck rights.
/// Every instance's caches of the account are told.
pub async fn update_limits(pool: &PgPool, api_key: &str, changes: &AccountChanges<'_>) -> Result<Option<Account>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let account: Option<Account> = sqlx::query_as(&format!(
        "UPDATE accounts SET calls_per_second = COALESCE($2, calls_per_second), over_rate = COALESCE($3, over_rate),
                credit_limit = COALESCE($4, credit_limit), rates_admin = COALESCE($5, rates_admin)
         WHERE api_key = $1 RETURNING {ACCOUNT_COLUMNS}"
    ))
    .bind(api_key)
    .bind(changes.calls_per_second)
    .bind(changes.over_rate)
    .bind(changes.credit_limit)
    .bind(changes.rates_admin)
    .fetch_optional(&mut *tx)
    .await?;
    announced(tx, account).await
}

/// New secrets for an account, shown only this once.
#[derive(Debug, serde::Serialize)]
pub struct NewSecrets {
    pub api_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_secret: Option<String>,
}

/// Replaces the account's api_secret, its signature secret, or both. The old ones stop working
/// on every instance (their caches are told).
pub async fn replace_secrets(pool: &PgPool, api_key: &str, api_secret: bool, signature_secret: bool) -> Result<Option<NewSecrets>, sqlx::Error> {
    let api_secret = api_secret.then(|| random_alphanumeric(16));
    let signature_secret = signature_secret.then(|| random_alphanumeric(32));
    let secret_hash = api_secret.as_deref().map(hash_secret);
    let mut tx = pool.begin().await?;
    let account: Option<Account> = sqlx::query_as(&format!(
        "UPDATE accounts SET api_secret_hash = COALESCE($2, api_secret_hash), signature_secret = COALESCE($3, signature_secret)
         WHERE api_key = $1 RETURNING {ACCOUNT_COLUMNS}"
    ))
    .bind(api_key)
    .bind(secret_hash)
    .bind(&signature_secret)
    .fetch_optional(&mut *tx)
    .await?;
    let account = announced(tx, account).await?;
    Ok(account.map(|account| NewSecrets { api_key: account.api_key, api_secret, signature_secret }))
}

/// Commits a change to `account` (None: nothing matched), telling every instance's caches.
async fn announced(mut tx: sqlx::Transaction<'_, sqlx::Postgres>, account: Option<Account>) -> Result<Option<Account>, sqlx::Error> {
    if let Some(account) = &account {
        cache::announce(&mut tx, Changed::Account(account.id)).await?;
    }
    tx.commit().await?;
    Ok(account)
}
