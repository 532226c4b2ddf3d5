//! Vonage's Reports API v2 for voice (`/v2/reports/records`, `/v2/reports`) and the report
//! files it links to (`/v3/media/{id}`). Basic auth (api_key:api_secret), as the Node SDK's
//! `@vonage/reports` sends it.

use super::error::ApiError;
use super::extract::{base_url, json_body, AppCaller, KeySecretCaller};
use crate::accounts::Bucket;
use crate::reports::{self, jobs, records, Caller, FilterError};
use crate::startup::AppState;
use crate::validation::InvalidParam;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use uuid::Uuid;

fn filter_error(e: FilterError) -> ApiError {
    match e {
        FilterError::Invalid(params) => ApiError::invalid(params),
        FilterError::OtherAccount => {
            ApiError::Forbidden("account_id must be your own api_key: Outdial has no subaccounts, and reports on other accounts are refused".into())
        }
    }
}

fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::BadRequest(format!("The query string cannot be read: {e}")))
}

/// `GET /v2/reports/records`: one page of records, the next page at `_links.next.href`.
pub async fn records(req: HttpRequest, state: web::Data<AppState>, caller: KeySecretCaller) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(&req)?;
    let params: HashMap<String, String> = pairs.iter().cloned().collect();
    let account = &caller.0;
    let filter = reports::parse_filter(&params, &Caller { account_id: account.id, api_key: &account.api_key }).map_err(filter_error)?;
    let (page_size, after) = reports::parse_page(&params).map_err(ApiError::invalid)?;
    // Calls named by id all fit in one page.
    let limit = page_size.max(filter.ids.len() as i64);
    let mut legs = records::page(&state.pool, &filter, after, limit + 1).await?;
    let more = legs.len() as i64 > limit;
    legs.truncate(limit as usize);

    let base = base_url(&req, &state);
    let path = format!("{base}/v2/reports/records");
    let mut links = json!({ "self": { "href": href(&path, &pairs, None) } });
    let mut body = Map::new();
    if more {
        let cursor = legs.last().expect("more than a page").cursor().encode();
        links["next"] = json!({ "href": href(&path, &pairs, Some(&cursor)) });
        body.insert("cursor".into(), json!(cursor));
    }
    if !filter.ids.is_empty() {
        let missing: Vec<String> = filter.ids.iter().filter(|id| !legs.iter().any(|l| l.uuid == **id)).map(Uuid::to_string).collect();
        if !missing.is_empty() {
            body.insert("ids_not_found".into(), json!(missing.join(",")));
        }
    }
    body.insert("_links".into(), links);
    body.insert("request_id".into(), json!(Uuid::new_v4()));
    body.insert("request_status".into(), json!("SUCCESS"));
    body.insert("received_at".into(), json!(reports::format_time(chrono::Utc::now())));
    body.insert("product".into(), json!(filter.product.as_str()));
    body.insert("account_id".into(), json!(account.api_key));
    for key in ["date_start", "date_end", "direction", "status", "id", "call_id", "to", "from", "country", "network"] {
        if let Some(v) = params.get(key) {
            body.insert(key.into(), json!(v));
        }
    }
    body.insert("items_count".into(), json!(legs.len()));
    let records: Vec<Value> = legs.iter().map(|l| records::to_json(filter.product, &account.api_key, l)).collect();
    body.insert("records".into(), Value::Array(records));
    Ok(HttpResponse::Ok().json(Value::Object(body)))
}

/// The request's own URL, with `cursor` replaced.
fn href(path: &str, pairs: &[(String, String)], cursor: Option<&str>) -> String {
    let mut url = url::Url::parse(path).expect("base URL is absolute");
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs.iter().filter(|(k, _)| cursor.is_none() || (k != "cursor" && k != "iv")) {
            query.append_pair(k, v);
        }
        if let Some(c) = cursor {
            query.append_pair("cursor", c);
        }
    }
    url.to_string()
}

