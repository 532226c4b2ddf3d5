//! Vonage's Numbers API (`rest.nexmo.com`) for what applies self-hosted: an account lists its
//! numbers, links them to its applications, buys numbers the operator made available and gives
//! them back. Credentials as Vonage takes them: api_key/api_secret query parameters or Basic.
//! Refusals are HTTP 420 with Vonage's `error-code`/`error-code-label` (see `ApiError::NumberRefused`).

use super::error::ApiError;
use super::extract::{json_body, KeySecretCaller};
use crate::numbers::{self, repo, Listing, Number, Refusal};
use crate::startup::AppState;
use crate::validation::{InvalidParam, Problems};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

/// `GET /account/numbers`: the account's numbers, filtered and paged as Vonage does.
pub async fn owned(req: HttpRequest, state: web::Data<AppState>, caller: KeySecretCaller) -> Result<HttpResponse, ApiError> {
    listing(&req, &state, Listing::Owned, repo::Owner::Account(caller.0.id), Number::to_owned_json).await
}

/// `GET /number/search`: the numbers the operator made available, in one country.
pub async fn search(req: HttpRequest, state: web::Data<AppState>, _caller: KeySecretCaller) -> Result<HttpResponse, ApiError> {
    listing(&req, &state, Listing::Available, repo::Owner::NoneForSale, Number::to_available_json).await
}

async fn listing(req: &HttpRequest, state: &AppState, listing: Listing, owner: repo::Owner, show: fn(&Number) -> Value) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("The query string cannot be read: {e}")))?;
    let filter = numbers::parse_filter(&query, listing).map_err(ApiError::invalid)?;
    let (found, count) = repo::page(&state.pool, owner, &filter).await?;
    Ok(HttpResponse::Ok().json(json!({ "count": count, "numbers": found.iter().map(show).collect::<Vec<_>>() })))
}

/// `POST /number/update`: links the number to `app_id` (or, Vonage's older form,
/// `voiceCallbackType=app` with the id as `voiceCallbackValue`); without either, unlinks it.
/// The messaging fields (`moHttpUrl`, …) do not apply and are ignored.
pub async fn update(req: HttpRequest, state: web::Data<AppState>, caller: KeySecretCaller, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let params = parameters(&req, &body)?;
    let mut p = Problems::default();
    let msisdn = msisdn(&params, &mut p);
    let country = country(&params, &mut p, false);
    let callback_type = params.get("voiceCallbackType").map(String::as_str);
    if let Some(other) = callback_type.filter(|t| *t != "app") {
        return Err(refused(Refusal::CallbackUnsupported(other.to_string())));
    }
    let (key, raw) = match (params.get("app_id"), callback_type) {
        (Some(id), _) => ("app_id", Some(id)),
        (None, Some(_)) => ("voiceCallbackValue", params.get("voiceCallbackValue")),
        (None, None) => ("app_id", None),
    };
    let application_id = match raw.map(|id| Uuid::parse_str(id.trim())) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            p.add(key, "must be an application id (a UUID)");
            None
        }
        None if callback_type.is_some() => {
            p.add("voiceCallbackValue", "is required with voiceCallbackType: the application id");
            None
        }
        None => None,
    };
    let msisdn = checked(p, msisdn)?;
    let linked = repo::link(&state.pool, caller.0.id, &msisdn, country.as_deref(), application_id).await?.map_err(refused)?;
    tracing::info!(msisdn = %linked.msisdn, application = ?linked.application_id, account = caller.0.id, "number linked");
    Ok(success())
}

/// `POST /number/buy`: takes a number the operator made available in `country`.
pub async fn buy(req: HttpRequest, state: web::Data<AppState>, caller: KeySecretCaller, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let params = parameters(&req, &body)?;
    let mut p = Problems::default();
    let msisdn = msisdn(&params, &mut p);
    let country = country(&params, &mut p, true);
    no_subaccount(&params, &caller, &mut p);
    let (msisdn, country) = checked(p, msisdn.zip(country))?;
    let bought = repo::buy(&state.pool, caller.0.id, &msisdn, &country).await?.map_err(refused)?;
    tracing::info!(msisdn = %bought.msisdn, account = caller.0.id, "number bought");
    Ok(success())
}

