//! The credit check on call creation, without a database query per create in the common case.
//!
//! A create is refused (402) when the account cannot pay the first billing increment. That is an
//! early courtesy, not the safeguard: an answered call holds its credit and ends when the credit
//! runs out. So the check may use an account's free credit as read up to `FRESH` ago, and when
//! that exceeds the dearest first increment in the whole deck, no per-number lookup is needed.
//! Only accounts close to their limit pay for the exact check.

use super::ledger::{self, Shortfall};
use rust_decimal::Decimal;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FRESH: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct CreditGate {
    /// Per account: its free credit (balance + credit limit - held), and when it was read.
    free: Mutex<HashMap<i64, (Instant, Decimal)>>,
    /// The dearest first increment (connection fee included) of any deck entry, and when read.
    dearest: Mutex<Option<(Instant, Decimal)>>,
}

impl CreditGate {
    pub async fn check(&self, pool: &PgPool, account_id: i64, number: &str) -> Result<Result<(), Shortfall>, sqlx::Error> {
        let free = self.free.lock().unwrap().get(&account_id).filter(|(at, _)| at.elapsed() < FRESH).map(|(_, d)| *d);
        let free = match free {
            Some(free) => free,
            None => {
                let free = ledger::funds(pool, account_id).await?.map_or(Decimal::ZERO, |f| f.available());
                self.free.lock().unwrap().insert(account_id, (Instant::now(), free));
                free
            }
        };
        if free >= self.dearest_first_increment(pool).await? {
            return Ok(Ok(()));
        }
        ledger::check_can_call(pool, account_id, number).await
    }

    async fn dearest_first_increment(&self, pool: &PgPool) -> Result<Decimal, sqlx::Error> {
        if let Some((at, price)) = *self.dearest.lock().unwrap() {
            if at.elapsed() < FRESH {
                return Ok(price);
            }
        }
        let price: Option<Decimal> = sqlx::query_scalar(
            // Every entry, superseded and future ones too: a higher bar only means more exact checks.
            "SELECT max(connection_fee + price_per_minute * initial_increment_s / 60) FROM rates",
        )
        .fetch_one(pool)
        .await?;
        let price = price.unwrap_or(Decimal::ZERO);
        *self.dearest.lock().unwrap() = Some((Instant::now(), price));
        Ok(price)
    }
}
