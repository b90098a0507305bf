//! Planning (parsing, analysis, optimisation, constant folding) is CPU work
//! that never yields: on the async runtime one slow plan stalls a worker
//! thread every other call shares, and no timeout can interrupt it. So
//! plans are made on threads of their own, at most `planning_threads` at
//! once: a query past that is refused, not queued, and the wait for its
//! plan counts against its deadline. A plan still running at its deadline
//! keeps its thread until it ends, so the pool also bounds what runaway
//! plans can take.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::error::SqlError;

#[derive(Debug)]
pub(crate) struct PlanningPool {
    permits: Arc<Semaphore>,
    threads: usize,
}

impl PlanningPool {
    pub(crate) fn new(threads: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(threads)),
            threads,
        }
    }

    /// Runs `planning` on a thread of the pool; its result, or a refusal
    /// when the pool is full, or a timeout at `deadline` (`limit` after
    /// the query started).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        deadline: Instant,
        limit: Duration,
        planning: impl Future<Output = Result<T, SqlError>> + Send + 'static,
    ) -> Result<T, SqlError> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            SqlError::ResourceExhausted {
                limit: format!(
                    "all {} planning threads are busy (--sql-planning-threads); retry",
                    self.threads
                ),
            }
        })?;
        let runtime = tokio::runtime::Handle::current();
        let planned = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            runtime.block_on(planning)
        });
        match tokio::time::timeout_at(deadline, planned).await {
            Err(_) => Err(SqlError::Timeout { limit }),
            Ok(Err(failed)) => Err(SqlError::Internal(format!("planning failed: {failed}"))),
            Ok(Ok(result)) => result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENT: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_plan_past_the_deadline_times_out_and_keeps_its_thread_until_it_ends() {
        let pool = PlanningPool::new(1);
        let limit = Duration::from_millis(50);
        let slow = async {
            std::thread::sleep(Duration::from_millis(400)); // CPU-bound, never yields
            Ok(())
        };
        let timed_out = pool.run(Instant::now() + limit, limit, slow).await;
        assert!(
            matches!(timed_out, Err(SqlError::Timeout { .. })),
            "{timed_out:?}"
        );

        let refused = pool
            .run(Instant::now() + PATIENT, PATIENT, async { Ok(()) })
            .await;
        let message = refused.unwrap_err().to_string();
        assert!(
            message.contains("all 1 planning threads are busy (--sql-planning-threads)"),
            "{message}"
        );

        tokio::time::sleep(Duration::from_millis(600)).await;
        let answered = pool
            .run(Instant::now() + PATIENT, PATIENT, async { Ok(7) })
            .await;
        assert_eq!(answered.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_plan_that_panics_is_an_internal_error() {
        let pool = PlanningPool::new(2);
        let panicking = async {
            if true {
                panic!("a bug in a planner rule");
            }
            Ok(())
        };
        let failed = pool.run(Instant::now() + PATIENT, PATIENT, panicking).await;
        assert!(matches!(failed, Err(SqlError::Internal(m)) if m.contains("planning failed")));
    }
}
