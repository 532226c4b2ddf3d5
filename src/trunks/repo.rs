//! SQL for trunks, used by the API and the CLI (routing reads them in `routing`).

use super::crypto::CredentialKey;
use super::model::{PasswordChange, Trunk, TrunkSpec};
use sqlx::PgPool;
use uuid::Uuid;

pub(super) const TRUNK_COLUMNS: &str = "id, account_id, name, host, port, transport, username, password_encrypted, from_domain, prefixes, \
     priority, cps, max_channels, enabled, created_at, updated_at";

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// Another trunk of the same owner has this name.
    #[error("a trunk named {0} already exists")]
    DuplicateName(String),
    /// A password was given but no credentials key is configured.
    #[error("{}", super::crypto::NO_KEY)]
    NoKey,
    /// The trunk holds numbers (their calls arrive on it): they go first.
    #[error("the trunk holds numbers; remove them first")]
    HoldsNumbers,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn seal(key: Option<&CredentialKey>, id: Uuid, change: &PasswordChange, current: Option<&Trunk>) -> Result<Option<Vec<u8>>, RepoError> {
    match change {
        PasswordChange::Set(password) => Ok(Some(key.ok_or(RepoError::NoKey)?.seal(id, password))),
        PasswordChange::Clear => Ok(None),
        PasswordChange::Keep => Ok(current.and_then(|t| t.password_encrypted.clone())),
    }
}

fn duplicate(e: sqlx::Error, name: &str) -> RepoError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => RepoError::DuplicateName(name.to_string()),
        _ => RepoError::Database(e),
    }
}

/// Stores a new trunk; `account_id` None makes it a platform trunk.
pub async fn insert(pool: &PgPool, key: Option<&CredentialKey>, account_id: Option<i64>, spec: &TrunkSpec) -> Result<Trunk, RepoError> {
    let id = Uuid::new_v4();
    let password = seal(key, id, &spec.password, None)?;
    let mut tx = pool.begin().await?;
    let trunk = sqlx::query_as(&format!(
        "INSERT INTO trunks (id, account_id, name, host, port, transport, username, password_encrypted, from_domain, prefixes,
                             priority, cps, max_channels, enabled)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         RETURNING {TRUNK_COLUMNS}"
    ))
    .bind(id)
    .bind(account_id)
    .bind(&spec.name)
    .bind(&spec.host)
    .bind(spec.port)
    .bind(&spec.transport)
    .bind(&spec.username)
    .bind(password)
    .bind(&spec.from_domain)
    .bind(&spec.prefixes)
    .bind(spec.priority)
    .bind(spec.cps)
    .bind(spec.max_channels)
    .bind(spec.enabled)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| duplicate(e, &spec.name))?;
    commit_announced(tx).await?;
    Ok(trunk)
}

/// Replaces `current`'s fields with `spec` (a merge of the change over `current`).
pub async fn update(pool: &PgPool, key: Option<&CredentialKey>, current: &Trunk, spec: &TrunkSpec) -> Result<Option<Trunk>, RepoError> {
    let password = seal(key, current.id, &spec.password, Some(current))?;
    let mut tx = pool.begin().await?;
    let trunk = sqlx::query_as(&format!(
        "UPDATE trunks SET name = $2, host = $3, port = $4, transport = $5, username = $6, password_encrypted = $7, from_domain = $8,
                           prefixes = $9, priority = $10, cps = $11, max_channels = $12, enabled = $13, updated_at = now()
         WHERE id = $1
         RETURNING {TRUNK_COLUMNS}"
    ))
    .bind(current.id)
    .bind(&spec.name)
    .bind(&spec.host)
    .bind(spec.port)
    .bind(&spec.transport)
    .bind(&spec.username)
    .bind(password)
    .bind(&spec.from_domain)
    .bind(&spec.prefixes)
    .bind(spec.priority)
    .bind(spec.cps)
    .bind(spec.max_channels)
    .bind(spec.enabled)
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| duplicate(e, &spec.name))?;
    commit_announced(tx).await?;
    Ok(trunk)
}

/// Commits a change of trunks, telling every instance's routing (in the transaction, so only
/// if it commits) to drop the trunks it read.
async fn commit_announced(mut tx: sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), sqlx::Error> {
    crate::cache::announce(&mut tx, crate::cache::Changed::Trunks).await?;
    tx.commit().await
}

pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<Trunk>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {TRUNK_COLUMNS} FROM trunks WHERE id = $1")).bind(id).fetch_optional(pool).await
}

/// The trunk of this owner (None: the platform) named `name_or_id`, or with that id.
pub async fn find_owned(pool: &PgPool, account_id: Option<i64>, name_or_id: &str) -> Result<Option<Trunk>, sqlx::Error> {
    let id = Uuid::parse_str(name_or_id).ok();
    sqlx::query_as(&format!(
        "SELECT {TRUNK_COLUMNS} FROM trunks
         WHERE account_id IS NOT DISTINCT FROM $1 AND (id = $2 OR name = $3)
         ORDER BY id = $2 DESC LIMIT 1"
    ))
    .bind(account_id)
    .bind(id)
    .bind(name_or_id)
    .fetch_optional(pool)
    .await
}

/// The account's own trunks, then (when `with_platform`) the platform's; each by name.
pub async fn list(pool: &PgPool, account_id: Option<i64>, with_platform: bool) -> Result<Vec<Trunk>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {TRUNK_COLUMNS} FROM trunks
         WHERE ($1::bigint IS NOT NULL AND account_id = $1) OR ($2 AND account_id IS NULL)
         ORDER BY account_id IS NULL, name"
    ))
    .bind(account_id)
    .bind(with_platform)
    .fetch_all(pool)
    .await
}

pub async fn delete(pool: &PgPool, id: Uuid) -> Result<bool, RepoError> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query("DELETE FROM trunks WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => RepoError::HoldsNumbers,
        _ => RepoError::Database(e),
    })?;
    let deleted = deleted.rows_affected() == 1;
    commit_announced(tx).await?;
    Ok(deleted)
}
