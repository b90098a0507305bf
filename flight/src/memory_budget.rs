//! The server's `--max-memory`: what every open training stream may hold
//! at its worst ([`Plan::stream_memory_bytes`]: its send queue, the
//! minibatch being made, a fetch's bookkeeping) is reserved from it when
//! the stream opens and given back when the stream ends. A stream that
//! cannot get its share is refused with RESOURCE_EXHAUSTED, naming the
//! flag and both figures, so the streams' memory never passes the budget
//! however many clients stop reading.
//!
//! [`Plan::stream_memory_bytes`]: cellflight_engine::Plan::stream_memory_bytes

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::ServiceError;

#[derive(Debug)]
pub(crate) struct MemoryBudget {
    max_bytes: u64,
    reserved: Mutex<u64>,
}

/// Bytes of the budget held by one stream; dropping it gives them back.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl MemoryBudget {
    pub(crate) fn new(max_bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            max_bytes,
            reserved: Mutex::new(0),
        })
    }

    /// `bytes` of the budget, if that many are free.
    pub(crate) fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, ServiceError> {
        let mut reserved = self.lock();
        let free = self.max_bytes - *reserved;
        if bytes > free {
            return Err(ServiceError::ResourceExhausted(format!(
                "this stream may hold {bytes} bytes at its worst, and {free} of the server's {} bytes (--max-memory) are free; retry when a stream ends, or ask for smaller minibatches",
                self.max_bytes
            )));
        }
        *reserved += bytes;
        Ok(Reservation {
            budget: Arc::clone(self),
            bytes,
        })
    }

    /// Bytes reserved now.
    pub(crate) fn reserved(&self) -> u64 {
        *self.lock()
    }

    /// The count stays consistent under a panic elsewhere: each update is
    /// one addition or subtraction.
    fn lock(&self) -> MutexGuard<'_, u64> {
        self.reserved.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        *self.budget.lock() -= self.bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_past_the_free_budget_is_refused_naming_the_flag_and_figures() {
        let budget = MemoryBudget::new(100);
        let held = budget.reserve(60).unwrap();
        let refused = budget.reserve(50).unwrap_err().to_string();
        assert!(refused.contains("may hold 50 bytes"), "{refused}");
        assert!(
            refused.contains("40 of the server's 100 bytes (--max-memory)"),
            "{refused}"
        );
        assert!(budget.reserve(40).is_ok(), "exactly what is free fits");
        drop(held);
        assert_eq!(budget.reserved(), 0);
        assert!(budget.reserve(100).is_ok());
    }
}
