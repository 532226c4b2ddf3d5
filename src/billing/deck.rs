//! The rate deck as CSV: the one file format for import and export, checked row by row so a bad
//! file is refused whole, with every problem named by line and column. Each row prices calls to
//! its prefix and, in its last column, calls from the network to Outdial's numbers under it.

use super::{Rate, RATE_COLUMNS};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use std::collections::HashMap;
use std::str::FromStr;

/// The header every deck file starts with, in this order. Files from before inbound prices
/// (the first eight columns only) are still read.
pub const HEADER: [&str; 9] = [
    "prefix",
    "country",
    "network",
    "price_per_minute",
    "initial_increment_s",
    "subsequent_increment_s",
    "connection_fee",
    "effective_from",
    "inbound_price_per_minute",
];
const OUTBOUND_ONLY_COLUMNS: usize = 8;

/// One row of the deck.
#[derive(Debug, Clone, PartialEq)]
pub struct DeckRow {
    /// How calls to the prefix are rated.
    pub rate: Rate,
    /// What a minute of a call to one of our numbers under the prefix costs; None: free.
    pub inbound_price_per_minute: Option<Decimal>,
}

/// A deck file's rows, and whether it has the inbound price column (merging a file without it
/// keeps the inbound prices already stored).
#[derive(Debug, Clone, PartialEq)]
pub struct Deck {
    pub rows: Vec<DeckRow>,
    pub with_inbound: bool,
}

const MAX_INCREMENT_S: i32 = 3600;
/// NUMERIC(20, 8) holds 12 digits before the point.
const MAX_PRICE: i64 = 999_999_999_999;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    /// 1-based line of the file (the header is line 1).
    pub line: u64,
    /// The column's header name; None when the problem is the row as a whole.
    pub column: Option<String>,
    pub reason: String,
}

fn error(line: u64, column: Option<&str>, reason: impl Into<String>) -> RowError {
    RowError { line, column: column.map(str::to_string), reason: reason.into() }
}

/// Parses a whole deck; any problem anywhere refuses the file, with every problem listed.
pub fn parse(bytes: &[u8]) -> Result<Deck, Vec<RowError>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).trim(csv::Trim::All).from_reader(bytes);
    let header = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(vec![error(1, None, format!("the header cannot be read: {e}"))]),
    };
    let names: Vec<&str> = header.iter().collect();
    let with_inbound = names == HEADER;
    if !with_inbound && names != HEADER[..OUTBOUND_ONLY_COLUMNS] {
        return Err(vec![error(
            1,
            None,
            format!("the header must be exactly: {} (or without its last column, for outbound prices only)", HEADER.join(",")),
        )]);
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    // (prefix, effective_from) → the line that set it first.
    let mut seen: HashMap<(String, Option<DateTime<Utc>>), u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(error(line, None, format!("the row cannot be read: {e}")));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != names.len() {
            errors.push(error(line, None, format!("has {} fields; every row has {}, as the header", record.len(), names.len())));
            continue;
        }
        let before = errors.len();
        let field = |i: usize| record.get(i).unwrap_or("");
        let mut bad = |column: &str, reason: &str| errors.push(error(line, Some(column), reason));

        let prefix = field(0).strip_prefix('+').unwrap_or(field(0)).to_string();
        if prefix.len() > 15 || !prefix.chars().all(|c| c.is_ascii_digit()) {
            bad("prefix", "must be up to 15 digits (empty: every number)");
        }
        let country = match field(1) {
            "" => None,
            c if c.len() == 2 && c.chars().all(|ch| ch.is_ascii_alphabetic()) => Some(c.to_ascii_uppercase()),
            _ => {
                bad("country", "must be an ISO 3166 two-letter code, or empty");
                None
            }
        };
        let network = field(2).to_string();
        if network.is_empty() || network.chars().count() > 64 {
            bad("network", "must be a label of 1 to 64 characters");
        }
        let mut money = |column: &str, raw: &str| match Decimal::from_str(raw) {
            Ok(d) if d.is_sign_negative() && !d.is_zero() => {
                bad(column, "must not be negative");
                None
            }
            Ok(d) if d.scale() > 8 => {
                bad(column, "has more than 8 decimal places");
                None
            }
            Ok(d) if d > Decimal::from(MAX_PRICE) => {
                bad(column, "is too large");
                None
            }
            Ok(d) => Some(d),
            Err(_) => {
                bad(column, "must be a decimal number such as 0.0125");
                None
            }
        };
        let price_per_minute = money("price_per_minute", field(3));
        let connection_fee = if field(6).is_empty() { Some(Decimal::ZERO) } else { money("connection_fee", field(6)) };
        // Empty (or no such column): calls to our numbers under the prefix are free.
        let inbound = if field(8).is_empty() { None } else { money("inbound_price_per_minute", field(8)) };
        let mut increment = |column: &str, raw: &str| match raw.parse::<i32>() {
            Ok(n) if (1..=MAX_INCREMENT_S).contains(&n) => Some(n),
            _ => {
                bad(column, &format!("must be a whole number of seconds from 1 to {MAX_INCREMENT_S}"));
                None
            }
        };
        let initial = increment("initial_increment_s", field(4));
        let subsequent = increment("subsequent_increment_s", field(5));
        let effective_from = match parse_time(field(7)) {
            Ok(t) => t,
            Err(()) => {
                bad("effective_from", "must be an RFC 3339 time (2026-12-01T00:00:00Z) or a date (2026-12-01, midnight UTC), or empty for always");
                None
            }
        };
        if errors.len() > before {
            continue;
        }
        if let Some(first) = seen.insert((prefix.clone(), effective_from), line) {
            errors.push(error(line, Some("prefix"), format!("repeats the prefix and effective_from of line {first}")));
            continue;
        }
        let rate = Rate {
            prefix,
            country,
            network,
            price_per_minute: price_per_minute.expect("checked"),
            initial_increment_s: initial.expect("checked"),
            subsequent_increment_s: subsequent.expect("checked"),
            connection_fee: connection_fee.expect("checked"),
            effective_from,
        };
        rows.push(DeckRow { rate, inbound_price_per_minute: inbound });
    }
    if rows.is_empty() && errors.is_empty() {
        errors.push(error(2, None, "the file holds no rates"));
    }
    if errors.is_empty() {
        Ok(Deck { rows, with_inbound })
    } else {
        Err(errors)
    }
}