/// `POST /number/cancel`: gives the number back; it is unlinked and available to buy again.
pub async fn cancel(req: HttpRequest, state: web::Data<AppState>, caller: KeySecretCaller, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let params = parameters(&req, &body)?;
    let mut p = Problems::default();
    let msisdn = msisdn(&params, &mut p);
    let country = country(&params, &mut p, false);
    no_subaccount(&params, &caller, &mut p);
    let msisdn = checked(p, msisdn)?;
    let released = repo::cancel(&state.pool, caller.0.id, &msisdn, country.as_deref()).await?.map_err(refused)?;
    tracing::info!(msisdn = %released.msisdn, account = caller.0.id, "number cancelled: available again");
    Ok(success())
}

fn success() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "error-code": "200", "error-code-label": "success" }))
}

fn refused(refusal: Refusal) -> ApiError {
    ApiError::NumberRefused { label: refusal.to_string(), params: Vec::new() }
}

/// The value once no parameter has a problem; else every problem, in Vonage's refusal.
fn checked<T>(p: Problems, value: Option<T>) -> Result<T, ApiError> {
    match (p.into_result(()), value) {
        (Ok(()), Some(value)) => Ok(value),
        (Err(params), _) => Err(wrong_parameters(params)),
        (Ok(()), None) => unreachable!("a missing value is always a problem"),
    }
}

fn wrong_parameters(params: Vec<InvalidParam>) -> ApiError {
    let reasons: Vec<String> = params.iter().map(|p| format!("{} {}", p.name, p.reason)).collect();
    ApiError::NumberRefused { label: format!("Wrong parameters: {}", reasons.join("; ")), params }
}

fn msisdn(params: &HashMap<String, String>, p: &mut Problems) -> Option<String> {
    match params.get("msisdn") {
        None => {
            p.add("msisdn", "is required");
            None
        }
        Some(raw) => numbers::normalize_msisdn(raw).or_else(|| {
            p.add("msisdn", numbers::MSISDN_RULE);
            None
        }),
    }
}

fn country(params: &HashMap<String, String>, p: &mut Problems, required: bool) -> Option<String> {
    match params.get("country") {
        None if required => {
            p.add("country", "is required");
            None
        }
        None => None,
        Some(raw) => numbers::normalize_country(raw).or_else(|| {
            p.add("country", numbers::COUNTRY_RULE);
            None
        }),
    }
}

/// Vonage's `target_api_key` acts on a subaccount; there are none here but the caller itself.
fn no_subaccount(params: &HashMap<String, String>, caller: &KeySecretCaller, p: &mut Problems) {
    if params.get("target_api_key").is_some_and(|key| *key != caller.0.api_key) {
        p.add("target_api_key", "must be left out (or be your own api_key): there are no subaccounts");
    }
}

/// The request's parameters as Vonage reads them: the query string, then the body (form-encoded
/// as the SDKs send it, or a JSON object), values that are empty left out.
fn parameters(req: &HttpRequest, body: &[u8]) -> Result<HashMap<String, String>, ApiError> {
    let mut params: HashMap<String, String> = url::form_urlencoded::parse(req.query_string().as_bytes()).into_owned().collect();
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let json = content_type.starts_with("application/json") || content_type.contains("+json") || (content_type.is_empty() && body.trim_ascii_start().starts_with(b"{"));
    if body.trim_ascii().is_empty() {
        // Everything in the query string (or nothing).
    } else if json {
        let value = json_body(req, body)?;
        let Some(object) = value.as_object() else {
            return Err(ApiError::BadRequest("The request body must be a JSON object of parameters".into()));
        };
        for (key, value) in object {
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(ApiError::BadRequest(format!("The parameter {key} must be a string"))),
            };
            params.insert(key.clone(), text);
        }
    } else if content_type.is_empty() || content_type.starts_with("application/x-www-form-urlencoded") {
        params.extend(url::form_urlencoded::parse(body).into_owned());
    } else {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type '{content_type}' is not supported; send the parameters as application/x-www-form-urlencoded (as the SDKs do) or application/json"
        )));
    }
    params.retain(|_, v| !v.trim().is_empty());
    if params.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) {
        return Err(ApiError::BadRequest(super::extract::NUL_REFUSED.into()));
    }
    Ok(params)
}
