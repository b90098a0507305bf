//! One query's share of the server's memory pool: every reservation of the
//! query goes through a [`QueryPool`], which refuses it past the query's own
//! limit before the shared pool is asked, so no one query can take the
//! memory all others share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// How a refusal of the per-query limit starts, so errors tell it from
/// the shared pool's.
pub(crate) const QUERY_LIMIT: &str = "the per-query memory limit";

#[derive(Debug)]
pub(crate) struct QueryPool {
    shared: Arc<dyn MemoryPool>,
    limit: usize,
    used: AtomicUsize,
}

impl QueryPool {
    pub(crate) fn new(shared: Arc<dyn MemoryPool>, limit: usize) -> Self {
        Self {
            shared,
            limit,
            used: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} bytes, within {}",
            self.name(),
            self.limit,
            self.shared
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "cellflight_query_pool"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.shared.grow(reservation, additional);
        self.used.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.shared.shrink(reservation, shrink);
        self.used.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let held = self.used.fetch_add(additional, Ordering::Relaxed);
        if held.saturating_add(additional) > self.limit {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{QUERY_LIMIT} of {} bytes: {} asked for {additional} more bytes with {held} held by the query",
                self.limit,
                reservation.consumer().name(),
            )));
        }
        self.shared
            .try_grow(reservation, additional)
            .inspect_err(|_| {
                self.used.fetch_sub(additional, Ordering::Relaxed);
            })
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        match self.shared.memory_limit() {
            MemoryLimit::Finite(shared) => MemoryLimit::Finite(shared.min(self.limit)),
            _ => MemoryLimit::Finite(self.limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::GreedyMemoryPool;

    #[test]
    fn a_query_is_refused_past_its_own_limit_and_the_shared_pool_is_untouched() {
        let shared: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1000));
        let query: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(Arc::clone(&shared), 100));
        let reservation = MemoryConsumer::new("sort").register(&query);
        reservation.try_grow(60).unwrap();
        let error = reservation.try_grow(50).unwrap_err().to_string();
        assert!(
            error.contains("per-query memory limit of 100 bytes"),
            "{error}"
        );
        assert!(
            error.contains("sort asked for 50 more bytes with 60 held"),
            "{error}"
        );
        assert_eq!((query.reserved(), shared.reserved()), (60, 60));
        reservation.shrink(60);
        assert_eq!((query.reserved(), shared.reserved()), (0, 0));
    }

    #[test]
    fn the_shared_pool_still_bounds_every_query_together() {
        let shared: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(100));
        let first: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(Arc::clone(&shared), 80));
        let second: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(Arc::clone(&shared), 80));
        let a = MemoryConsumer::new("a").register(&first);
        let b = MemoryConsumer::new("b").register(&second);
        a.try_grow(80).unwrap();
        let error = b.try_grow(30).unwrap_err().to_string();
        assert!(!error.contains(QUERY_LIMIT), "{error}");
        assert_eq!(
            (first.reserved(), second.reserved(), shared.reserved()),
            (80, 0, 80)
        );
    }
}
