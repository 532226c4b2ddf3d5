//! Failed logins cost the one who fails. Each client address and each key (an api_key, or a
//! JWT's application_id) may fail `burst` times, then once per `interval`; beyond that every
//! attempt is refused before anything is checked (no argon2, no database), with how long to wait.
//!
//! Successes are neither counted nor delayed. A client address that has logged in with a key
//! keeps being let in with it while strangers fail against that key, so they cannot lock its
//! owner out; its own failures still count against its address.
//!
//! Counts live in each instance's memory: behind N instances a client gets N times the budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What a login attempt names: the budget it spends besides its address's.
#[derive(Debug, Clone, Copy)]
pub enum LoginKey<'a> {
    ApiKey(&'a str),
    Application(Uuid),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    ApiKey(String),
    Application(Uuid),
}

impl From<LoginKey<'_>> for Key {
    fn from(key: LoginKey<'_>) -> Key {
        match key {
            LoginKey::ApiKey(k) => Key::ApiKey(k.to_string()),
            LoginKey::Application(id) => Key::Application(id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Client(IpAddr),
    Key(Key),
}

/// Failures not yet forgiven: one is forgiven per `interval`.
struct Debt {
    failures: f64,
    at: Instant,
}

#[derive(Default)]
struct State {
    debts: HashMap<Subject, Debt>,
    /// (key, client address) → when that client last logged in with that key.
    trusted: HashMap<(Key, IpAddr), Instant>,
}

/// Too many failures: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled(pub Duration);

pub struct LoginThrottle {
    state: RwLock<State>,
    burst: f64,
    interval: Duration,
}

/// A client that logged in with a key stays trusted with it this long after its last login.
const TRUSTED_FOR: Duration = Duration::from_secs(24 * 3600);
/// A trusted pair's time is renewed at most this often (a login then only takes a read lock).
const TRUST_RENEWED_AFTER: Duration = Duration::from_secs(60);
/// Beyond this many subjects or pairs, forgiven debts and stale trust are swept out; a new
/// subject finding the map still full goes uncounted rather than evicting a live one.
const MAX_TRACKED: usize = 200_000;

impl LoginThrottle {
    pub fn new(burst: u32, interval: Duration) -> LoginThrottle {
        LoginThrottle { state: RwLock::default(), burst: f64::from(burst.max(1)), interval: interval.max(Duration::from_millis(1)) }
    }

    /// Whether `client` may try (to log in with `key`, when one can be read from the attempt).
    pub fn check(&self, client: IpAddr, key: Option<LoginKey<'_>>) -> Result<(), Throttled> {
        let client = client_of(client);
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut wait = self.wait(&state, &Subject::Client(client), now);
        if let Some(key) = key.map(Key::from) {
            let trusted = state.trusted.get(&(key.clone(), client)).is_some_and(|at| now.duration_since(*at) < TRUSTED_FOR);
            if !trusted {
                wait = wait.max(self.wait(&state, &Subject::Key(key), now));
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(Throttled(wait))
        }
    }

    pub fn failed(&self, client: IpAddr, key: Option<LoginKey<'_>>) {
        let client = client_of(client);
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let subjects = std::iter::once(Subject::Client(client)).chain(key.map(|k| Subject::Key(k.into())));
        for subject in subjects {
            if !state.debts.contains_key(&subject) && !self.make_room(&mut state, now) {
                continue;
            }
            let forgiven = self.forgiven_since(state.debts.get(&subject), now);
            let debt = state.debts.entry(subject).or_insert(Debt { failures: 0.0, at: now });
            debt.failures = (debt.failures - forgiven).max(0.0) + 1.0;
            debt.at = now;
        }
    }

    pub fn succeeded(&self, client: IpAddr, key: LoginKey<'_>) {
        let pair = (Key::from(key), client_of(client));
        let now = Instant::now();
        let fresh = |state: &State| state.trusted.get(&pair).is_some_and(|at| now.duration_since(*at) < TRUST_RENEWED_AFTER);
        if fresh(&self.state.read().unwrap_or_else(|e| e.into_inner())) {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.trusted.len() >= MAX_TRACKED && !state.trusted.contains_key(&pair) {
            state.trusted.retain(|_, at| now.duration_since(*at) < TRUSTED_FOR);
            if state.trusted.len() >= MAX_TRACKED {
                return;
            }
        }
        state.trusted.insert(pair, now);
    }

    /// How long `subject` must wait before it may fail once more (zero: it may try now).
    fn wait(&self, state: &State, subject: &Subject, now: Instant) -> Duration {
        let Some(debt) = state.debts.get(subject) else { return Duration::ZERO };
        let owed = debt.failures - self.forgiven_since(Some(debt), now);
        let excess = owed - (self.burst - 1.0);
        if excess <= 0.0 {
            Duration::ZERO
        } else {
            self.interval.mul_f64(excess)
        }
    }

    fn forgiven_since(&self, debt: Option<&Debt>, now: Instant) -> f64 {
        debt.map_or(0.0, |d| now.duration_since(d.at).as_secs_f64() / self.interval.as_secs_f64())
    }

    /// Whether a new subject may be counted, sweeping forgiven debts out when the map is full.
    fn make_room(&self, state: &mut State, now: Instant) -> bool {
        if state.debts.len() < MAX_TRACKED {
            return true;
        }
        let interval = self.interval.as_secs_f64();
        state.debts.retain(|_, d| d.failures > now.duration_since(d.at).as_secs_f64() / interval);
        state.debts.len() < MAX_TRACKED
    }
}

/// The unit counted per client: an IPv4 address, or an IPv6 /64 (what one host usually gets).
fn client_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const TWO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_burst_of_failures_then_one_per_interval() {
        let throttle = LoginThrottle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(throttle.check(ONE, None), Ok(()));
            throttle.failed(ONE, None);
        }
        let Err(Throttled(wait)) = throttle.check(ONE, None) else { panic!("a fourth failure in a row is refused") };
        assert!(wait > Duration::from_secs(59) && wait <= Duration::from_secs(60), "{wait:?}");
        assert_eq!(throttle.check(TWO, None), Ok(()), "another address is not held up");
    }

    #[test]
    fn a_key_failed_from_many_addresses_stays_open_to_one_that_logged_in_with_it() {
        let throttle = LoginThrottle::new(2, Duration::from_secs(60));
        let key = Some(LoginKey::ApiKey("abcd1234"));
        throttle.succeeded(ONE, LoginKey::ApiKey("abcd1234"));
        for last in 10..12 {
            throttle.failed(IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, last)), key);
        }
        assert!(throttle.check(TWO, key).is_err(), "the key is locked for strangers");
        assert_eq!(throttle.check(TWO, Some(LoginKey::ApiKey("other"))), Ok(()), "other keys are not");
        assert_eq!(throttle.check(ONE, key), Ok(()), "its owner's address is let in");
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(client_of(a), client_of(b));
        assert_ne!(client_of(a), client_of("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(client_of("::ffff:192.0.2.1".parse().unwrap()), ONE);
    }
}
