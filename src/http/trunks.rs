//! `/v1/trunks`: SIP trunks. An account manages its own; platform trunks (the operator's) only
//! an account allowed to manage shared routing (`rates_admin`, as for the rate deck).

use super::error::ApiError;
use super::extract::{json_body, AccountCaller};
use crate::startup::AppState;
use crate::trunks::{self, repo::RepoError, Trunk};
use crate::validation::Problems;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use uuid::Uuid;

const PLATFORM_FORBIDDEN: &str =
    "Platform trunks are shared by every account; only an account allowed to manage them (outdial account update --rates-admin true) may see or change them";

/// Read now, not from the credentials cache, so revoking the right takes effect at once.
async fn is_admin(state: &AppState, account_id: i64) -> Result<bool, ApiError> {
    Ok(crate::accounts::repo::find(&state.pool, account_id).await?.is_some_and(|a| a.rates_admin))
}

fn repo_error(e: RepoError, platform: bool) -> ApiError {
    match e {
        RepoError::DuplicateName(name) => ApiError::Conflict(format!(
            "A trunk named {name} already exists {}; choose another name",
            if platform { "among the platform trunks" } else { "for this account" }
        )),
        RepoError::NoKey => ApiError::Unprocessable(format!("The server cannot store trunk passwords: {}", trunks::NO_KEY)),
        RepoError::HoldsNumbers => ApiError::Conflict("The trunk holds numbers (their calls arrive on it); the operator removes them first (outdial number remove)".into()),
        RepoError::Database(db) => db.into(),
    }
}

/// The trunk `raw` names, if the caller may see it: its own, or a platform trunk for an admin.
async fn visible(state: &AppState, caller: &AccountCaller, raw: &str) -> Result<Trunk, ApiError> {
    let not_found = || ApiError::NotFound(format!("Trunk {raw} does not exist"));
    let id = Uuid::parse_str(raw).map_err(|_| not_found())?;
    let trunk = trunks::repo::find(&state.pool, id).await?.ok_or_else(not_found)?;
    match trunk.account_id {
        Some(owner) if owner == caller.0.id => Ok(trunk),
        Some(_) => Err(not_found()),
        None if is_admin(state, caller.0.id).await? => Ok(trunk),
        None => Err(ApiError::Forbidden(PLATFORM_FORBIDDEN.into())),
    }
}

/// `POST /v1/trunks`; `"platform": true` creates a platform trunk (admins only).
pub async fn create(req: HttpRequest, state: web::Data<AppState>, caller: AccountCaller, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let value = json_body(&req, &body)?;
    let mut problems = Problems::default();
    let input = trunks::model::input_from_json(&value, &mut problems);
    let platform = match value.get("platform") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => {
            problems.add("platform", "must be true or false");
            false
        }
    };
    if platform && !is_admin(&state, caller.0.id).await? {
        return Err(ApiError::Forbidden(PLATFORM_FORBIDDEN.into()));
    }
    let spec = input.into_spec(None);
    let mut params = problems.0;
    let spec = match spec {
        Ok(spec) if params.is_empty() => spec,
        Ok(_) => return Err(ApiError::invalid(params)),
        Err(more) => {
            params.extend(more);
            return Err(ApiError::invalid(params));
        }
    };
    let owner = (!platform).then_some(caller.0.id);
    let trunk = trunks::repo::insert(&state.pool, state.settings.sip.credentials_key.as_ref(), owner, &spec).await.map_err(|e| repo_error(e, platform))?;
    tracing::info!(trunk = %trunk.id, name = %trunk.name, owner = trunk.owner(), "trunk created");
    Ok(HttpResponse::Created().json(trunk.to_json()))
}

/// `GET /v1/trunks`: the account's own trunks; for an admin, the platform's too.
pub async fn list(state: web::Data<AppState>, caller: AccountCaller) -> Result<HttpResponse, ApiError> {
    let admin = is_admin(&state, caller.0.id).await?;
    let trunks = trunks::repo::list(&state.pool, Some(caller.0.id), admin).await?;
    Ok(HttpResponse::Ok().json(json!({ "trunks": trunks.iter().map(Trunk::to_json).collect::<Vec<_>>() })))
}

pub async fn get(state: web::Data<AppState>, caller: AccountCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(visible(&state, &caller, &path).await?.to_json()))
}

/// `PUT /v1/trunks/{id}`: the fields given change, the others stay; `null` removes an
/// optional one (username, password, from_domain, cps, max_channels).
pub async fn update(req: HttpRequest, state: web::Data<AppState>, caller: AccountCaller, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let current = visible(&state, &caller, &path).await?;
    let value = json_body(&req, &body)?;
    let mut problems = Problems::default();
    let input = trunks::model::input_from_json(&value, &mut problems);
    if value.get("platform").is_some() {
        problems.add("platform", "cannot be changed; create the trunk again under the other owner");
    }
    let mut params = problems.0;
    let spec = match input.into_spec(Some(&current)) {
        Ok(spec) if params.is_empty() => spec,
        Ok(_) => return Err(ApiError::invalid(params)),
        Err(more) => {
            params.extend(more);
            return Err(ApiError::invalid(params));
        }
    };
    let platform = current.account_id.is_none();
    let trunk = trunks::repo::update(&state.pool, state.settings.sip.credentials_key.as_ref(), &current, &spec)
        .await
        .map_err(|e| repo_error(e, platform))?
        .ok_or_else(|| ApiError::NotFound(format!("Trunk {} does not exist", current.id)))?;
    tracing::info!(trunk = %trunk.id, name = %trunk.name, owner = trunk.owner(), "trunk updated");
    Ok(HttpResponse::Ok().json(trunk.to_json()))
}

pub async fn delete(state: web::Data<AppState>, caller: AccountCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let trunk = visible(&state, &caller, &path).await?;
    if !trunks::repo::delete(&state.pool, trunk.id).await.map_err(|e| repo_error(e, trunk.account_id.is_none()))? {
        return Err(ApiError::NotFound(format!("Trunk {} does not exist", trunk.id)));
    }
    tracing::info!(trunk = %trunk.id, name = %trunk.name, owner = trunk.owner(), "trunk deleted");
    Ok(HttpResponse::NoContent().finish())
}
