//! The live-calls console at `/console`: one HTML page, a small script and a style sheet
//! (compiled in), and the JSON and event-stream endpoints the page uses. Signed in with the
//! account's api_key and api_secret (a session cookie, `session`); not part of the Vonage API,
//! so outside the OpenAPI document (tests/openapi.rs knows these routes live here).

mod session;
mod stream;

use super::control::send_for_account;
use super::endpoint::endpoint;
use super::error::ApiError;
use super::extract::{base_url, client_address, json_body};
use crate::accounts::Bucket;
use crate::auth::BasicAuthError;
use crate::calls::control::Command;
use crate::console::{detail, operator, sessions};
use crate::startup::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use serde_json::{json, Value};
use session::ConsoleCaller;
use std::time::Duration;

const PAGE: &str = include_str!("assets/console.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

/// Scripts and styles from this origin only (none inline), requests only to it, no framing;
/// `data:` images for the page's empty icon (else the browser asks for /favicon.ico).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; media-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/console").get(page));
    cfg.service(endpoint("/console/console.js").get(script));
    cfg.service(endpoint("/console/console.css").get(style));
    cfg.service(endpoint("/console/api/session").get(whoami).post(sign_in).delete(sign_out));
    cfg.service(endpoint("/console/api/stream").get(stream::stream));
    cfg.service(endpoint("/console/api/calls/{uuid}").get(call_detail).post(control));
    cfg.service(endpoint("/console/api/recordings/{id}").get(recording));
    cfg.service(endpoint("/console/api/operator").get(operator_view));
}

/// A static asset with the headers every console response carries.
fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    secured(HttpResponse::Ok()).content_type(content_type).insert_header((header::CACHE_CONTROL, "no-cache")).body(body)
}

fn secured(mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
    builder
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    builder
}

/// JSON for the page: never cached (it is one account's).
fn private_json(body: &Value) -> HttpResponse {
    secured(HttpResponse::Ok()).insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

async fn page() -> HttpResponse {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}

fn who(session: &sessions::Session) -> Value {
    let account = &session.account;
    json!({
        "account": { "id": account.id, "name": account.name, "api_key": account.api_key, "operator": account.rates_admin },
        "csrf_token": session.csrf_token,
    })
}

async fn whoami(caller: ConsoleCaller) -> HttpResponse {
    private_json(&who(&caller.session))
}

/// A sign-in must come from this origin's page: a browser sends Origin with every POST, and
/// another site's page cannot send a JSON body here without a CORS preflight we never grant.
fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()) else { return true };
    let host = req.connection_info().host().to_string();
    origin.split_once("://").is_some_and(|(_, rest)| rest == host)
}

async fn sign_in(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    if !same_origin(&req) {
        return Err(ApiError::Forbidden("Sign in from the console page of this server".into()));
    }
    if req.headers().get(header::CONTENT_TYPE).is_none() {
        return Err(ApiError::UnsupportedMediaType("Send the credentials as application/json".into()));
    }
    let body = json_body(&req, &body)?;
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    let (Some(api_key), Some(api_secret)) = (field("api_key"), field("api_secret")) else {
        return Err(ApiError::BadRequest("Give your api_key and api_secret".into()));
    };
    let account = state.basic.verify(&api_key, &api_secret, client_address(&req, &state)).await.map_err(|e| match e {
        BasicAuthError::Database(db) => db.into(),
        BasicAuthError::Throttled(retry_after) => ApiError::LoginsThrottled { retry_after },
        _ => ApiError::Unauthorized { detail: "The api_key or api_secret is wrong".into(), challenge: "Cookie realm=\"outdial-console\"" },
    })?;
    let ttl = Duration::from_secs(state.settings.console.session_ttl_s.max(60));
    let opened = sessions::open(&state.pool, account.id, ttl).await?;
    let session = sessions::Session { account, csrf_token: opened.csrf_token };
    Ok(secured(HttpResponse::Ok())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::SET_COOKIE, session::set_cookie(&req, &state, &opened.token, ttl.as_secs())))
        .json(who(&session)))
}

async fn sign_out(req: HttpRequest, state: web::Data<AppState>, caller: ConsoleCaller) -> Result<HttpResponse, ApiError> {
    sessions::close(&state.pool, &caller.token).await?;
    Ok(secured(HttpResponse::NoContent()).insert_header((header::SET_COOKIE, session::clear_cookie(&req, &state))).finish())
}

/// The console's reads count against the account's request rate, as the API's do.
fn rate_limit(state: &AppState, caller: &ConsoleCaller) -> Result<(), ApiError> {
    state.rate_limit(caller.account().id, Bucket::OtherRequests, state.settings.limits.other_requests_per_second)
}

async fn call_detail(req: HttpRequest, state: web::Data<AppState>, caller: ConsoleCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    rate_limit(&state, &caller)?;
    let uuid = super::calls::parse_call_uuid(&path)?;
    let base = base_url(&req, &state);
    let found = detail::call_detail(&state.pool, caller.account().id, uuid, &base).await?;
    Ok(private_json(&found.ok_or_else(|| ApiError::NotFound(format!("Call {uuid} does not exist")))?))
}

/// `{"action": "hangup" | "mute" | "unmute"}`: the same command `PUT /v1/calls/{uuid}` stores.
async fn control(req: HttpRequest, state: web::Data<AppState>, caller: ConsoleCaller, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, &body)?;
    let command = match body.get("action").and_then(Value::as_str) {
        Some("hangup") => Command::Hangup,
        Some("mute") => Command::Mute,
        Some("unmute") => Command::Unmute,
        _ => return Err(ApiError::BadRequest("action must be one of hangup, mute, unmute".into())),
    };
    let name = command.name();
    let uuid = send_for_account(&state, caller.account().id, &path, command).await?;
    Ok(private_json(&json!({ "uuid": uuid, "action": name, "message": format!("{name} sent") })))
}

async fn recording(state: web::Data<AppState>, caller: ConsoleCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    rate_limit(&state, &caller)?;
    let not_found = || ApiError::NotFound(format!("Recording {} does not exist", path.as_str()));
    let id = uuid::Uuid::parse_str(&path).map_err(|_| not_found())?;
    let (content_type, bytes) = detail::recording(&state.pool, caller.account().id, id).await?.ok_or_else(not_found)?;
    Ok(secured(HttpResponse::Ok()).content_type(content_type).insert_header((header::CACHE_CONTROL, "private, no-store")).body(bytes))
}

async fn operator_view(state: web::Data<AppState>, caller: ConsoleCaller) -> Result<HttpResponse, ApiError> {
    if !caller.account().rates_admin {
        return Err(ApiError::Forbidden("Only operator accounts (rates_admin) see trunks and instances".into()));
    }
    rate_limit(&state, &caller)?;
    Ok(private_json(&operator::overview(&state.pool).await?))
}
