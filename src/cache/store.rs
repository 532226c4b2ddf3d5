//! A map whose entries expire, and are dropped when a row they were read from changes.

use super::{Changed, Invalidate, Invalidations};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How many invalidations a cache had seen when a value was read from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

struct Entry<V> {
    value: V,
    loaded_at: Instant,
    read_from: Vec<Changed>,
}

struct State<K, V> {
    entries: HashMap<K, Entry<V>>,
    generation: u64,
}

pub struct SharedCache<K, V> {
    state: RwLock<State<K, V>>,
    ttl: Duration,
}

/// Expired entries are swept on insert once the map holds this many.
const SWEEP_ABOVE: usize = 1024;

impl<K, V> SharedCache<K, V>
where
    K: Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache registered with `invalidations`, so changes anywhere reach it.
    pub fn registered(ttl: Duration, invalidations: &Invalidations) -> Arc<Self> {
        let cache = Arc::new(SharedCache { state: RwLock::new(State { entries: HashMap::new(), generation: 0 }), ttl });
        invalidations.register(Arc::downgrade(&cache) as std::sync::Weak<dyn Invalidate>);
        cache
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.entries.get(key).filter(|e| e.loaded_at.elapsed() < self.ttl).map(|e| e.value.clone())
    }

    /// Take this before reading the value from the database, and give it to `insert`.
    pub fn generation(&self) -> Generation {
        Generation(self.state.read().unwrap_or_else(|e| e.into_inner()).generation)
    }

    /// Keeps `value`, read from the rows `read_from`, unless something was invalidated since
    /// `read_at`: the value may have been read just before that change committed.
    pub fn insert(&self, key: K, value: V, read_from: Vec<Changed>, read_at: Generation) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.generation != read_at.0 {
            return;
        }
        if state.entries.len() >= SWEEP_ABOVE {
            let ttl = self.ttl;
            state.entries.retain(|_, e| e.loaded_at.elapsed() < ttl);
        }
        state.entries.insert(key, Entry { value, loaded_at: Instant::now(), read_from });
    }
}

impl<K, V> Invalidate for SharedCache<K, V>
where
    K: Eq + Hash + Send + Sync,
    V: Send + Sync,
{
    fn invalidate(&self, changed: Changed) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.generation += 1;
        state.entries.retain(|_, e| !e.read_from.contains(&changed));
    }

    fn invalidate_all(&self) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.generation += 1;
        state.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_drops_what_was_read_from_it_and_a_read_that_raced_it() {
        let invalidations = Invalidations::default();
        let cache = SharedCache::<u32, &str>::registered(Duration::from_secs(60), &invalidations);
        let at = cache.generation();
        cache.insert(1, "account 7", vec![Changed::Account(7)], at);
        cache.insert(2, "account 8", vec![Changed::Account(8)], at);
        invalidations.invalidate(Changed::Account(7));
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.get(&2), Some("account 8"));
        // Read before the change, stored after it: not kept.
        cache.insert(1, "stale", vec![Changed::Account(7)], at);
        assert_eq!(cache.get(&1), None);
        invalidations.invalidate_all();
        assert_eq!(cache.get(&2), None);
    }

    #[test]
    fn entries_expire() {
        let cache = SharedCache::<u32, u32>::registered(Duration::ZERO, &Invalidations::default());
        cache.insert(1, 1, vec![], cache.generation());
        assert_eq!(cache.get(&1), None);
    }
}
