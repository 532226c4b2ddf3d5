//! Which trunks a call to a number goes out through, in the order to try them.
//!
//! The rule: among the enabled trunks, those whose prefix is the longest match for the dialled
//! number (a trunk without prefixes serves every number, as a zero-length match); lowest
//! priority first, ties by name. The account's own trunks take precedence: when any of them
//! serves the number, the platform's are not used. A forced trunk (the call's `sip.trunk`) is
//! that trunk alone, by name: the account's own first, then the platform's.
//!
//! One query per call: the account's and the platform's enabled trunks with their longest
//! matching prefix (there are few; the partial unique indexes find them), sorted here.

use super::crypto::CredentialKey;
use super::model::Trunk;
use super::repo::TRUNK_COLUMNS;
use crate::carrier::TrunkRoute;
use sqlx::PgPool;

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// The forced trunk is neither the account's nor the platform's.
    #[error("there is no trunk named {0} for this account or the platform")]
    UnknownTrunk(String),
    #[error("trunk {0} is disabled")]
    DisabledTrunk(String),
    /// A trunk has a password but no credentials key is configured.
    #[error("trunk {0} has a password but sip.credentials_key is not set (OUTDIAL__SIP__CREDENTIALS_KEY)")]
    NoKey(String),
    /// A trunk's password does not open with the configured key.
    #[error("trunk {0}'s password cannot be opened with sip.credentials_key (sealed with another key? set it again)")]
    Undecryptable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A trunk routing chose, and the prefix that chose it ("" for a trunk serving every number;
/// None for a forced trunk none of whose prefixes matches).
#[derive(Debug, Clone)]
pub struct Routed {
    pub trunk: Trunk,
    pub prefix_matched: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    trunk: Trunk,
    prefix_matched: Option<String>,
}

/// The digits routing matches against: the number without its `+` (and spaces or dashes).
pub fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

/// The longest of each trunk's prefixes that starts the number ('' when it has none; NULL when
/// none matches).
fn query(forced: bool) -> String {
    let filter = if forced { "t.name = $3" } else { "t.enabled" };
    format!(
        "SELECT {columns}, m.prefix AS prefix_matched
         FROM trunks t
         LEFT JOIN LATERAL (
             SELECT p AS prefix FROM unnest(CASE WHEN cardinality(t.prefixes) = 0 THEN ARRAY[''] ELSE t.prefixes END) p
             WHERE starts_with($2, p) ORDER BY length(p) DESC LIMIT 1
         ) m ON true
         WHERE (t.account_id = $1 OR t.account_id IS NULL) AND {filter}",
        columns = TRUNK_COLUMNS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", "),
    )
}

/// The trunks a call from `account_id` to `number` would try, in order, with why each was chosen.
/// An empty list: no route.
pub async fn plan(pool: &PgPool, account_id: i64, number: &str, forced_trunk: Option<&str>) -> Result<Vec<Routed>, RoutingError> {
    let number = digits(number);
    let sql = query(forced_trunk.is_some());
    let rows: Vec<Row> = sqlx::query_as(&sql).bind(account_id).bind(&number).bind(forced_trunk.unwrap_or("")).fetch_all(pool).await?;
    if let Some(name) = forced_trunk {
        // The account's own trunk of that name wins over the platform's.
        let row = rows.into_iter().min_by_key(|r| r.trunk.account_id.is_none()).ok_or_else(|| RoutingError::UnknownTrunk(name.to_string()))?;
        if !row.trunk.enabled {
            return Err(RoutingError::DisabledTrunk(name.to_string()));
        }
        return Ok(vec![Routed { trunk: row.trunk, prefix_matched: row.prefix_matched }]);
    }
    Ok(choose(rows.into_iter().filter_map(|r| Some(Routed { prefix_matched: Some(r.prefix_matched?), trunk: r.trunk })).collect()))
}

/// The account's own matches if any, else the platform's; of those, the longest prefix;
/// by priority, then name.
fn choose(matches: Vec<Routed>) -> Vec<Routed> {
    let own = matches.iter().any(|r| r.trunk.account_id.is_some());
    let mut chosen: Vec<Routed> = matches.into_iter().filter(|r| r.trunk.account_id.is_some() == own).collect();
    let longest = chosen.iter().map(|r| r.prefix_matched.as_deref().map_or(0, str::len)).max().unwrap_or(0);
    chosen.retain(|r| r.prefix_matched.as_deref().map_or(0, str::len) == longest);
    chosen.sort_by(|a, b| (a.trunk.priority, &a.trunk.name).cmp(&(b.trunk.priority, &b.trunk.name)));
    chosen
}

/// The routes the engine hands the carrier for a call: `plan`, with passwords opened.
pub async fn routes_for(
    pool: &PgPool,
    key: Option<&CredentialKey>,
    account_id: i64,
    number: &str,
    forced_trunk: Option<&str>,
) -> Result<Vec<TrunkRoute>, RoutingError> {
    plan(pool, account_id, number, forced_trunk).await?.into_iter().map(|r| to_route(key, r.trunk)).collect()
}

fn to_route(key: Option<&CredentialKey>, trunk: Trunk) -> Result<TrunkRoute, RoutingError> {
    let password = match &trunk.password_encrypted {
        None => None,
        Some(sealed) => {
            let key = key.ok_or_else(|| RoutingError::NoKey(trunk.name.clone()))?;
            Some(key.open(trunk.id, sealed).map_err(|_| RoutingError::Undecryptable(trunk.name.clone()))?)
        }
    };
    let limit = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok());
    Ok(TrunkRoute {
        trunk_id: trunk.id,
        transport: trunk.transport(),
        port: u16::try_from(trunk.port).unwrap_or(5060),
        cps: limit(trunk.cps),
        max_channels: limit(trunk.max_channels),
        name: trunk.name,
        host: trunk.host,
        username: trunk.username,
        password,
        from_domain: trunk.from_domain,
    })
}
