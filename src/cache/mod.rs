//! Per-instance caches of rows that any instance, or the CLI, may change: applications (keys,
//! webhook URLs, signed callbacks), accounts (secrets, rates) and SIP trunks (routing).
//!
//! Whoever changes such a row NOTIFYs `CHANNEL` in the changing transaction (so the notification
//! leaves only if the change commits), and every instance LISTENs and drops what was read from
//! it. Notifications can be lost with the LISTEN connection, so the caches are cleared whenever
//! it is re-established, and entries still expire: a missed change cannot linger for long.

mod listener;
mod store;

pub use listener::{start_listener, Invalidations, LISTENER_NAME};
pub use store::{Generation, SharedCache};

use sqlx::PgConnection;
use uuid::Uuid;

pub const CHANNEL: &str = "outdial_cache";

/// A row whose change invalidates what was read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Application(Uuid),
    Account(i64),
    /// Any SIP trunk (routing reads them all).
    Trunks,
}

impl Changed {
    fn payload(self) -> String {
        match self {
            Changed::Application(id) => format!("application:{id}"),
            Changed::Account(id) => format!("account:{id}"),
            Changed::Trunks => "trunks".to_string(),
        }
    }

    fn parse(payload: &str) -> Option<Changed> {
        if payload == "trunks" {
            return Some(Changed::Trunks);
        }
        match payload.split_once(':')? {
            ("application", id) => Uuid::parse_str(id).ok().map(Changed::Application),
            ("account", id) => id.parse().ok().map(Changed::Account),
            _ => None,
        }
    }
}

/// Tells every instance's caches that `changed` changed; run it in the changing transaction.
/// (NOTIFY serialises commits while it is in flight, see `notify`: harmless for these rare
/// administrative changes, never to be used on hot paths.)
pub async fn announce(conn: &mut PgConnection, changed: Changed) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(changed.payload()).execute(conn).await?;
    Ok(())
}

/// A cache that can drop what depends on a changed row, or everything.
pub trait Invalidate: Send + Sync {
    fn invalidate(&self, changed: Changed);
    fn invalidate_all(&self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_back() {
        let app = Changed::Application(Uuid::new_v4());
        assert_eq!(Changed::parse(&app.payload()), Some(app));
        assert_eq!(Changed::parse(&Changed::Account(42).payload()), Some(Changed::Account(42)));
        assert_eq!(Changed::parse(&Changed::Trunks.payload()), Some(Changed::Trunks));
        assert_eq!(Changed::parse("account:x"), None);
        assert_eq!(Changed::parse("other:1"), None);
    }
}
