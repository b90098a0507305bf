//! Reading and writing at once: the file's next chunk is decoded on a second
//! thread while this one writes the last, so an ingest uses two cores.

use std::sync::mpsc::{sync_channel, SyncSender};

/// Chunks waiting between the two threads. One is enough to keep both busy,
/// and bounds what is held: the chunk being decoded, the one waiting, and the
/// one being written.
const WAITING: usize = 1;

/// Runs `produce` on a second thread, handing each chunk it makes to
/// `consume` on this one, in order. The first error of either side ends
/// both and is returned; a producer whose consumer has failed stops at its
/// next chunk (its `send` returns false).
pub(crate) fn overlapped<T, E>(
    produce: impl FnOnce(&Producer<T>) -> Result<(), E> + Send,
    mut consume: impl FnMut(T) -> Result<(), E>,
) -> Result<(), E>
where
    T: Send,
    E: Send,
{
    let (sender, receiver) = sync_channel(WAITING);
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || produce(&Producer(sender)));
        let consumed = receiver.iter().try_for_each(&mut consume);
        drop(receiver); // a producer blocked on a full channel wakes and stops
        let produced = producer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        consumed.and(produced)
    })
}

/// The producer's end of the channel.
pub(crate) struct Producer<T>(SyncSender<T>);

impl<T> Producer<T> {
    /// Hands `chunk` over, waiting while the consumer is busy; false when
    /// the consumer has stopped (the producer should then return).
    pub(crate) fn send(&self, chunk: T) -> bool {
        self.0.send(chunk).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_arrives_once_and_in_order() {
        let mut seen = Vec::new();
        let result: Result<(), ()> = overlapped(
            |out| {
                for i in 0..100 {
                    if !out.send(i) {
                        break;
                    }
                }
                Ok(())
            },
            |i| {
                seen.push(i);
                Ok(())
            },
        );
        assert_eq!(result, Ok(()));
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_producer_error_arrives_after_the_chunks_before_it() {
        let mut seen = Vec::new();
        let result = overlapped(
            |out| {
                out.send(1);
                out.send(2);
                Err("bad chunk 3")
            },
            |i| {
                seen.push(i);
                Ok(())
            },
        );
        assert_eq!(result, Err("bad chunk 3"));
        assert_eq!(seen, [1, 2]);
    }

    #[test]
    fn a_consumer_error_stops_the_producer() {
        let mut sent_after_failure = false;
        let result = overlapped(
            |out| {
                for i in 0.. {
                    if !out.send(i) {
                        return Ok(());
                    }
                    sent_after_failure |= i > 2 + WAITING;
                }
                Ok(())
            },
            |i| if i == 2 { Err("disk full") } else { Ok(()) },
        );
        assert_eq!(result, Err("disk full"));
        assert!(!sent_after_failure, "the producer ran on after the failure");
    }
}
