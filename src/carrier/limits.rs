//! Calls per second and concurrent calls, counted by this instance: each trunk's (both
//! directions), each account's inbound calls. (Across a cluster these limits belong to the SIP
//! proxy in front: see deploy/kamailio.)

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Limits per key (a trunk's id, an account's id).
pub struct CallLimits<K> {
    users: Mutex<HashMap<K, Use>>,
}

impl<K> Default for CallLimits<K> {
    fn default() -> Self {
        CallLimits { users: Mutex::new(HashMap::new()) }
    }
}

struct Use {
    /// Calls-per-second tokens left and when they were last topped up.
    tokens: f64,
    refilled: Instant,
    channels: Arc<()>,
}

/// A call slot held; released when dropped.
pub struct Channel(#[allow(dead_code)] Arc<()>);

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Cps,
    Channels,
}

impl<K: Hash + Eq> CallLimits<K> {
    /// Takes a call slot: one CPS token and one channel.
    pub fn take(&self, key: K, cps: Option<u32>, max_channels: Option<u32>) -> Result<Channel, Refused> {
        let mut users = self.users.lock().expect("call limits");
        let now = Instant::now();
        let entry = users.entry(key).or_insert_with(|| Use {
            tokens: cps.map_or(0.0, f64::from),
            refilled: now,
            channels: Arc::new(()),
        });
        if let Some(max) = max_channels {
            // Strong count = the entry itself plus one per live channel.
            if Arc::strong_count(&entry.channels) - 1 >= max as usize {
                return Err(Refused::Channels);
            }
        }
        if let Some(cps) = cps {
            let rate = f64::from(cps);
            entry.tokens = (entry.tokens + now.duration_since(entry.refilled).as_secs_f64() * rate).min(rate.max(1.0));
            entry.refilled = now;
            if entry.tokens < 1.0 {
                return Err(Refused::Cps);
            }
            entry.tokens -= 1.0;
        }
        Ok(Channel(entry.channels.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use uuid::Uuid;

    #[test]
    fn channels_and_cps() {
        let limits = CallLimits::default();
        let trunk = Uuid::new_v4();
        let a = limits.take(trunk, None, Some(2)).unwrap();
        let _b = limits.take(trunk, None, Some(2)).unwrap();
        assert_eq!(limits.take(trunk, None, Some(2)).err(), Some(Refused::Channels));
        drop(a);
        assert!(limits.take(trunk, None, Some(2)).is_ok());
        let other = Uuid::new_v4();
        assert!(limits.take(other, Some(2), None).is_ok());
        assert!(limits.take(other, Some(2), None).is_ok());
        assert_eq!(limits.take(other, Some(2), None).err(), Some(Refused::Cps));
    }
}
