//! Makes chunks in parallel and hands them over in order, memory bounded.
//!
//! The calling thread makes windows of chunks with rayon (in whatever pool
//! it runs in) and queues them; a consumer thread takes them in order and
//! writes them, overlapping with the making of the next window. The queue
//! holds at most one window, so at most about two windows of chunks exist
//! at a time. The consumer runs on its own thread because the writers it
//! owns (an HDF5 file among them) need not be `Send`; it creates them there.

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};

use rayon::prelude::*;

use crate::chunk::Chunk;
use crate::error::GenerateError;

/// The chunks, in order, as the consumer sees them. Taking the next chunk
/// reports the previous one as written.
pub(crate) struct Chunks {
    queue: Receiver<Result<Chunk, GenerateError>>,
    written: Sender<u64>,
    remaining: u64,
    pending: Option<u64>,
}

impl Iterator for Chunks {
    type Item = Result<Chunk, GenerateError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(cells) = self.pending.take() {
            // The caller is gone only if it panicked; nothing to report to.
            let _ = self.written.send(cells);
        }
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let next = self.queue.recv().unwrap_or(Err(GenerateError::Interrupted));
        if let Ok(chunk) = &next {
            self.pending = Some(chunk.cells() as u64);
        }
        Some(next)
    }
}

/// Makes chunks `0..count` with `make` and feeds them to `consume`; calls
/// `progress` with the cells of each chunk once `consume` has written it.
pub(crate) fn run<T: Send>(
    count: u64,
    make: impl Fn(u64) -> Result<Chunk, GenerateError> + Sync,
    consume: impl FnOnce(Chunks) -> Result<T, GenerateError> + Send,
    progress: &dyn Fn(u64),
) -> Result<T, GenerateError> {
    let window = 2 * rayon::current_num_threads() as u64;
    let (queue, queued) = sync_channel(window as usize);
    let (written, reports) = channel();
    let chunks = Chunks {
        queue: queued,
        written,
        remaining: count,
        pending: None,
    };
    std::thread::scope(|scope| {
        let consumer = scope.spawn(move || consume(chunks));
        'windows: for start in (0..count).step_by(window as usize) {
            let end = count.min(start + window);
            let made: Vec<_> = (start..end).into_par_iter().map(&make).collect();
            for chunk in made {
                let failed = chunk.is_err();
                // A closed queue means the consumer stopped: it has the error.
                if queue.send(chunk).is_err() || failed {
                    break 'windows;
                }
                reports.try_iter().for_each(progress);
            }
        }
        drop(queue);
        // Ends when the consumer returns and drops its reporter.
        reports.iter().for_each(progress);
        consumer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use arrow_array::cast::AsArray;

    use super::*;
    use crate::chunk::{Generator, CHUNK_CELLS};

    #[test]
    fn chunks_arrive_in_order_and_progress_counts_every_cell() {
        let generator = Generator::new(5 * CHUNK_CELLS + 7, 50, 1, true);
        let reported = RefCell::new(0);
        let first_name = |chunk: Chunk| chunk.obs.column(0).as_string::<i32>().value(0).to_owned();
        let firsts = run(
            generator.chunks(),
            |i| Ok(generator.chunk(i)?),
            |chunks| {
                chunks
                    .map(|c| c.map(first_name))
                    .collect::<Result<Vec<_>, _>>()
            },
            &|cells| *reported.borrow_mut() += cells,
        )
        .unwrap();
        let expected: Vec<String> = (0..6)
            .map(|i| format!("cell_{:04}", i * CHUNK_CELLS))
            .collect();
        assert_eq!(firsts, expected);
        assert_eq!(*reported.borrow(), 5 * CHUNK_CELLS + 7);
    }

    #[test]
    fn a_failing_consumer_stops_the_makers() {
        let generator = Generator::new(50 * CHUNK_CELLS, 50, 1, true);
        let result: Result<(), _> = run(
            generator.chunks(),
            |i| Ok(generator.chunk(i)?),
            |_| Err(GenerateError::NoCells),
            &|_| {},
        );
        assert!(matches!(result, Err(GenerateError::NoCells)));
    }
}
