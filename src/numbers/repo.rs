//! SQL for numbers, used by the Numbers API, the CLI, call creation (random_from_number) and
//! inbound calls.

use super::model::{Filter, InboundTarget, Listed, NewNumber, Number, Refusal};
use sqlx::PgPool;
use uuid::Uuid;

const COLUMNS: &str = "n.msisdn, n.country, n.trunk_id, n.account_id, n.application_id, n.type, n.features, n.created_at";

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("the number {0} already exists")]
    Exists(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Where an inbound call to `msisdn` goes: one primary-key lookup. None: not one of ours.
pub async fn inbound_target(pool: &PgPool, msisdn: &str) -> Result<Option<InboundTarget>, sqlx::Error> {
    sqlx::query_as("SELECT msisdn, country, trunk_id, account_id, application_id FROM numbers WHERE msisdn = $1")
        .bind(msisdn)
        .fetch_optional(pool)
        .await
}

/// What an inbound leg to a number needs to be stored and driven: its linked application's
/// webhooks and its account's signing facts. None: not one of ours, or not linked.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InboundRoute {
    #[sqlx(flatten)]
    pub app: crate::calls::repo::AnsweringApp,
    pub signed_callbacks: bool,
    pub api_key: String,
    pub signature_secret: String,
}

pub async fn inbound_route(pool: &PgPool, msisdn: &str) -> Result<Option<InboundRoute>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.account_id, a.id AS application_id, a.answer_url, a.answer_method, a.event_url, a.event_method,
                a.fallback_answer_url, a.signed_callbacks, acc.api_key, acc.signature_secret
         FROM numbers n JOIN applications a ON a.id = n.application_id AND a.account_id = n.account_id
         JOIN accounts acc ON acc.id = a.account_id
         WHERE n.msisdn = $1",
    )
    .bind(msisdn)
    .fetch_optional(pool)
    .await
}

/// The voice numbers linked to the application (so its account's), for `random_from_number`.
pub async fn linked_numbers(pool: &PgPool, application_id: Uuid) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT msisdn FROM numbers WHERE application_id = $1 AND account_id IS NOT NULL AND 'VOICE' = ANY(features) ORDER BY msisdn",
    )
    .bind(application_id)
    .fetch_all(pool)
    .await
}

/// A caller id for `random_from_number`: one of the application's linked numbers at random, or
/// (when it has none) one of `configured` (`calls.random_from_numbers`); None when both are empty.
pub async fn random_caller_id(pool: &PgPool, application_id: Uuid, configured: &[String]) -> Result<Option<String>, sqlx::Error> {
    use rand::seq::SliceRandom;
    let linked = linked_numbers(pool, application_id).await?;
    let candidates = if linked.is_empty() { configured } else { &linked };
    Ok(candidates.choose(&mut rand::thread_rng()).cloned())
}

/// The country the rate deck gives the number: that of the longest prefix it starts with among
/// the entries that name one (any effective date: a country does not change with prices).
pub async fn country_from_deck(pool: &PgPool, msisdn: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT country FROM rates WHERE {} AND country IS NOT NULL ORDER BY length(prefix) DESC, effective_from DESC LIMIT 1",
        crate::billing::prefix_of("$1")
    ))
    .bind(msisdn)
    .fetch_optional(pool)
    .await
}

pub async fn insert(pool: &PgPool, new: &NewNumber) -> Result<Number, RepoError> {
    sqlx::query_as(&format!(
        "INSERT INTO numbers AS n (msisdn, country, trunk_id, account_id, application_id, type)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(&new.msisdn)
    .bind(&new.country)
    .bind(new.trunk_id)
    .bind(new.account_id)
    .bind(new.application_id)
    .bind(&new.kind)
    .fetch_one(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => RepoError::Exists(new.msisdn.clone()),
        _ => RepoError::Database(e),
    })
}

pub async fn find(pool: &PgPool, msisdn: &str) -> Result<Option<Number>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM numbers n WHERE n.msisdn = $1")).bind(msisdn).fetch_optional(pool).await
}

/// Removes the number altogether (the operator no longer holds it).
pub async fn delete(pool: &PgPool, msisdn: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM numbers WHERE msisdn = $1").bind(msisdn).execute(pool).await?.rows_affected() == 1)
}

/// Numbers with their trunk's name and their owner's api_key.
const LISTED: &str = "numbers n LEFT JOIN trunks t ON t.id = n.trunk_id LEFT JOIN accounts a ON a.id = n.account_id";

/// Every number, or one account's, by msisdn, with its trunk's name and its owner's api_key.
pub async fn list(pool: &PgPool, account_id: Option<i64>) -> Result<Vec<Listed>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS}, t.name AS trunk_name, a.api_key FROM {LISTED} WHERE $1::bigint IS NULL OR n.account_id = $1 ORDER BY n.msisdn"
    ))
    .bind(account_id)
    .fetch_all(pool)
    .await
}

/// One number as `list` shows it.
pub async fn find_listed(pool: &PgPool, msisdn: &str) -> Result<Option<Listed>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS}, t.name AS trunk_name, a.api_key FROM {LISTED} WHERE n.msisdn = $1"))
        .bind(msisdn)
        .fetch_optional(pool)
        .await
}

/// Whose numbers a page lists.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    Account(i64),
    /// Those for sale: no owner, on a platform trunk.
    NoneForSale,
}