/// `POST /v2/reports`: a job producing the zipped CSV of every matching record.
pub async fn create(req: HttpRequest, state: web::Data<AppState>, caller: KeySecretCaller, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let value = json_body(&req, &body)?;
    let Value::Object(object) = value else {
        return Err(ApiError::BadRequest("The request body must be a JSON object".into()));
    };
    // Flat, as the SDK sends it; a `filters` object is read as more top-level members.
    let mut echo = Map::new();
    for (k, v) in &object {
        match (k.as_str(), v) {
            ("filters", Value::Object(inner)) => {
                for (ik, iv) in inner {
                    echo.entry(ik.clone()).or_insert_with(|| iv.clone());
                }
            }
            _ => {
                echo.insert(k.clone(), v.clone());
            }
        }
    }
    echo.remove("cursor");
    echo.remove("page_size");
    // The members are stored (jsonb) and read back by the job: only scalars that come back as
    // they went in. Lists, objects and floats of extreme size are ignored (no filter is one).
    echo.retain(|_, v| match v {
        Value::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.abs() < 1e15),
        Value::Array(_) | Value::Object(_) => false,
        _ => true,
    });
    let params: HashMap<String, String> = echo.iter().map(|(k, v)| (k.clone(), jobs::plain(v))).collect();
    let account = &caller.0;
    let filter = reports::parse_filter(&params, &Caller { account_id: account.id, api_key: &account.api_key });
    let callback_url = params.get("callback_url").map(|s| s.trim()).filter(|s| !s.is_empty());
    let bad_callback = callback_url.is_some_and(|u| url::Url::parse(u).map_or(true, |u| !matches!(u.scheme(), "http" | "https")));
    let filter = match (filter, bad_callback) {
        (Ok(f), false) => f,
        (Ok(_), true) => return Err(ApiError::invalid(vec![callback_problem()])),
        (Err(FilterError::Invalid(mut problems)), bad) => {
            if bad {
                problems.push(callback_problem());
            }
            return Err(ApiError::invalid(problems));
        }
        (Err(e), _) => return Err(filter_error(e)),
    };
    let job = jobs::create(&state.pool, account.id, filter.product, &Value::Object(echo), callback_url).await?;
    Ok(HttpResponse::Accepted().json(job.to_json(&base_url(&req, &state))))
}

fn callback_problem() -> InvalidParam {
    InvalidParam { name: "callback_url".into(), reason: "must be an absolute http(s) URL".into() }
}

/// An unknown id or another account's report: 404 alike.
fn report_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| not_found(raw))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("No report {id} exists for this account"))
}

/// `GET /v2/reports/{id}`: the job's state; once SUCCESS, `_links.download_report`.
pub async fn get(req: HttpRequest, state: web::Data<AppState>, caller: KeySecretCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = report_id(&path)?;
    let job = jobs::get(&state.pool, caller.0.id, id).await?.ok_or_else(|| not_found(&path))?;
    Ok(HttpResponse::Ok().json(job.to_json(&base_url(&req, &state))))
}

/// `DELETE /v2/reports/{id}`: cancels a job that has not finished (→ ABORTED).
pub async fn cancel(req: HttpRequest, state: web::Data<AppState>, caller: KeySecretCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = report_id(&path)?;
    match jobs::cancel(&state.pool, caller.0.id, id).await? {
        jobs::Cancel::Cancelled(job) => Ok(HttpResponse::Ok().json(job.to_json(&base_url(&req, &state)))),
        jobs::Cancel::TooLate(job) => Err(ApiError::Conflict(format!("The report is {} already and can no longer be cancelled", job.status))),
        jobs::Cancel::NotFound => Err(not_found(&path)),
    }
}

/// `GET /v3/media/{id}`: a report file, to its own account only. Basic auth (what
/// `@vonage/reports` sends) or an application JWT of the same account.
pub async fn media(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().get(..7).is_some_and(|s| s.eq_ignore_ascii_case("bearer ")));
    let account_id = if bearer {
        let caller = AppCaller::extract(&req).await?;
        state.rate_limit(caller.account_id(), Bucket::OtherRequests, state.settings.limits.other_requests_per_second)?;
        caller.account_id()
    } else {
        KeySecretCaller::extract(&req).await?.0.id
    };
    let missing = || ApiError::NotFound(format!("No file {} exists for this account", path.as_str()));
    let id = Uuid::parse_str(&path).map_err(|_| missing())?;
    let file = jobs::file(&state.pool, account_id, id).await?.ok_or_else(missing)?;
    Ok(HttpResponse::Ok()
        .content_type(file.content_type)
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}\"", file.name)))
        .body(file.bytes))
}
