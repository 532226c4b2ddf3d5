//! A webhook that cannot be delivered is said in the log at `warn`, with the call and the
//! reason, once per call: not once per attempt (a receiver that is down would flood the log)
//! and not never (a refused address used to fail silently).

use super::WebhookError;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A call warned about is forgotten after this long: a call whose receiver stays down for
/// hours gets one more line an hour, and the set stays small.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Calls already warned about, by this process. Process-wide rather than per dispatcher:
/// call uuids are unique, and one set serves every dispatcher an instance runs.
static WARNED: LazyLock<Mutex<Warned>> = LazyLock::new(|| Mutex::new(Warned { at: HashMap::new(), pruned_at: Instant::now() }));

struct Warned {
    at: HashMap<Uuid, Instant>,
    pruned_at: Instant,
}

impl Warned {
    /// True the first time a call is seen (or once it has been forgotten).
    fn first(&mut self, call: Uuid) -> bool {
        let now = Instant::now();
        if now.duration_since(self.pruned_at) > Duration::from_secs(60) {
            self.at.retain(|_, at| now.duration_since(*at) < FORGET_AFTER);
            self.pruned_at = now;
        }
        match self.at.get(&call) {
            Some(at) if now.duration_since(*at) < FORGET_AFTER => false,
            _ => {
                self.at.insert(call, now);
                true
            }
        }
    }
}

/// Records that an event of `call` could not be delivered to `url`; logs it if it is the
/// call's first such failure. `retrying`: the event will be tried again.
pub fn delivery_failed(call: Uuid, url: &str, error: &WebhookError, retrying: bool) {
    if !WARNED.lock().unwrap().first(call) {
        return;
    }
    // Without query or credentials: a customer's URL may carry a token there.
    let url = url::Url::parse(url).map_or_else(|_| "(not a URL)".to_string(), |u| format!("{}{}", u.origin().ascii_serialization(), u.path()));
    let url = url.as_str();
    let next = if retrying {
        "retrying with backoff until webhooks.max_age_s; further failures of this call are not logged"
    } else {
        "not retried; further failures of this call are not logged"
    };
    match error {
        WebhookError::PrivateAddress(_) => tracing::warn!(
            call_uuid = %call, url, reason = %error, hint = "to reach receivers on this machine or a private network, set webhooks.allow_private_addresses = true (OUTDIAL__WEBHOOKS__ALLOW_PRIVATE_ADDRESSES=true) or list the network in webhooks.allowed_networks",
            "webhook refused: {next}"
        ),
        _ => tracing::warn!(call_uuid = %call, url, reason = %error, "webhook delivery failed: {next}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_warned_about_once_until_it_is_forgotten() {
        let mut warned = Warned { at: HashMap::new(), pruned_at: Instant::now() };
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(warned.first(a));
        assert!(!warned.first(a));
        assert!(warned.first(b));
        if let Some(long_ago) = Instant::now().checked_sub(FORGET_AFTER) {
            warned.at.insert(a, long_ago);
            assert!(warned.first(a), "forgotten after FORGET_AFTER");
        }
    }
}
