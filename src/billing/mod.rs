//! Rating: the longest matching prefix of the rate deck prices a leg, in exact decimals.

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use sqlx::PgPool;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Rate {
    pub prefix: String,
    pub network: String,
    pub price_per_minute: Decimal,
    pub initial_increment_s: i32,
    pub subsequent_increment_s: i32,
    pub connection_fee: Decimal,
}

/// The deck entry in force at `at` whose prefix is the longest that `number` starts with.
pub async fn rate_for(pool: &PgPool, number: &str, at: DateTime<Utc>) -> Result<Option<Rate>, sqlx::Error> {
    sqlx::query_as(
        "SELECT prefix, network, price_per_minute, initial_increment_s, subsequent_increment_s, connection_fee
         FROM rates WHERE starts_with($1, prefix) AND effective_from <= $2
         ORDER BY length(prefix) DESC, effective_from DESC LIMIT 1",
    )
    .bind(number)
    .bind(at)
    .fetch_optional(pool)
    .await
}

/// Seconds billed for `duration_s` answered seconds: nothing for 0, else the initial increment,
/// then whole subsequent increments.
pub fn billed_seconds(duration_s: i64, initial: i32, subsequent: i32) -> i64 {
    if duration_s <= 0 {
        return 0;
    }
    let (initial, subsequent) = (i64::from(initial.max(1)), i64::from(subsequent.max(1)));
    if duration_s <= initial {
        initial
    } else {
        initial + (duration_s - initial + subsequent - 1) / subsequent * subsequent
    }
}

impl Rate {
    /// connection fee + per-minute rate × billed seconds / 60, rounded half-up to 8 decimals.
    /// An unanswered leg (0 s) costs nothing, connection fee included.
    pub fn price(&self, duration_s: i64) -> Decimal {
        let billed = billed_seconds(duration_s, self.initial_increment_s, self.subsequent_increment_s);
        if billed == 0 {
            return Decimal::ZERO;
        }
        let usage = self.price_per_minute * Decimal::from(billed) / Decimal::from(60);
        (self.connection_fee + usage).round_dp_with_strategy(8, RoundingStrategy::MidpointAwayFromZero)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn increments_at_the_edges() {
        assert_eq!(billed_seconds(0, 60, 60), 0);
        assert_eq!(billed_seconds(1, 60, 60), 60);
        assert_eq!(billed_seconds(60, 60, 60), 60);
        assert_eq!(billed_seconds(61, 60, 60), 120);
        assert_eq!(billed_seconds(31, 30, 6), 36);
        assert_eq!(billed_seconds(7, 1, 1), 7);
    }

    #[test]
    fn price_is_exact() {
        let rate = Rate {
            prefix: "44".into(),
            network: "GB-FIXED".into(),
            price_per_minute: Decimal::from_str("0.1").unwrap(),
            initial_increment_s: 1,
            subsequent_increment_s: 1,
            connection_fee: Decimal::ZERO,
        };
        assert_eq!(rate.price(2).to_string(), "0.00333333");
        assert_eq!(rate.price(0), Decimal::ZERO);
    }
}
