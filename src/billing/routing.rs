//! Routing lookup: what a call to a number would be rated at and how the carrier would treat
//! it, without placing the call.

use super::Rate;
use crate::carrier::{BehaviourTable, CalleeBehaviour};
use chrono::Utc;
use serde_json::{json, Value};
use sqlx::PgPool;

/// How the carrier would handle the number: the simulated callee's behaviour and where it
/// comes from (the account's sandbox setting, the configured suffix table, or its default).
#[derive(Debug, Clone)]
pub struct Route {
    pub carrier: String,
    pub source: &'static str,
    pub suffix: Option<String>,
    pub behaviour: CalleeBehaviour,
}

pub async fn route_for(pool: &PgPool, carrier: &str, table: &BehaviourTable, account_id: i64, number: &str) -> Result<Route, sqlx::Error> {
    let carrier = carrier.to_string();
    if let Some(set) = crate::sandbox::get(pool, account_id, number).await? {
        if let Ok(behaviour) = serde_json::from_value::<CalleeBehaviour>(set) {
            return Ok(Route { carrier, source: "sandbox", suffix: None, behaviour });
        }
    }
    let suffix = &number[number.len().saturating_sub(3)..];
    Ok(match table.by_suffix.get(suffix) {
        Some(behaviour) => Route { carrier, source: "suffix", suffix: Some(suffix.to_string()), behaviour: behaviour.clone() },
        None => Route { carrier, source: "default", suffix: None, behaviour: table.default.clone() },
    })
}

/// The lookup's answer: the rate fields (null when no deck entry matches) and the route.
pub fn to_json(dialed: &str, calling: Option<&str>, rate: Option<&Rate>, route: &Route) -> Value {
    let money = |d: rust_decimal::Decimal| format!("{d:.8}");
    json!({
        "dialed_number": dialed,
        "calling_number": calling,
        "prefix": rate.map(|r| &r.prefix),
        "country": rate.and_then(|r| r.country.as_ref()),
        "network": rate.map(|r| &r.network),
        "price_per_minute": rate.map(|r| money(r.price_per_minute)),
        "initial_increment_s": rate.map(|r| r.initial_increment_s),
        "subsequent_increment_s": rate.map(|r| r.subsequent_increment_s),
        "connection_fee": rate.map(|r| money(r.connection_fee)),
        "first_increment_price": rate.map(|r| money(r.first_increment_price())),
        "effective_from": rate.and_then(|r| r.effective_from).map(crate::calls::format_time),
        "currency": super::CURRENCY,
        "route": {
            "carrier": route.carrier,
            "source": route.source,
            "suffix": route.suffix,
            "behaviour": route.behaviour,
        },
    })
}

/// Rate and route of `dialed` for the account, as of now.
pub async fn lookup(pool: &PgPool, carrier: &str, table: &BehaviourTable, account_id: i64, dialed: &str, calling: Option<&str>) -> Result<Value, sqlx::Error> {
    let rate = super::rate_for(pool, dialed, Utc::now()).await?;
    let route = route_for(pool, carrier, table, account_id, dialed).await?;
    Ok(to_json(dialed, calling, rate.as_ref(), &route))
}
