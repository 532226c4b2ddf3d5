//! Rating and balances: the longest matching prefix of the rate deck prices a leg, in exact
//! decimals, and every priced leg is debited from its account's ledger.

pub mod deck;
pub mod gate;
pub mod holds;
pub mod ledger;
pub mod routing;

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use sqlx::PgPool;

/// Rates, prices and balances are in this currency.
pub const CURRENCY: &str = "EUR";

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Rate {
    pub prefix: String,
    pub country: Option<String>,
    pub network: String,
    pub price_per_minute: Decimal,
    pub initial_increment_s: i32,
    pub subsequent_increment_s: i32,
    pub connection_fee: Decimal,
    /// None: in force since always (stored as '-infinity').
    pub effective_from: Option<DateTime<Utc>>,
}

/// The columns of a `Rate`; '-infinity' becomes NULL (chrono cannot hold it).
pub const RATE_COLUMNS: &str = "prefix, country, network, price_per_minute, initial_increment_s, subsequent_increment_s, \
    connection_fee, CASE WHEN effective_from = '-infinity' THEN NULL ELSE effective_from END AS effective_from";

/// SQL: the deck row's prefix is a prefix of the number in `param` ('' included). Written as
/// `prefix = ANY(every prefix of the number)` so it is a few probes of the (prefix, …) key,
/// not a scan of the deck (decks run to tens of thousands of rows).
pub fn prefix_of(param: &str) -> String {
    format!("prefix = ANY(ARRAY(SELECT left({param}, n) FROM generate_series(0, length({param})) AS n))")
}

/// The columns of a `Rate` that prices an inbound leg: the row's inbound price per minute (NULL:
/// calls to the prefix's numbers are free) with its increments, and no connection fee (nothing
/// is dialled).
pub const INBOUND_RATE_COLUMNS: &str = "prefix, country, network, COALESCE(inbound_price_per_minute, 0) AS price_per_minute, \
    initial_increment_s, subsequent_increment_s, 0::numeric AS connection_fee, \
    CASE WHEN effective_from = '-infinity' THEN NULL ELSE effective_from END AS effective_from";

/// The deck entry in force at `at` whose prefix is the longest that `number` starts with; of
/// entries with that prefix, the one that took effect last.
pub async fn rate_for(pool: &PgPool, number: &str, at: DateTime<Utc>) -> Result<Option<Rate>, sqlx::Error> {
    longest_prefix(pool, RATE_COLUMNS, number, at).await
}

/// What an inbound leg to `msisdn` (the number called) costs: the deck entry `rate_for` would
/// pick for a call to it, priced at its `inbound_price_per_minute`.
pub async fn inbound_rate(pool: &PgPool, msisdn: &str, at: DateTime<Utc>) -> Result<Option<Rate>, sqlx::Error> {
    longest_prefix(pool, INBOUND_RATE_COLUMNS, msisdn, at).await
}

/// The deck entry of `rate_for`, read as `columns`.
async fn longest_prefix(pool: &PgPool, columns: &str, number: &str, at: DateTime<Utc>) -> Result<Option<Rate>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {columns} FROM rates WHERE {} AND effective_from <= $2
         ORDER BY length(prefix) DESC, rates.effective_from DESC LIMIT 1",
        prefix_of("$1")
    ))
    .bind(number)
    .bind(at)
    .fetch_optional(pool)
    .await
}

/// `rate_for` of several numbers at once (one round trip): the rates in the numbers' order.
pub async fn rates_for(pool: &PgPool, numbers: &[&str], at: DateTime<Utc>) -> Result<Vec<Option<Rate>>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        rate: OptionalRate,
    }
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT r.* FROM unnest($1::text[]) WITH ORDINALITY AS dialled(number, i)
         LEFT JOIN LATERAL (SELECT {RATE_COLUMNS} FROM rates WHERE {} AND effective_from <= $2
                            ORDER BY length(prefix) DESC, rates.effective_from DESC LIMIT 1) r ON true
         ORDER BY dialled.i",
        prefix_of("dialled.number")
    ))
    .bind(numbers)
    .bind(at)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| r.rate.into_rate()).collect())
}

