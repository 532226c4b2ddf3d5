//! Rates (`/v1/rates`), routing lookup (`/v1/routing/lookup`) and Vonage's Account API balance
//! (`/account/get-balance`).

use super::error::ApiError;
use super::extract::{json_body, AccountCaller, KeySecretCaller, ReportCaller};
use crate::accounts::Bucket;
use crate::billing::{self, deck, deck::ImportMode};
use crate::startup::AppState;
use crate::validation::{Fields, Problems};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use rust_decimal::prelude::ToPrimitive;
use serde_json::json;
use std::collections::HashMap;

const CSV: &str = "text/csv; charset=utf-8";

/// `POST /v1/rates`: a CSV deck, checked whole, then stored in one transaction. The deck is
/// global, so only accounts flagged `rates_admin` may change it.
pub async fn import(req: HttpRequest, state: web::Data<AppState>, caller: AccountCaller, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    // Read now, not from the credentials cache, so revoking the right takes effect at once.
    let allowed = crate::accounts::repo::find(&state.pool, caller.0.id).await?.is_some_and(|a| a.rates_admin);
    if !allowed {
        return Err(ApiError::Forbidden(
            "The rate deck is shared by every account; only an account allowed to manage it (outdial account update --rates-admin true) may import rates".into(),
        ));
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if !content_type.starts_with("text/csv") {
        return Err(ApiError::UnsupportedMediaType(format!("Content-Type '{content_type}' is not supported; send the deck as text/csv")));
    }
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("The query string cannot be read: {e}")))?;
    let mode = match query.get("mode").map(String::as_str) {
        None | Some("merge") => ImportMode::Merge,
        Some("replace") => ImportMode::Replace,
        Some(_) => {
            return Err(ApiError::invalid(vec![crate::validation::InvalidParam { name: "mode".into(), reason: "must be merge or replace".into() }]))
        }
    };
    let body = read_limited(payload, state.settings.http.max_rates_body_bytes).await?;
    let rates = deck::parse(&body).map_err(|rows| ApiError::InvalidRows {
        detail: format!("The rate deck has {} problem(s); nothing was imported. See invalid_rows.", rows.len()),
        rows,
    })?;
    let imported = deck::import(&state.pool, &rates, mode).await?;
    Ok(HttpResponse::Ok().json(json!({
        "imported": imported,
        "mode": if mode == ImportMode::Replace { "replace" } else { "merge" },
    })))
}

/// The body, up to `limit` bytes (http.max_rates_body_bytes, not the JSON bodies' limit).
async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("The request body could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `GET /v1/rates`: the whole deck as CSV, in the format import reads.
pub async fn export(state: web::Data<AppState>, _caller: AccountCaller) -> Result<HttpResponse, ApiError> {
    let rates = deck::all(&state.pool).await?;
    Ok(HttpResponse::Ok()
        .content_type(CSV)
        .insert_header((header::CONTENT_DISPOSITION, "attachment; filename=\"rates.csv\""))
        .body(deck::to_csv(&rates)))
}

/// `POST /v1/routing/lookup`: the rate, the carrier route and the SIP trunks (in the order they
/// would be tried) a call would get, without calling. An application JWT or the account's Basic
/// credentials; the number as `dialed_number` or `to`; `trunk` forces one by name (`sip.trunk`).
pub async fn lookup(req: HttpRequest, state: web::Data<AppState>, caller: ReportCaller, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let account_id = caller.0;
    // Basic callers were counted when their credentials were checked; JWT callers are counted here.
    let bearer = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim_start().get(..7).is_some_and(|s| s.eq_ignore_ascii_case("bearer ")));
    if bearer {
        state.rate_limit(account_id, Bucket::OtherRequests, state.settings.limits.other_requests_per_second)?;
    }
    let value = json_body(&req, &body)?;
    let mut problems = Problems::default();
    let (dialed, calling, trunk) = match Fields::of(&value, "", &mut problems) {
        Some(mut f) => {
            let key = if !f.has("dialed_number") && f.has("to") { "to" } else { "dialed_number" };
            if !f.has(key) {
                f.bad(key, "is required: the number to look up (`to` is accepted too)");
            }
            let trunk = f.string("trunk");
            if trunk.as_deref().is_some_and(|t| t.trim().is_empty()) {
                f.bad("trunk", "must not be empty (leave it out to route by prefix)");
            }
            (e164(&mut f, key), e164(&mut f, "calling_number"), trunk)
        }
        None => (None, None, None),
    };
    problems.into_result(()).map_err(ApiError::invalid)?;
    let dialed = dialed.expect("no problems means dialed_number parsed");
    let carrier = &state.settings.carrier;
    let mut answer = billing::routing::lookup(&state.pool, &carrier.kind, &carrier.simulated, account_id, &dialed, calling.as_deref()).await?;
    let trunks = crate::trunks::plan(&state.pool, account_id, &dialed, trunk.as_deref()).await.map_err(|e| match e {
        crate::trunks::RoutingError::Database(db) => db.into(),
        other => ApiError::invalid(vec![crate::validation::InvalidParam { name: "trunk".into(), reason: other.to_string() }]),
    })?;
    answer["number"] = json!(dialed);
    answer["trunks"] = trunks
        .iter()
        .map(|r| {
            let t = &r.trunk;
            json!({"id": t.id, "name": t.name, "host": t.host, "port": t.port, "transport": t.transport, "priority": t.priority,
                   "owner": t.owner(), "prefix_matched": r.prefix_matched})
        })
        .collect();
    Ok(HttpResponse::Ok().json(answer))
}

/// An optional E.164 number field, without its `+`.
fn e164(f: &mut Fields, key: &str) -> Option<String> {
    let number = f.string(key)?;
    if crate::validation::is_e164(&number) {
        Some(number.trim_start_matches('+').to_string())
    } else {
        f.bad(key, "must be an E.164 number: 7 to 15 digits, optionally after a +, not starting with 0");
        None
    }
}

/// `GET /account/get-balance`, as Vonage's Account API: the balance in EUR, no auto reload.
pub async fn balance(state: web::Data<AppState>, caller: KeySecretCaller) -> Result<HttpResponse, ApiError> {
    let funds = billing::ledger::funds(&state.pool, caller.0.id).await?.ok_or_else(|| ApiError::NotFound("The account no longer exists".into()))?;
    // The SDKs read a JSON number; the ledger keeps the exact value.
    let value = funds.balance.round_dp(8).to_f64().unwrap_or(0.0);
    Ok(HttpResponse::Ok().json(json!({ "value": value, "autoReload": false })))
}
