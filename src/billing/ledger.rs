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

/// A leg's credit hold raised to `total` (the price of all the seconds granted to it), taken
/// only while `instance` still owns the leg (so a presumed-dead instance cannot hold credit
/// after a takeover) and only if the account's free credit covers the increase and what the leg
/// could use in all (free credit plus what it holds) is at least `min_usable`.
#[derive(Debug, Clone)]
pub struct Hold {
    pub instance: uuid::Uuid,
    pub leg: uuid::Uuid,
    pub account_id: i64,
    pub total: Decimal,
    pub min_usable: Decimal,
}

/// Takes several holds in one statement (see `billing::holds`), each true when taken. Each
/// account's row is locked once for them all; in order, each hold sees the free credit less
/// what the holds before it asked for (taken or not: refusing too many is safe, the leg asks
/// again). Reads the account row alone, not pending settlements: a settlement never frees less
/// than it debits, so the row errs on the safe side.
///
/// Commits without waiting for its WAL flush, so the account row (which every answered call of
/// the account updates here) is locked only while the statement runs, not through a flush.
/// The books stay right either way: the leg's next write commits durably and a flush covers
/// all earlier WAL; if the database crashes before that, the hold is lost with its row's
/// `credit_reserved`, and the leg's end releases what the row says it held (nothing).
pub async fn take_holds(pool: &PgPool, holds: &[Hold]) -> Result<Vec<bool>, sqlx::Error> {
    let taken: Vec<(uuid::Uuid, bool)> = sqlx::query_as(
        "WITH async AS (SELECT set_config('synchronous_commit', 'off', true)),
              req AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::numeric[], $5::numeric[]) WITH ORDINALITY
                      AS r(leg, instance, account_id, total, min_usable, i)),
              -- Probes per leg (LATERAL: a join may be planned on stale statistics as a scan of
              -- every running leg, or of every call of the account).
              own AS (SELECT req.*, c.credit_reserved AS held FROM req
                      CROSS JOIN LATERAL (SELECT 1 FROM call_jobs j WHERE j.call_uuid = req.leg AND j.locked_by = req.instance
                                          AND j.state = 'running' LIMIT 1) owned
                      CROSS JOIN LATERAL (SELECT account_id, credit_reserved FROM calls WHERE uuid = req.leg LIMIT 1) c
                      WHERE c.account_id = req.account_id),
              -- Locked: the free credit read is the latest and stays so until the commit.
              acc AS (SELECT id, balance + credit_limit - reserved AS free FROM accounts
                      WHERE id IN (SELECT account_id FROM own) ORDER BY id FOR UPDATE),
              ranked AS (SELECT own.*, acc.free - COALESCE(sum(own.total - own.held) OVER (PARTITION BY own.account_id ORDER BY own.i
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS free_before
                         FROM own JOIN acc ON acc.id = own.account_id),
              taken AS (SELECT * FROM ranked WHERE free_before >= GREATEST(total, min_usable) - held),
              a AS (UPDATE accounts SET reserved = reserved + t.increase
                    FROM (SELECT account_id, sum(total - held) AS increase FROM taken GROUP BY account_id) t
                    WHERE accounts.id = t.account_id),
              c AS (UPDATE calls SET credit_reserved = taken.total FROM taken WHERE calls.uuid = taken.leg)
         SELECT req.leg, EXISTS (SELECT 1 FROM taken WHERE taken.leg = req.leg) FROM req, async ORDER BY req.i",
    )
    .bind(holds.iter().map(|h| h.leg).collect::<Vec<_>>())
    .bind(holds.iter().map(|h| h.instance).collect::<Vec<_>>())
    .bind(holds.iter().map(|h| h.account_id).collect::<Vec<_>>())
    .bind(holds.iter().map(|h| h.total).collect::<Vec<_>>())
    .bind(holds.iter().map(|h| h.min_usable).collect::<Vec<_>>())
    .fetch_all(pool)
    .await?;
    Ok(taken.into_iter().map(|(_, taken)| taken).collect())
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