/// A `Rate` read through a LEFT JOIN: every column NULL when no deck entry matched.
#[derive(sqlx::FromRow)]
pub(crate) struct OptionalRate {
    prefix: Option<String>,
    country: Option<String>,
    network: Option<String>,
    price_per_minute: Option<Decimal>,
    initial_increment_s: Option<i32>,
    subsequent_increment_s: Option<i32>,
    connection_fee: Option<Decimal>,
    effective_from: Option<DateTime<Utc>>,
}

impl OptionalRate {
    pub(crate) fn into_rate(self) -> Option<Rate> {
        Some(Rate {
            prefix: self.prefix?,
            country: self.country,
            network: self.network?,
            price_per_minute: self.price_per_minute?,
            initial_increment_s: self.initial_increment_s?,
            subsequent_increment_s: self.subsequent_increment_s?,
            connection_fee: self.connection_fee?,
            effective_from: self.effective_from,
        })
    }
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

    /// What an answered call costs at least: the connection fee and the first increment.
    pub fn first_increment_price(&self) -> Decimal {
        self.price(1)
    }

    /// The longest answered duration (a whole number of increments) whose price `available`
    /// covers: 0 when not even the first increment is covered, None when calls are free.
    pub fn affordable_seconds(&self, available: Decimal) -> Option<i64> {
        if available < self.first_increment_price() {
            return Some(0);
        }
        if self.price_per_minute.is_zero() {
            return None;
        }
        let (initial, subsequent) = (i64::from(self.initial_increment_s.max(1)), i64::from(self.subsequent_increment_s.max(1)));
        // Whole seconds the credit left after the fee pays for, then down to the increment grid.
        let seconds = ((available - self.connection_fee) * Decimal::from(60) / self.price_per_minute).floor();
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX / 2).max(initial);
        let mut affordable = initial + (seconds - initial) / subsequent * subsequent;
        // Rounding of the price can only lower it; this guard keeps the promise regardless.
        while affordable > initial && self.price(affordable) > available {
            affordable -= subsequent;
        }
        Some(affordable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn rate(per_minute: &str, initial: i32, subsequent: i32, fee: &str) -> Rate {
        Rate {
            prefix: "44".into(),
            country: Some("GB".into()),
            network: "GB-FIXED".into(),
            price_per_minute: Decimal::from_str(per_minute).unwrap(),
            initial_increment_s: initial,
            subsequent_increment_s: subsequent,
            connection_fee: Decimal::from_str(fee).unwrap(),
            effective_from: None,
        }
    }

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
        let rate = rate("0.1", 1, 1, "0");
        assert_eq!(rate.price(2).to_string(), "0.00333333");
        assert_eq!(rate.price(0), Decimal::ZERO);
    }

    #[test]
    fn affordable_seconds_stay_on_the_grid_and_within_the_credit() {
        let fr = rate("0.6", 30, 6, "0.05");
        // 30 s cost 0.35; each further 6 s cost 0.06.
        assert_eq!(fr.affordable_seconds(Decimal::from_str("0.34").unwrap()), Some(0));
        assert_eq!(fr.affordable_seconds(Decimal::from_str("0.35").unwrap()), Some(30));
        assert_eq!(fr.affordable_seconds(Decimal::from_str("0.40").unwrap()), Some(30));
        assert_eq!(fr.affordable_seconds(Decimal::from_str("0.41").unwrap()), Some(36));
        for cents in 35..500 {
            let available = Decimal::new(cents, 2);
            let seconds = fr.affordable_seconds(available).unwrap();
            assert!(fr.price(seconds) <= available);
            assert!(fr.price(seconds + 1) > available, "{seconds} s is the longest for {available}");
        }
        assert_eq!(rate("0", 1, 1, "0").affordable_seconds(Decimal::ZERO), None);
    }
}
