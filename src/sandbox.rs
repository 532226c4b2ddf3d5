//! Sandbox: how the simulated network's callee behaves for one of the account's numbers.

use crate::carrier::CalleeBehaviour;
use serde_json::Value;
use sqlx::PgPool;

pub async fn set(pool: &PgPool, account_id: i64, number: &str, behaviour: &CalleeBehaviour) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sandbox_numbers (account_id, number, behaviour) VALUES ($1, $2, $3)
         ON CONFLICT (account_id, number) DO UPDATE SET behaviour = EXCLUDED.behaviour, updated_at = now()",
    )
    .bind(account_id)
    .bind(number)
    .bind(sqlx::types::Json(behaviour))
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn get(pool: &PgPool, account_id: i64, number: &str) -> Result<Option<Value>, sqlx::Error> {
    sqlx::query_scalar("SELECT behaviour FROM sandbox_numbers WHERE account_id = $1 AND number = $2")
        .bind(account_id)
        .bind(number)
        .fetch_optional(pool)
        .await
}

pub async fn delete(pool: &PgPool, account_id: i64, number: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM sandbox_numbers WHERE account_id = $1 AND number = $2")
        .bind(account_id)
        .bind(number)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