/// One page of numbers matching `filter`, by msisdn, and how many match in all.
pub async fn page(pool: &PgPool, owner: Owner, filter: &Filter) -> Result<(Vec<Number>, i64), sqlx::Error> {
    let (account_id, for_sale) = match owner {
        Owner::Account(id) => (Some(id), false),
        Owner::NoneForSale => (None, true),
    };
    let conditions = "(($1::bigint IS NOT NULL AND n.account_id = $1)
                       OR ($2 AND n.account_id IS NULL AND n.trunk_id IN (SELECT id FROM trunks WHERE account_id IS NULL)))
                      AND ($3::uuid IS NULL OR n.application_id = $3)
                      AND ($4::bool IS NULL OR (n.application_id IS NOT NULL) = $4)
                      AND ($5::text IS NULL OR n.country = $5)
                      AND ($6::text IS NULL OR n.type = $6)
                      AND n.features @> $7
                      AND ($8::text IS NULL OR n.msisdn LIKE $8)";
    let like = filter.like();
    let (total,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM numbers n WHERE {conditions}"))
        .bind(account_id)
        .bind(for_sale)
        .bind(filter.application_id)
        .bind(filter.has_application)
        .bind(&filter.country)
        .bind(&filter.kind)
        .bind(&filter.features)
        .bind(&like)
        .fetch_one(pool)
        .await?;
    let numbers = sqlx::query_as(&format!("SELECT {COLUMNS} FROM numbers n WHERE {conditions} ORDER BY n.msisdn LIMIT $9 OFFSET $10"))
        .bind(account_id)
        .bind(for_sale)
        .bind(filter.application_id)
        .bind(filter.has_application)
        .bind(&filter.country)
        .bind(&filter.kind)
        .bind(&filter.features)
        .bind(&like)
        .bind(filter.size)
        .bind(filter.offset())
        .fetch_all(pool)
        .await?;
    Ok((numbers, total))
}

/// The account's number, in `country` when one is given.
async fn owned(pool: &PgPool, account_id: i64, msisdn: &str, country: Option<&str>) -> Result<Result<Number, Refusal>, sqlx::Error> {
    let number = find(pool, msisdn).await?.filter(|n| n.account_id == Some(account_id));
    Ok(match number {
        None => Err(Refusal::NotYours(msisdn.to_string())),
        Some(n) => match country {
            Some(c) if c != n.country => Err(Refusal::WrongCountry { msisdn: n.msisdn, actual: n.country, given: c.to_string() }),
            _ => Ok(n),
        },
    })
}

/// Links the account's number to one of its applications (None: unlinks it).
pub async fn link(pool: &PgPool, account_id: i64, msisdn: &str, country: Option<&str>, application_id: Option<Uuid>) -> Result<Result<Number, Refusal>, sqlx::Error> {
    if let Err(refused) = owned(pool, account_id, msisdn, country).await? {
        return Ok(Err(refused));
    }
    // The application is checked in the statement itself, so one deleted meanwhile is not linked.
    let linked: Option<Number> = sqlx::query_as(&format!(
        "UPDATE numbers AS n SET application_id = $3 WHERE n.msisdn = $1 AND n.account_id = $2
           AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM applications WHERE id = $3 AND account_id = $2 AND deleted_at IS NULL))
         RETURNING {COLUMNS}"
    ))
    .bind(msisdn)
    .bind(account_id)
    .bind(application_id)
    .fetch_optional(pool)
    .await?;
    Ok(match (linked, application_id) {
        (Some(n), _) => Ok(n),
        (None, Some(app)) if crate::applications::repo::find_for_account(pool, account_id, app).await?.is_none() => Err(Refusal::ApplicationNotYours(app)),
        // Released between the check and the update.
        (None, _) => Err(Refusal::NotYours(msisdn.to_string())),
    })
}

/// The account takes a number the operator made available (no owner, on a platform trunk).
pub async fn buy(pool: &PgPool, account_id: i64, msisdn: &str, country: &str) -> Result<Result<Number, Refusal>, sqlx::Error> {
    let bought: Option<Number> = sqlx::query_as(&format!(
        "UPDATE numbers AS n SET account_id = $2 WHERE n.msisdn = $1 AND n.country = $3 AND n.account_id IS NULL
           AND n.trunk_id IN (SELECT id FROM trunks WHERE account_id IS NULL)
         RETURNING {COLUMNS}"
    ))
    .bind(msisdn)
    .bind(account_id)
    .bind(country)
    .fetch_optional(pool)
    .await?;
    if let Some(n) = bought {
        return Ok(Ok(n));
    }
    Ok(Err(match find(pool, msisdn).await? {
        Some(n) if n.account_id == Some(account_id) => Refusal::AlreadyYours(n.msisdn),
        Some(n) if n.account_id.is_none() && n.country != country => Refusal::WrongCountry { msisdn: n.msisdn, actual: n.country, given: country.to_string() },
        _ => Refusal::NotAvailable(msisdn.to_string()),
    }))
}

/// The account gives its number back: it is unlinked and available to buy again. A number on
/// the account's own trunk is the account's for good (only the operator removes it).
pub async fn cancel(pool: &PgPool, account_id: i64, msisdn: &str, country: Option<&str>) -> Result<Result<Number, Refusal>, sqlx::Error> {
    if let Err(refused) = owned(pool, account_id, msisdn, country).await? {
        return Ok(Err(refused));
    }
    let released: Option<Number> = sqlx::query_as(&format!(
        "UPDATE numbers AS n SET account_id = NULL, application_id = NULL WHERE n.msisdn = $1 AND n.account_id = $2
           AND n.trunk_id IN (SELECT id FROM trunks WHERE account_id IS NULL)
         RETURNING {COLUMNS}"
    ))
    .bind(msisdn)
    .bind(account_id)
    .fetch_optional(pool)
    .await?;
    Ok(match released {
        Some(n) => Ok(n),
        None => match find(pool, msisdn).await? {
            Some(n) if n.account_id == Some(account_id) => Err(Refusal::OnOwnTrunk(n.msisdn)),
            _ => Err(Refusal::NotYours(msisdn.to_string())),
        },
    })
}
