//! One immutable object of a published version, read by byte ranges.
//!
//! Reads go through fixed-size blocks: each block is taken from the block
//! cache when it is there and intact; the missing ones are fetched with
//! ranged GETs, neighbouring blocks coalesced into one GET (up to a bound),
//! several GETs in flight, and kept in the cache. A block already being
//! fetched by another read (the read-ahead of the next fetch, say) is
//! waited for, not fetched twice.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;

use super::block_cache::BlockCache;
use super::io;
use super::location::RemoteStore;
use crate::StoreError;

/// The unit of caching and of fetching: small enough that a block of 16
/// cells (~100–200 KB at 1,500 genes a cell) is not read many times over,
/// large enough that a cache of tens of GB is a few hundred thousand files.
pub const BLOCK_BYTES: u64 = 64 << 10;

/// Most bytes one GET asks for: neighbouring missing blocks are coalesced
/// up to this.
const MAX_GET_BYTES: u64 = 8 << 20;

/// Most GETs in flight for one read.
const GETS_IN_FLIGHT: usize = 16;

/// Longest a read waits for blocks another read is fetching before it
/// fetches them itself.
const WAIT_FOR_OTHERS: Duration = Duration::from_secs(30);

/// What reads of remote objects cost, since the server started.
#[derive(Debug, Default)]
pub struct ReadCounters {
    pub gets: AtomicU64,
    pub bytes_fetched: AtomicU64,
    pub blocks_from_cache: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct RemoteObject {
    remote: RemoteStore,
    path: ObjectPath,
    /// The object's URL: its name in messages and in the cache.
    url: Arc<str>,
    size: u64,
    cache: Option<Arc<BlockCache>>,
    counters: Arc<ReadCounters>,
    in_flight: Arc<InFlight>,
}

impl RemoteObject {
    /// The object at `path` of `remote`, whose size is asked for now (a
    /// missing object fails here, naming it).
    pub(crate) fn open(
        remote: &RemoteStore,
        path: ObjectPath,
        cache: Option<Arc<BlockCache>>,
        counters: Arc<ReadCounters>,
    ) -> Result<Self, StoreError> {
        let url: Arc<str> = Arc::from(remote.url_of(&path));
        let size = {
            let (store, path, url) = (remote.store().clone(), path.clone(), url.clone());
            io::wait(async move {
                let meta = store.head(&path).await.map_err(StoreError::remote(&url))?;
                Ok(meta.size)
            })?
        };
        Ok(Self {
            remote: remote.clone(),
            path,
            url,
            size,
            cache,
            counters,
            in_flight: Arc::default(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The bytes of `range`.
    pub fn read_range(&self, range: Range<u64>) -> Result<Bytes, StoreError> {
        let mut read = self.read_ranges(std::slice::from_ref(&range))?;
        Ok(read.remove(0))
    }

    /// The bytes of each of `ranges`, in order.
    pub fn read_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, StoreError> {
        if let Some(bad) = ranges.iter().find(|r| r.start > r.end || r.end > self.size) {
            return Err(StoreError::Corrupt {
                file: self.url.to_string(),
                reason: format!("bytes {bad:?} asked of an object of {} bytes", self.size),
            });
        }
        let wanted = blocks_of(ranges);
        let mut blocks = self.cached(&wanted);
        let missing: Vec<u64> = wanted
            .into_iter()
            .filter(|b| !blocks.contains_key(b))
            .collect();
        if !missing.is_empty() {
            let (claim, others) = self.in_flight.claim(missing);
            blocks.extend(self.fetch(&claim.blocks)?);
            drop(claim);
            if !others.is_empty() {
                self.in_flight.wait_for(&others, WAIT_FOR_OTHERS);
                let landed = self.cached(&others);
                let still: Vec<u64> = others
                    .into_iter()
                    .filter(|b| !landed.contains_key(b))
                    .collect();
                blocks.extend(landed);
                if !still.is_empty() {
                    blocks.extend(self.fetch(&still)?);
                }
            }
        }
        Ok(ranges.iter().map(|r| assemble(&blocks, r)).collect())
    }

    fn cached(&self, wanted: &[u64]) -> BTreeMap<u64, Bytes> {
        let Some(cache) = &self.cache else {
            return BTreeMap::new();
        };
        let found: BTreeMap<u64, Bytes> = wanted
            .iter()
            .filter_map(|&b| cache.get(&self.url, b).map(|bytes| (b, bytes)))
            .collect();
        self.counters
            .blocks_from_cache
            .fetch_add(found.len() as u64, Ordering::Relaxed);
        found
    }

    /// GETs the blocks `missing` (ascending), coalesced, several at once;
    /// each is cached as it arrives.
    fn fetch(&self, missing: &[u64]) -> Result<BTreeMap<u64, Bytes>, StoreError> {
        if missing.is_empty() {
            return Ok(BTreeMap::new());
        }
        let gets: Vec<Range<u64>> = coalesce(missing, BLOCK_BYTES, MAX_GET_BYTES)
            .into_iter()
            .map(|blocks| blocks.start * BLOCK_BYTES..(blocks.end * BLOCK_BYTES).min(self.size))
            .collect();
        let object = self.clone();
        io::wait(async move {
            futures::stream::iter(gets)
                .map(|range| object.get(range))
                .buffer_unordered(GETS_IN_FLIGHT)
                .try_fold(BTreeMap::new(), |mut blocks, fetched| async move {
                    blocks.extend(fetched);
                    Ok(blocks)
                })
                .await
        })
    }

    /// One ranged GET of whole blocks, split into them and cached.
    async fn get(&self, range: Range<u64>) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let bytes = self
            .remote
            .store()
            .get_range(&self.path, range.clone())
            .await
            .map_err(StoreError::remote(&self.url))?;
        if bytes.len() as u64 != range.end - range.start {
            return Err(StoreError::Corrupt {
                file: self.url.to_string(),
                reason: format!("asked for bytes {range:?}, got {} bytes", bytes.len()),
            });
        }
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        let counted = bytes.len() as u64;
        self.counters
            .bytes_fetched
            .fetch_add(counted, Ordering::Relaxed);
        let first = range.start / BLOCK_BYTES;
        let blocks: Vec<(u64, Bytes)> = (0..)
            .map(|i| i * BLOCK_BYTES as usize)
            .take_while(|&start| start < bytes.len())
            .enumerate()
            .map(|(i, start)| {
                let end = (start + BLOCK_BYTES as usize).min(bytes.len());
                (first + i as u64, bytes.slice(start..end))
            })
            .collect();
        if let Some(cache) = &self.cache {
            for (number, block) in &blocks {
                cache.put(&self.url, *number, block);
            }
        }
        Ok(blocks)
    }
}

/// The blocks of an object some read is fetching now.
#[derive(Debug, Default)]
struct InFlight {
    blocks: Mutex<HashSet<u64>>,
    landed: Condvar,
}

/// Blocks a read has undertaken to fetch; released (and waiters woken)
/// when dropped, whether the fetch succeeded or not.
struct Claim<'a> {
    in_flight: &'a InFlight,
    blocks: Vec<u64>,
}

impl InFlight {
    /// Splits `missing` into the blocks no one is fetching, now claimed by
    /// the caller, and those another read is fetching.
    fn claim(&self, missing: Vec<u64>) -> (Claim<'_>, Vec<u64>) {
        let mut fetching = self.lock();
        let (others, mine): (Vec<u64>, Vec<u64>) =
            missing.into_iter().partition(|b| fetching.contains(b));
        fetching.extend(&mine);
        let claim = Claim {
            in_flight: self,
            blocks: mine,
        };
        (claim, others)
    }

    /// Waits until none of `blocks` is being fetched, or `timeout` passes.
    fn wait_for(&self, blocks: &[u64], timeout: Duration) {
        let fetching = self.lock();
        let _ = self
            .landed
            .wait_timeout_while(fetching, timeout, |f| blocks.iter().any(|b| f.contains(b)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut fetching = self.in_flight.lock();
        for block in &self.blocks {
            fetching.remove(block);
        }
        drop(fetching);
        self.in_flight.landed.notify_all();
    }
}

/// The blocks `ranges` touch, ascending, each once.
fn blocks_of(ranges: &[Range<u64>]) -> Vec<u64> {
    let mut blocks: Vec<u64> = ranges
        .iter()
        .filter(|r| r.start < r.end)
        .flat_map(|r| r.start / BLOCK_BYTES..r.end.div_ceil(BLOCK_BYTES))
        .collect();
    blocks.sort_unstable();
    blocks.dedup();
    blocks
}

/// Runs of consecutive block numbers, each at most `max_bytes` long.
fn coalesce(blocks: &[u64], block_bytes: u64, max_bytes: u64) -> Vec<Range<u64>> {
    let most = (max_bytes / block_bytes).max(1);
    let mut runs: Vec<Range<u64>> = Vec::new();
    for &block in blocks {
        match runs.last_mut() {
            Some(run) if run.end == block && run.end - run.start < most => run.end += 1,
            _ => runs.push(block..block + 1),
        }
    }
    runs
}

/// The bytes of `range`, from the blocks that hold it: a slice when one
/// block does, else a copy.
fn assemble(blocks: &BTreeMap<u64, Bytes>, range: &Range<u64>) -> Bytes {
    let (first, last) = (range.start / BLOCK_BYTES, range.end.div_ceil(BLOCK_BYTES));
    let piece = |block: u64| {
        let start = block * BLOCK_BYTES;
        let bytes = &blocks[&block];
        let from = range.start.saturating_sub(start) as usize;
        let to = ((range.end - start) as usize).min(bytes.len());
        (bytes, from, to)
    };
    if range.start == range.end {
        return Bytes::new();
    }
    if last - first == 1 {
        let (bytes, from, to) = piece(first);
        return bytes.slice(from..to);
    }
    let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
    for block in first..last {
        let (bytes, from, to) = piece(block);
        out.extend_from_slice(&bytes[from..to]);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_touch_each_block_once() {
        let b = BLOCK_BYTES;
        assert_eq!(
            blocks_of(&[0..1, 10..20, b - 1..b + 1, 5 * b..5 * b]),
            vec![0, 1]
        );
        assert_eq!(blocks_of(&[3 * b..4 * b, 0..2 * b + 1]), vec![0, 1, 2, 3]);
    }

    #[test]
    fn neighbouring_blocks_coalesce_up_to_the_bound() {
        assert_eq!(
            coalesce(&[1, 2, 3, 5, 6, 9], 10, 1000),
            vec![1..4, 5..7, 9..10]
        );
        assert_eq!(coalesce(&[1, 2, 3, 4, 5], 10, 20), vec![1..3, 3..5, 5..6]);
        assert_eq!(coalesce(&[1, 2], 10, 5), vec![1..2, 2..3]);
    }

    #[test]
    fn a_block_being_fetched_is_waited_for_not_claimed_twice() {
        let in_flight = Arc::new(InFlight::default());
        let (first, others) = in_flight.claim(vec![1, 2, 3]);
        assert_eq!((first.blocks.clone(), others), (vec![1, 2, 3], vec![]));
        let (second, others) = in_flight.claim(vec![3, 4]);
        assert_eq!((second.blocks.clone(), others), (vec![4], vec![3]));
        let waiter = {
            let in_flight = Arc::clone(&in_flight);
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                in_flight.wait_for(&[3], Duration::from_secs(10));
                started.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        assert!(
            waiter.join().unwrap() < Duration::from_secs(10),
            "woken when 3 landed"
        );
        let (third, others) = in_flight.claim(vec![1, 4]);
        assert_eq!((third.blocks.clone(), others), (vec![1], vec![4]));
    }

    #[test]
    fn a_range_is_assembled_from_the_blocks_it_spans() {
        let b = BLOCK_BYTES as usize;
        let object: Vec<u8> = (0..3 * b + 100).map(|i| (i % 251) as u8).collect();
        let blocks: BTreeMap<u64, Bytes> = object
            .chunks(b)
            .enumerate()
            .map(|(i, chunk)| (i as u64, Bytes::copy_from_slice(chunk)))
            .collect();
        for range in [
            0..10,
            5..b,
            b - 3..b + 3,
            10..3 * b + 100,
            3 * b..3 * b + 100,
            7..7,
        ] {
            let got = assemble(&blocks, &(range.start as u64..range.end as u64));
            assert_eq!(&got[..], &object[range.clone()], "{range:?}");
        }
    }
}