/// Empty: always in force. Otherwise RFC 3339, or a date meaning its midnight UTC.
fn parse_time(raw: &str) -> Result<Option<DateTime<Utc>>, ()> {
    if raw.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| ())?;
    Ok(Some(date.and_hms_opt(0, 0, 0).ok_or(())?.and_utc()))
}

/// How an import treats the rates already in the deck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Add the file's rates; a rate with the same prefix and effective_from is replaced.
    Merge,
    /// The file becomes the whole deck.
    Replace,
}

/// Stores the deck's rows in one transaction: all of them or, on any error, none. Merging a file
/// without the inbound column leaves the inbound prices of the rows it replaces as they were.
pub async fn import(pool: &PgPool, deck: &Deck, mode: ImportMode) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if mode == ImportMode::Replace {
        sqlx::query("DELETE FROM rates").execute(&mut *tx).await?;
    }
    let rates: Vec<&Rate> = deck.rows.iter().map(|r| &r.rate).collect();
    let column = |f: fn(&Rate) -> String| rates.iter().map(|r| f(r)).collect::<Vec<String>>();
    let done = sqlx::query(
        "INSERT INTO rates (prefix, country, network, price_per_minute, initial_increment_s, subsequent_increment_s, connection_fee, effective_from,
                           inbound_price_per_minute)
         SELECT p, c, n, ppm, i, s, f, COALESCE(e, '-infinity'), ippm
         FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::int[], $6::int[], $7::numeric[], $8::timestamptz[], $9::numeric[])
              AS t(p, c, n, ppm, i, s, f, e, ippm)
         ON CONFLICT (prefix, effective_from) DO UPDATE SET country = EXCLUDED.country, network = EXCLUDED.network,
             price_per_minute = EXCLUDED.price_per_minute, initial_increment_s = EXCLUDED.initial_increment_s,
             subsequent_increment_s = EXCLUDED.subsequent_increment_s, connection_fee = EXCLUDED.connection_fee,
             inbound_price_per_minute = CASE WHEN $10 THEN EXCLUDED.inbound_price_per_minute ELSE rates.inbound_price_per_minute END",
    )
    .bind(column(|r| r.prefix.clone()))
    .bind(rates.iter().map(|r| r.country.clone()).collect::<Vec<_>>())
    .bind(column(|r| r.network.clone()))
    .bind(rates.iter().map(|r| r.price_per_minute).collect::<Vec<_>>())
    .bind(rates.iter().map(|r| r.initial_increment_s).collect::<Vec<_>>())
    .bind(rates.iter().map(|r| r.subsequent_increment_s).collect::<Vec<_>>())
    .bind(rates.iter().map(|r| r.connection_fee).collect::<Vec<_>>())
    .bind(rates.iter().map(|r| r.effective_from).collect::<Vec<_>>())
    .bind(deck.rows.iter().map(|r| r.inbound_price_per_minute).collect::<Vec<_>>())
    .bind(deck.with_inbound)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(done)
}

