//! SQL for applications.

use super::{Application, ApplicationSpec};
use crate::cache::{self, Changed};
use sqlx::PgPool;
use uuid::Uuid;

const COLUMNS: &str = "id, account_id, name, public_key_pem, answer_url, answer_method, event_url, event_method, \
                       fallback_answer_url, fallback_answer_method, signed_callbacks, created_at";

fn split(hook: &Option<(String, String)>, default_method: &str) -> (Option<String>, String) {
    match hook {
        Some((url, method)) => (Some(url.clone()), method.clone()),
        None => (None, default_method.to_string()),
    }
}

pub async fn insert(pool: &PgPool, account_id: i64, spec: &ApplicationSpec, public_key_pem: &str) -> Result<Application, sqlx::Error> {
    let (answer_url, answer_method) = split(&spec.answer, "GET");
    let (event_url, event_method) = split(&spec.event, "POST");
    let (fallback_url, fallback_method) = split(&spec.fallback_answer, "GET");
    sqlx::query_as(&format!(
        "INSERT INTO applications (id, account_id, name, public_key_pem, answer_url, answer_method, event_url, event_method,
                                   fallback_answer_url, fallback_answer_method, signed_callbacks)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(account_id)
    .bind(&spec.name)
    .bind(public_key_pem)
    .bind(answer_url)
    .bind(answer_method)
    .bind(event_url)
    .bind(event_method)
    .bind(fallback_url)
    .bind(fallback_method)
    .bind(spec.signed_callbacks)
    .fetch_one(pool)
    .await
}

/// Replaces the application's settings; the key stays unless a new public key is given. Every
/// instance's caches of it are told.
pub async fn update(pool: &PgPool, account_id: i64, id: Uuid, spec: &ApplicationSpec) -> Result<Option<Application>, sqlx::Error> {
    let (answer_url, answer_method) = split(&spec.answer, "GET");
    let (event_url, event_method) = split(&spec.event, "POST");
    let (fallback_url, fallback_method) = split(&spec.fallback_answer, "GET");
    let mut tx = pool.begin().await?;
    let updated: Option<Application> = sqlx::query_as(&format!(
        "UPDATE applications SET name = $3, public_key_pem = COALESCE($4, public_key_pem), answer_url = $5, answer_method = $6,
                event_url = $7, event_method = $8, fallback_answer_url = $9, fallback_answer_method = $10,
                signed_callbacks = $11, updated_at = now()
         WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(account_id)
    .bind(&spec.name)
    .bind(&spec.public_key_pem)
    .bind(answer_url)
    .bind(answer_method)
    .bind(event_url)
    .bind(event_method)
    .bind(fallback_url)
    .bind(fallback_method)
    .bind(spec.signed_callbacks)
    .fetch_optional(&mut *tx)
    .await?;
    if updated.is_some() {
        cache::announce(&mut tx, Changed::Application(id)).await?;
    }
    tx.commit().await?;
    Ok(updated)
}

pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<Application>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM applications WHERE id = $1 AND deleted_at IS NULL")).bind(id).fetch_optional(pool).await
}

pub async fn find_for_account(pool: &PgPool, account_id: i64, id: Uuid) -> Result<Option<Application>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM applications WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL"))
        .bind(id)
        .bind(account_id)
        .fetch_optional(pool)
        .await
}

/// One page (0-based `page`) of the account's applications, oldest first, and the total count.
pub async fn page(pool: &PgPool, account_id: i64, page: i64, page_size: i64) -> Result<(Vec<Application>, i64), sqlx::Error> {
    let (total,): (i64,) = sqlx::query_as("SELECT count(*) FROM applications WHERE account_id = $1 AND deleted_at IS NULL")
        .bind(account_id)
        .fetch_one(pool)
        .await?;
    let items = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM applications WHERE account_id = $1 AND deleted_at IS NULL ORDER BY created_at, id LIMIT $2 OFFSET $3"
    ))
    .bind(account_id)
    .bind(page_size)
    .bind(page * page_size)
    .fetch_all(pool)
    .await?;
    Ok((items, total))
}

/// Deletes the application for its owner: its JWTs stop working (every instance's caches are
/// told); its numbers are unlinked (calls to them find no application); its calls keep their
/// history.
pub async fn delete(pool: &PgPool, account_id: i64, id: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query("UPDATE applications SET deleted_at = now() WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL")
        .bind(id)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
    let deleted = done.rows_affected() == 1;
    if deleted {
        sqlx::query("UPDATE numbers SET application_id = NULL WHERE application_id = $1").bind(id).execute(&mut *tx).await?;
        cache::announce(&mut tx, Changed::Application(id)).await?;
    }
    tx.commit().await?;
    Ok(deleted)
}
