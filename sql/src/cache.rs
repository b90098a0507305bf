//! A least-recently-used cache within a byte budget, for things derived
//! from one dataset version (cohorts, weights, metadata columns): keys name
//! the version, so a replaced dataset's entries are never served again and
//! simply age out.
//!
//! Two requests that miss the same key together compute it once: the
//! second waits for the first's result ([`ByteLru::get_or_try_insert`]).

use std::collections::HashMap;
use std::future::Future;
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
    /// The keys being computed now, each with the turn that requests
    /// missing it together take one after the other.
    computing: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
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
            computing: Mutex::default(),
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
        lock(&self.state)
    }

    /// The value of `key`, or else `compute`d, cached and returned. Requests
    /// that miss the same key together compute it once: the first computes
    /// while the others wait, then find its value. An error is not cached
    /// (a waiter then computes in turn); a request dropped while computing
    /// passes its turn on.
    pub async fn get_or_try_insert<E, F, Fut>(&self, key: &K, compute: F) -> Result<Arc<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(hit) = self.get(key) {
            return Ok(hit);
        }
        let turn = Turn::take(self, key);
        let _held = turn.gate.lock().await;
        if let Some(hit) = self.get(key) {
            return Ok(hit);
        }
        let value = Arc::new(compute().await?);
        self.insert(key.clone(), Arc::clone(&value));
        Ok(value)
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

/// One request's place among those computing the same key; the last to
/// leave removes the key from [`ByteLru::computing`], so keys computed once
/// leave nothing behind.
struct Turn<'a, K: Eq + Hash, V> {
    cache: &'a ByteLru<K, V>,
    key: &'a K,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl<'a, K: Eq + Hash + Clone, V> Turn<'a, K, V> {
    fn take(cache: &'a ByteLru<K, V>, key: &'a K) -> Self {
        let mut computing = lock(&cache.computing);
        let gate = Arc::clone(computing.entry(key.clone()).or_default());
        Self { cache, key, gate }
    }
}

impl<K: Eq + Hash, V> Drop for Turn<'_, K, V> {
    fn drop(&mut self) {
        let mut computing = lock(&self.cache.computing);
        // Held by the map and by this turn alone: nobody else waits.
        if Arc::strong_count(&self.gate) == 2 {
            computing.remove(self.key);
        }
    }
}

/// Every update under these locks is one insert or remove, so the data
/// behind a poisoned lock is consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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

    #[tokio::test]
    async fn requests_missing_the_same_key_together_compute_it_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cache = ByteLru::new(10);
        let computed = AtomicUsize::new(0);
        let compute = || async {
            computed.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok::<_, ()>(Sized(4))
        };
        let (a, b) = tokio::join!(
            cache.get_or_try_insert(&"a", compute),
            cache.get_or_try_insert(&"a", compute)
        );
        assert!(Arc::ptr_eq(&a.unwrap(), &b.unwrap()));
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        assert!(lock(&cache.computing).is_empty());
    }

    #[tokio::test]
    async fn an_error_is_not_cached_and_the_next_request_computes_again() {
        let cache: ByteLru<&str, Sized> = ByteLru::new(10);
        let failed = cache
            .get_or_try_insert(&"a", || async { Err("unreadable") })
            .await;
        assert_eq!(failed.err(), Some("unreadable"));
        let value = cache
            .get_or_try_insert(&"a", || async { Ok::<_, &str>(Sized(3)) })
            .await;
        assert_eq!(value.unwrap().0, 3);
        assert!(lock(&cache.computing).is_empty());
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
