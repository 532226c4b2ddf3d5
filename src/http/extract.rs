//! Request extractors: the authenticated caller, the public base URL and JSON bodies.

use super::error::ApiError;
use crate::accounts::{Account, Bucket};
use crate::auth::{AuthenticatedApp, BasicAuthError, JwtError};
use crate::startup::AppState;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use actix_web_httpauth::headers::authorization::{Basic, Scheme};
use serde_json::Value;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;

fn state(req: &HttpRequest) -> web::Data<AppState> {
    req.app_data::<web::Data<AppState>>().expect("AppState is registered").clone()
}

pub(super) fn authorization(req: &HttpRequest, scheme: &str) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim().to_string())
}

/// A caller holding a valid application JWT (Voice API).
pub struct AppCaller(pub AuthenticatedApp);

impl AppCaller {
    pub fn account_id(&self) -> i64 {
        self.0.application.account_id
    }
}

impl FromRequest for AppCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = state(req);
        let token = authorization(req, "Bearer");
        let client = client_address(req, &state);
        Box::pin(async move {
            let token = token.ok_or(JwtError::Missing).map_err(unauthorized_jwt)?;
            state.jwt.verify(&token, client).await.map(AppCaller).map_err(unauthorized_jwt)
        })
    }
}

/// Where a login attempt comes from, for throttling failures: the peer, or behind a proxy
/// (`auth.client_address_from_forwarded`) the address it appended to X-Forwarded-For. The last
/// one: earlier entries are whatever the client sent.
pub(super) fn client_address(req: &HttpRequest, state: &AppState) -> IpAddr {
    let peer = req.peer_addr().map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |a| a.ip());
    if !state.settings.auth.client_address_from_forwarded {
        return peer;
    }
    let appended = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).last();
    appended
        .map(str::trim)
        .and_then(|a| a.parse().ok().or_else(|| a.parse::<SocketAddr>().ok().map(|a| a.ip())))
        .unwrap_or(peer)
}

fn unauthorized_jwt(e: JwtError) -> ApiError {
    match e {
        JwtError::Database(db) => db.into(),
        JwtError::Throttled(retry_after) => ApiError::LoginsThrottled { retry_after },
        other => ApiError::Unauthorized {
            detail: format!(
                "You did not provide correct credentials: {other}. Send Authorization: Bearer <JWT signed RS256 with your application's private key>."
            ),
            challenge: "Bearer realm=\"outdial\"",
        },
    }
}

/// A caller holding api_key:api_secret (account APIs).
pub struct AccountCaller(pub Account);

impl FromRequest for AccountCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = state(req);
        let credentials = basic_credentials(req);
        let client = client_address(req, &state);
        Box::pin(async move { verify_account(&state, credentials, client).await.map(AccountCaller) })
    }
}

/// A caller of an account-wide read (reports): an application JWT of the account, or its
/// api_key:api_secret; the account is what counts.
pub struct ReportCaller(pub i64);

impl FromRequest for ReportCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if authorization(req, "Bearer").is_some() {
            let app = AppCaller::from_request(req, payload);
            Box::pin(async move { app.await.map(|c| ReportCaller(c.account_id())) })
        } else {
            let account = AccountCaller::from_request(req, payload);
            Box::pin(async move { account.await.map(|c| ReportCaller(c.0.id)) })
        }
    }
}

/// A caller holding api_key and api_secret as query parameters or as Basic credentials, as
/// Vonage's Account API takes them (`GET /account/get-balance`).
pub struct KeySecretCaller(pub Account);

impl FromRequest for KeySecretCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = state(req);
        let query = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string()).ok();
        let in_query = query.and_then(|q| Some((q.get("api_key")?.clone(), q.get("api_secret")?.clone())));
        let credentials = in_query.or_else(|| basic_credentials(req));
        let client = client_address(req, &state);
        Box::pin(async move { verify_account(&state, credentials, client).await.map(KeySecretCaller) })
    }
}

/// api_key and api_secret from `Authorization: Basic`; None when absent or unreadable.
fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    // The crate matches the scheme name case-sensitively, RFC 7235 does not: found here, then
    // handed over in the spelling it expects.
    let encoded = authorization(req, "Basic")?;
    let value = header::HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    let basic = Basic::parse(&value).ok()?;
    // "key:" (an empty secret) is a wrong secret, not missing credentials.
    Some((basic.user_id().to_string(), basic.password().unwrap_or_default().to_string()))
}

async fn verify_account(state: &AppState, credentials: Option<(String, String)>, client: IpAddr) -> Result<Account, ApiError> {
    let (key, secret) = credentials.ok_or(BasicAuthError::Missing).map_err(unauthorized_basic)?;
    let account = state.basic.verify(&key, &secret, client).await.map_err(unauthorized_basic)?;
    state.rate_limit(account.id, Bucket::OtherRequests, state.settings.limits.other_requests_per_second)?;
    Ok(account)
}

fn unauthorized_basic(e: BasicAuthError) -> ApiError {
    match e {
        BasicAuthError::Database(db) => db.into(),
        BasicAuthError::Throttled(retry_after) => ApiError::LoginsThrottled { retry_after },
        other => ApiError::Unauthorized {
            detail: format!("You did not provide correct credentials: {other}. Send Authorization: Basic base64(api_key:api_secret)."),
            challenge: "Basic realm=\"outdial\"",
        },
    }
}

/// The base URL clients reach us at, for absolute links: configured, or from the request.
pub fn base_url(req: &HttpRequest, state: &AppState) -> String {
    let configured = state.settings.http.public_base_url.trim_end_matches('/');
    if !configured.is_empty() {
        return configured.to_string();
    }
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

/// Parses a JSON body, insisting on a JSON content type when one is given.
pub fn json_body(req: &HttpRequest, body: &[u8]) -> Result<Value, ApiError> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        if !ct.starts_with("application/json") && !ct.contains("+json") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type '{ct}' is not supported; send the body as application/json"
            )));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("The request body is empty; send a JSON object".into()));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("The request body is not valid JSON: {e}")))
}
