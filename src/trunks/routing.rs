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

/// The digits routing matches against: the number without its `+` (and spaces or dashes).
pub fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

/// The trunks a call from `account_id` to `number` would try, in order, with why each was chosen.
/// An empty list: no route.
pub async fn plan(pool: &PgPool, account_id: i64, number: &str, forced_trunk: Option<&str>) -> Result<Vec<Routed>, RoutingError> {
    let trunks: Vec<Trunk> = sqlx::query_as(&format!("SELECT {TRUNK_COLUMNS} FROM trunks WHERE account_id = $1 OR account_id IS NULL"))
        .bind(account_id)
        .fetch_all(pool)
        .await?;
    plan_among(&trunks, account_id, number, forced_trunk)
}

/// `plan` over trunks already read (every trunk, or the account's and the platform's).
pub fn plan_among(trunks: &[Trunk], account_id: i64, number: &str, forced_trunk: Option<&str>) -> Result<Vec<Routed>, RoutingError> {
    let number = digits(number);
    let visible = trunks.iter().filter(|t| t.account_id.is_none() || t.account_id == Some(account_id));
    if let Some(name) = forced_trunk {
        // The account's own trunk of that name wins over the platform's.
        let trunk = visible
            .filter(|t| t.name == name)
            .min_by_key(|t| t.account_id.is_none())
            .ok_or_else(|| RoutingError::UnknownTrunk(name.to_string()))?;
        if !trunk.enabled {
            return Err(RoutingError::DisabledTrunk(name.to_string()));
        }
        return Ok(vec![Routed { prefix_matched: longest_prefix(trunk, &number), trunk: trunk.clone() }]);
    }
    let matches = visible
        .filter(|t| t.enabled)
        .filter_map(|t| Some(Routed { prefix_matched: Some(longest_prefix(t, &number)?), trunk: t.clone() }))
        .collect();
    Ok(choose(matches))
}

/// The longest of a trunk's prefixes that starts the number ("" when it has none; None when
/// none matches).
fn longest_prefix(trunk: &Trunk, digits: &str) -> Option<String> {
    if trunk.prefixes.is_empty() {
        return Some(String::new());
    }
    trunk.prefixes.iter().filter(|p| digits.starts_with(p.as_str())).max_by_key(|p| p.len()).cloned()
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

/// Every trunk, kept by each instance until one changes (any instance or the CLI announces
/// it: `cache::Changed::Trunks`) or a minute passes: a call is routed without a query.
pub struct TrunkTable {
    cache: std::sync::Arc<crate::cache::SharedCache<(), std::sync::Arc<Vec<Trunk>>>>,
}

impl TrunkTable {
    pub fn new(invalidations: &crate::cache::Invalidations) -> TrunkTable {
        TrunkTable { cache: crate::cache::SharedCache::registered(std::time::Duration::from_secs(60), invalidations) }
    }

    /// The table (None: read it fresh) and whether it came from the cache.
    async fn trunks(&self, pool: &PgPool, cached: bool) -> Result<(std::sync::Arc<Vec<Trunk>>, bool), sqlx::Error> {
        if let Some(trunks) = cached.then(|| self.cache.get(&())).flatten() {
            return Ok((trunks, true));
        }
        let read_at = self.cache.generation();
        let trunks: Vec<Trunk> = sqlx::query_as(&format!("SELECT {TRUNK_COLUMNS} FROM trunks")).fetch_all(pool).await?;
        let trunks = std::sync::Arc::new(trunks);
        self.cache.insert((), trunks.clone(), vec![crate::cache::Changed::Trunks], read_at);
        Ok((trunks, false))
    }

    /// `routes_for`, from the table.
    pub async fn routes_for(
        &self,
        pool: &PgPool,
        key: Option<&CredentialKey>,
        account_id: i64,
        number: &str,
        forced_trunk: Option<&str>,
    ) -> Result<Vec<TrunkRoute>, RoutingError> {
        let (trunks, cached) = self.trunks(pool, true).await?;
        let mut plan = plan_among(&trunks, account_id, number, forced_trunk);
        if cached && plan.as_ref().map_or(true, Vec::is_empty) {
            // No route in what this instance read: a trunk created a moment ago (its
            // announcement still on its way) may serve it. Read again before refusing.
            plan = plan_among(&self.trunks(pool, false).await?.0, account_id, number, forced_trunk);
        }
        plan?.into_iter().map(|r| to_route(key, r.trunk)).collect()
    }
}

impl TrunkTable {
    /// The enabled trunk a request from `source` came through: one whose host is that address
    /// (or a name resolving to it). None: the address is no trunk's.
    pub async fn by_source(&self, pool: &PgPool, source: std::net::IpAddr) -> Result<Option<Trunk>, sqlx::Error> {
        // From the table only: INVITEs from strangers (scanners send many) must cost no query.
        // A trunk added a moment ago is known once its announcement arrives.
        let (trunks, _) = self.trunks(pool, true).await?;
        Ok(trunk_at(&trunks, source).await)
    }
}

async fn trunk_at(trunks: &[Trunk], source: std::net::IpAddr) -> Option<Trunk> {
    let enabled = || trunks.iter().filter(|t| t.enabled);
    if let Some(trunk) = enabled().find(|t| t.host.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>().ok() == Some(source)) {
        return Some(trunk.clone());
    }
    for trunk in enabled().filter(|t| t.host.parse::<std::net::IpAddr>().is_err()) {
        if let Ok(mut addresses) = tokio::net::lookup_host((trunk.host.as_str(), 0)).await {
            if addresses.any(|a| a.ip() == source) {
                return Some(trunk.clone());
            }
        }
    }
    None
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