/// The whole deck, by prefix then effective_from.
pub async fn all(pool: &PgPool) -> Result<Deck, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        rate: Rate,
        inbound_price_per_minute: Option<Decimal>,
    }
    let rows: Vec<Row> =
        sqlx::query_as(&format!("SELECT {RATE_COLUMNS}, inbound_price_per_minute FROM rates ORDER BY prefix, rates.effective_from")).fetch_all(pool).await?;
    let rows = rows.into_iter().map(|r| DeckRow { rate: r.rate, inbound_price_per_minute: r.inbound_price_per_minute }).collect();
    Ok(Deck { rows, with_inbound: true })
}

/// The deck as CSV, in the format `parse` reads (with the inbound column).
pub fn to_csv(deck: &Deck) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record(HEADER);
    for row in &deck.rows {
        let r = &row.rate;
        let _ = writer.write_record([
            r.prefix.clone(),
            r.country.clone().unwrap_or_default(),
            r.network.clone(),
            r.price_per_minute.normalize().to_string(),
            r.initial_increment_s.to_string(),
            r.subsequent_increment_s.to_string(),
            r.connection_fee.normalize().to_string(),
            r.effective_from.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default(),
            row.inbound_price_per_minute.map(|p| p.normalize().to_string()).unwrap_or_default(),
        ]);
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deck_round_trips() {
        let file = "prefix,country,network,price_per_minute,initial_increment_s,subsequent_increment_s,connection_fee,effective_from,inbound_price_per_minute\n\
                    ,,UNKNOWN,0.1,60,60,,,\n44,gb,GB-FIXED,0.012,1,1,0.001,2026-12-01,0.004\n";
        let deck = parse(file.as_bytes()).unwrap();
        assert!(deck.with_inbound);
        assert_eq!(deck.rows.len(), 2);
        assert_eq!(deck.rows[1].rate.country.as_deref(), Some("GB"));
        assert_eq!(deck.rows[0].inbound_price_per_minute, None);
        assert_eq!(deck.rows[1].inbound_price_per_minute, Some(Decimal::new(4, 3)));
        assert_eq!(parse(to_csv(&deck).as_bytes()).unwrap(), deck);
    }

    #[test]
    fn an_outbound_only_deck_still_reads() {
        let file = "prefix,country,network,price_per_minute,initial_increment_s,subsequent_increment_s,connection_fee,effective_from\n\
                    44,GB,GB-FIXED,0.012,1,1,,\n";
        let deck = parse(file.as_bytes()).unwrap();
        assert!(!deck.with_inbound);
        assert_eq!(deck.rows[0].inbound_price_per_minute, None);
        // A row must have as many fields as its header, and the header must be one of the two.
        let nine_in_eight = "prefix,country,network,price_per_minute,initial_increment_s,subsequent_increment_s,connection_fee,effective_from\n\
                             44,GB,GB-FIXED,0.012,1,1,,,0.1\n";
        assert_eq!(parse(nine_in_eight.as_bytes()).unwrap_err()[0].line, 2);
        let seven = "prefix,country,network,price_per_minute,initial_increment_s,subsequent_increment_s,connection_fee\n44,GB,X,1,1,1,\n";
        assert_eq!(parse(seven.as_bytes()).unwrap_err()[0].line, 1);
        let bad_inbound = format!("{}\n44,GB,X,1,1,1,,,-0.5\n", HEADER.join(","));
        let errors = parse(bad_inbound.as_bytes()).unwrap_err();
        assert_eq!((errors[0].line, errors[0].column.as_deref()), (2, Some("inbound_price_per_minute")));
    }

    #[test]
    fn every_bad_field_is_named() {
        let file = "prefix,country,network,price_per_minute,initial_increment_s,subsequent_increment_s,connection_fee,effective_from\n\
                    44a,GBR,,-1,0,6,x,yesterday\n1,US,US,0.1,6\n1,US,US,0.1,6,6,,\n1,US,US,0.2,6,6,,\n";
        let errors = parse(file.as_bytes()).unwrap_err();
        let named: Vec<(u64, Option<&str>)> = errors.iter().map(|e| (e.line, e.column.as_deref())).collect();
        assert_eq!(
            named,
            vec![
                (2, Some("prefix")),
                (2, Some("country")),
                (2, Some("network")),
                (2, Some("price_per_minute")),
                (2, Some("connection_fee")),
                (2, Some("initial_increment_s")),
                (2, Some("effective_from")),
                (3, None),
                (5, Some("prefix")),
            ]
        );
    }
}
