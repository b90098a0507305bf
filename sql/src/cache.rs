//! A least-recently-used cache within a byte budget, for things derived
//! from one dataset version (cohorts, weights, metadata columns): keys name
//! the version, so a replaced dataset's entries are never served again and
//! simply age out.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a cached value costs, in bytes held.
pub trait CacheCost {
    fn cost_bytes(&self) -> usize;
}

/// Values by key, within `budget_bytes`, least recently used evicted first.
/// A value larger than the whole budget is not kept.
#[derive(Debug)]
pub struct ByteLru<K, V> {
    budget_bytes: usize,
    state: Mutex<State<K, V>>,
}

#[derive(Debug)]
struct State<K, V> {
    entries: HashMap<K, (Arc<V>, u64)>,
    clock: u64,
    bytes: usize,
}

impl<K: Eq + Hash + Clone, V: CacheCost> ByteLru<K, V> {
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            budget_bytes,
            state: Mutex::new(State {
                entries: HashMap::new(),
                clock: 0,
                bytes: 0,
            }),
        }
    }

    /// Bytes held by cached values.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Values cached.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State<K, V>> {
        // Every update is one insert or remove, so the data behind a
        // poisoned lock is consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key`, marked as just used.
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        let (value, used) = state.entries.get_mut(key)?;
        *used = now;
        Some(value.clone())
    }

    /// Keeps `value` under `key` (if it fits the budget), evicting the
    /// least recently used values until the budget holds.
    pub fn insert(&self, key: K, value: Arc<V>) {
        let cost = value.cost_bytes();
        if cost > self.budget_bytes {
            return;
        }
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        if let Some((old, _)) = state.entries.insert(key, (value, now)) {
            state.bytes -= old.cost_bytes();
        }
        state.bytes += cost;
        while state.bytes > self.budget_bytes {
            state.evict_oldest();
        }
    }
}

impl<K: Eq + Hash + Clone, V: CacheCost> State<K, V> {
    fn evict_oldest(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(key, _)| key.clone());
        if let Some((value, _)) = oldest.and_then(|key| self.entries.remove(&key)) {
            self.bytes -= value.cost_bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sized(usize);

    impl CacheCost for Sized {
        fn cost_bytes(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn the_least_recently_used_goes_first_and_the_budget_holds() {
        let cache = ByteLru::new(10);
        cache.insert("a", Arc::new(Sized(4)));
        cache.insert("b", Arc::new(Sized(4)));
        assert!(cache.get(&"a").is_some()); // b is now the oldest
        cache.insert("c", Arc::new(Sized(4)));
        assert!(cache.get(&"b").is_none());
        assert!(cache.get(&"a").is_some() && cache.get(&"c").is_some());
        assert_eq!((cache.len(), cache.bytes()), (2, 8));
    }

    #[test]
    fn a_value_larger_than_the_budget_is_not_kept_and_a_replacement_recounts() {
        let cache = ByteLru::new(10);
        cache.insert("huge", Arc::new(Sized(11)));
        assert!(cache.is_empty());
        cache.insert("a", Arc::new(Sized(6)));
        cache.insert("a", Arc::new(Sized(3)));
        assert_eq!((cache.len(), cache.bytes()), (1, 3));
    }
}
