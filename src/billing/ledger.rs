//! Balances: an append-only ledger per account, and the balance cached on the account row by
//! the same statement that appends each entry. Calls debit it (engine::store), credits add to it.

use super::{OptionalRate, Rate, RATE_COLUMNS};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;

#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub struct Funds {
    pub balance: Decimal,
    pub credit_limit: Decimal,
    /// Held by the account's answered calls still running.
    pub reserved: Decimal,
}

impl Funds {
    /// What new spending may use: the balance may go down to -credit_limit, and what running
    /// calls hold is spoken for.
    pub fn available(&self) -> Decimal {
        self.balance + self.credit_limit - self.reserved
    }
}

/// The account row plus what is still pending in `account_settlements`: exact at once.
const FUNDS_COLUMNS: &str = "a.balance + COALESCE(p.amount, 0) AS balance, a.credit_limit, a.reserved - COALESCE(p.released, 0) AS reserved";
const PENDING_JOIN: &str =
    "LEFT JOIN LATERAL (SELECT sum(amount) AS amount, sum(released) AS released FROM account_settlements WHERE account_id = a.id) p ON true";

pub async fn funds(pool: &PgPool, account_id: i64) -> Result<Option<Funds>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {FUNDS_COLUMNS} FROM accounts a {PENDING_JOIN} WHERE a.id = $1")).bind(account_id).fetch_optional(pool).await
}

/// Applies pending settlements (finished legs' debits and released holds) to their accounts:
/// one update per account however many legs ended. Several instances may run it at once.
pub async fn settle(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let settled = sqlx::query(
        "WITH s AS (DELETE FROM account_settlements WHERE id IN (SELECT id FROM account_settlements ORDER BY id LIMIT 10000 FOR UPDATE SKIP LOCKED)
                    RETURNING account_id, amount, released),
              t AS (SELECT account_id, sum(amount) AS amount, sum(released) AS released FROM s GROUP BY account_id)
         UPDATE accounts a SET balance = a.balance + t.amount, reserved = a.reserved - t.released FROM t WHERE a.id = t.account_id",
    )
    .execute(pool)
    .await?;
    Ok(settled.rows_affected())
}

/// Settles every `interval` until aborted.
pub fn spawn_settler(pool: PgPool, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = settle(&pool).await {
                tracing::warn!(error = %e, "settling finished calls into account balances failed; retrying");
            }
        }
    })
}

/// The account's funds and the rate a call to `number` would get at `at`, in one round trip.
pub async fn funds_and_rate(pool: &PgPool, account_id: i64, number: &str, at: DateTime<Utc>) -> Result<(Funds, Option<Rate>), sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        balance: Decimal,
        credit_limit: Decimal,
        reserved: Decimal,
        #[sqlx(flatten)]
        rate: OptionalRate,
    }
    let row: Row = sqlx::query_as(&format!(
        "SELECT {FUNDS_COLUMNS}, r.* FROM accounts a {PENDING_JOIN}
         LEFT JOIN LATERAL (SELECT {RATE_COLUMNS} FROM rates WHERE {prefix} AND effective_from <= $3
                            ORDER BY length(prefix) DESC, rates.effective_from DESC LIMIT 1) r ON true
         WHERE a.id = $1",
        prefix = super::prefix_of("$2")
    ))
    .bind(account_id)
    .bind(number)
    .bind(at)
    .fetch_one(pool)
    .await?;
    let rate = row.rate.into_rate();
    Ok((Funds { balance: row.balance, credit_limit: row.credit_limit, reserved: row.reserved }, rate))
}

/// Raises what a running leg holds to `total` (the price of all the seconds granted to it), if
/// the account's free credit covers the increase; false otherwise. Only while `instance` still
/// owns the leg, so a presumed-dead instance cannot hold credit after a takeover. Reads the
/// account row alone, not pending settlements: a settlement never frees less than it debits,
/// so the row errs on the safe side; when it refuses, pending settlements are applied first and
/// the row asked again.
pub async fn reserve(pool: &PgPool, instance: uuid::Uuid, leg: uuid::Uuid, account_id: i64, total: Decimal) -> Result<bool, sqlx::Error> {
    let hold = Hold { instance, leg, account_id, total, min_usable: total };
    if hold_on_row(pool, &hold).await? {
        return Ok(true);
    }
    // Refused on the row alone: settle what is pending (it may free credit) and ask once more,
    // so a call near the limit is not cut off for a settlement not yet applied.
    settle(pool).await?;
    hold_on_row(pool, &hold).await
}

