//! Console sign-in: the session cookie, and the extractor that checks it (and, on requests that
//! change something, the CSRF token).

use crate::accounts::Account;
use crate::console::sessions::{self, Session};
use crate::http::error::ApiError;
use crate::startup::AppState;
use actix_web::dev::Payload;
use actix_web::http::{header, Method};
use actix_web::{web, FromRequest, HttpRequest};
use std::future::Future;
use std::pin::Pin;

pub const COOKIE: &str = "outdial_console";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session token from the Cookie header, if the request has one.
pub fn session_token(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Whether the page was reached over https (directly, or as a proxy in front reports it).
fn secure(req: &HttpRequest, state: &AppState) -> bool {
    state.settings.http.public_base_url.starts_with("https://") || req.connection_info().scheme() == "https"
}

/// The Set-Cookie value carrying `token`: HttpOnly (scripts never see it), SameSite=Strict (no
/// other site's page sends it), only under /console, and Secure over https.
pub fn set_cookie(req: &HttpRequest, state: &AppState, token: &str, max_age_s: u64) -> String {
    let secure = if secure(req, state) { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}")
}

pub fn clear_cookie(req: &HttpRequest, state: &AppState) -> String {
    set_cookie(req, state, "", 0)
}

pub fn signed_out() -> ApiError {
    ApiError::Unauthorized {
        detail: "You are not signed in to the console (or your session expired); sign in with your api_key and api_secret".into(),
        challenge: "Cookie realm=\"outdial-console\"",
    }
}

/// A signed-in console. On any method but GET and HEAD, the request must also carry the
/// session's CSRF token in X-CSRF-Token: refused with 403 otherwise.
pub struct ConsoleCaller {
    pub session: Session,
    pub token: String,
}

impl ConsoleCaller {
    pub fn account(&self) -> &Account {
        &self.session.account
    }
}

impl FromRequest for ConsoleCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().expect("AppState is registered").clone();
        let token = session_token(req);
        let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD);
        let csrf = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        Box::pin(async move {
            let token = token.ok_or_else(signed_out)?;
            let session = sessions::find(&state.pool, &token).await?.ok_or_else(signed_out)?;
            if changes_state && !csrf.is_some_and(|c| sessions::same_token(&c, &session.csrf_token)) {
                return Err(ApiError::Forbidden(
                    "This request changes something and must carry the console's CSRF token in the X-CSRF-Token header".into(),
                ));
            }
            Ok(ConsoleCaller { session, token })
        })
    }
}