/// A leg's credit hold raised to `total`, taken only if what the leg could use in all (the
/// account row's free credit plus what the leg already holds) is at least `min_usable`.
pub struct Hold {
    pub instance: uuid::Uuid,
    pub leg: uuid::Uuid,
    pub account_id: i64,
    pub total: Decimal,
    pub min_usable: Decimal,
}

/// Takes the hold on the account row alone (see `reserve`); false when refused.
///
/// Commits without waiting for its WAL flush, so the account row (which every answered call of
/// the account updates here) is locked only while the statement runs, not through a flush.
/// The books stay right either way: the leg's next write commits durably and a flush covers
/// all earlier WAL; if the database crashes before that, the hold is lost with its row's
/// `credit_reserved`, and the leg's end releases what the row says it held (nothing).
pub async fn hold_on_row(pool: &PgPool, hold: &Hold) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "WITH async AS (SELECT set_config('synchronous_commit', 'off', true)),
              own AS (SELECT 1 FROM call_jobs WHERE call_uuid = $1 AND locked_by = $2 AND state = 'running'),
              held AS (SELECT credit_reserved FROM calls WHERE uuid = $1 AND EXISTS (SELECT 1 FROM own)),
              a AS (UPDATE accounts SET reserved = reserved + ($4 - (SELECT credit_reserved FROM held))
                    WHERE id = $3 AND EXISTS (SELECT 1 FROM held)
                      AND balance + credit_limit - reserved >= GREATEST($4, $5) - (SELECT credit_reserved FROM held)
                    RETURNING 1),
              c AS (UPDATE calls SET credit_reserved = $4 WHERE uuid = $1 AND EXISTS (SELECT 1 FROM a))
         SELECT EXISTS (SELECT 1 FROM a) FROM async",
    )
    .bind(hold.leg)
    .bind(hold.instance)
    .bind(hold.account_id)
    .bind(hold.total)
    .bind(hold.min_usable)
    .fetch_one(pool)
    .await
}

/// Why an account cannot place a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Shortfall {
    pub available: Decimal,
    pub needed: Decimal,
}

/// A call may be placed when the account can pay for its connection fee and first increment.
pub async fn check_can_call(pool: &PgPool, account_id: i64, number: &str) -> Result<Result<(), Shortfall>, sqlx::Error> {
    let (funds, rate) = funds_and_rate(pool, account_id, number, Utc::now()).await?;
    let needed = rate.map_or(Decimal::ZERO, |r| r.first_increment_price());
    Ok(if funds.available() >= needed { Ok(()) } else { Err(Shortfall { available: funds.available(), needed }) })
}

/// Appends a credit (positive) or adjustment to the ledger and returns the new balance.
pub async fn add_entry(pool: &PgPool, account_id: i64, amount: Decimal, kind: &str, note: Option<&str>) -> Result<Decimal, sqlx::Error> {
    sqlx::query_scalar(
        "WITH e AS (INSERT INTO account_ledger (account_id, amount, kind, note) VALUES ($1, $2, $3, $4) RETURNING account_id, amount)
         UPDATE accounts SET balance = balance + e.amount FROM e WHERE accounts.id = e.account_id
         RETURNING balance + COALESCE((SELECT sum(amount) FROM account_settlements WHERE account_id = accounts.id), 0)",
    )
    .bind(account_id)
    .bind(amount)
    .bind(kind)
    .bind(note)
    .fetch_one(pool)
    .await
}

pub async fn set_credit_limit(pool: &PgPool, account_id: i64, credit_limit: Decimal) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET credit_limit = $2 WHERE id = $1").bind(account_id).bind(credit_limit).execute(pool).await?;
    Ok(())
}

/// The balance recomputed from the ledger alone (what the cached balance must equal).
pub async fn ledger_sum(pool: &PgPool, account_id: i64) -> Result<Decimal, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(sum(amount), 0) FROM account_ledger WHERE account_id = $1").bind(account_id).fetch_one(pool).await
}
