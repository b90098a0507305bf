//! The .h5ad reader takes whatever file a user points ingest at: seeded
//! mutations of valid fixtures (bytes flipped, edge values written over
//! lengths and offsets, the file cut short) are each read as ingest reads
//! them, and either read or refused with an error, never a panic.
//!
//! Every `cargo test` replays the same cases; `CELLFLIGHT_FUZZ_SECONDS=60`
//! runs new seeds for that long instead (docs/operations.md records such
//! runs).

use crate::common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use cellflight_h5ad::{H5ad, H5adError, MatrixEncoding, MatrixSelection};
use common::fixture;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Sparse (CSR and CSC), dense, the legacy h5sparse layout, and obs of
/// every column kind.
const FIXTURES: [&str; 4] = ["csc.h5ad", "dense.h5ad", "h5sparse.h5ad", "obs_kinds.h5ad"];

/// Cases replayed by every `cargo test`, per fixture.
const REPLAYED: u64 = 150;

/// Seeds on which long runs found rust-hdf5 panicking (an overflow in its
/// datatype code on a declared size), replayed ever since.
const FOUND: [u64; 2] = [16407033483186885073, 13854170286155126504];

/// The most rows or entries read in one call, as ingest's chunks are
/// bounded: a mutated length asks for less than all of it.
const CHUNK: u64 = 4096;

/// Values written over 8 bytes: lengths and offsets at their edges.
const EDGES: [u64; 6] = [0, 1, u32::MAX as u64, 1 << 40, i64::MAX as u64, u64::MAX];

fn mutate(rng: &mut ChaCha8Rng, original: &[u8]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for _ in 0..rng.random_range(1..=3) {
        let at = rng.random_range(0..bytes.len());
        match rng.random_range(0..5) {
            0 => bytes[at] ^= 1 << rng.random_range(0..8),
            1 => bytes[at] = rng.random(),
            2 | 3 => {
                let edge = EDGES[rng.random_range(0..EDGES.len())].to_le_bytes();
                let end = (at + 8).min(bytes.len());
                bytes[at..end].copy_from_slice(&edge[..end - at]);
            }
            _ => bytes.truncate(at.max(1)),
        }
    }
    bytes
}

/// Everything ingest reads: obs, var, and the matrix in bounded chunks.
fn read_as_ingest_does(path: &Path) -> Result<(), H5adError> {
    let file = H5ad::open(path)?;
    for frame in [file.obs()?, file.var(&MatrixSelection::X)?] {
        frame.read(0..frame.n_rows().min(CHUNK))?;
    }
    let matrix = file.matrix(&MatrixSelection::X)?;
    let (rows, _) = matrix.shape();
    match matrix.encoding() {
        MatrixEncoding::Dense => {
            matrix.dense_rows(0..rows.min(16))?;
        }
        _ => {
            let pointers = matrix.pointers(0..(rows + 1).min(CHUNK))?;
            let last = pointers.last().copied().unwrap_or(0).min(CHUNK);
            matrix.entries(0..last)?;
        }
    }
    let _ = file.skipped(&MatrixSelection::X);
    Ok(())
}

/// The seeds to run: the replayed ones, or new ones for as long as
/// `CELLFLIGHT_FUZZ_SECONDS` says.
fn seeds() -> Box<dyn Iterator<Item = u64>> {
    match std::env::var("CELLFLIGHT_FUZZ_SECONDS") {
        Ok(seconds) => {
            let seconds: u64 = seconds
                .parse()
                .expect("CELLFLIGHT_FUZZ_SECONDS is a whole number");
            let until = Instant::now() + Duration::from_secs(seconds);
            let first: u64 = rand::random();
            Box::new((first..).take_while(move |_| Instant::now() < until))
        }
        Err(_) => Box::new((0..REPLAYED).chain(FOUND)),
    }
}

#[test]
fn mutated_files_are_read_or_refused_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let originals: Vec<(&str, Vec<u8>)> = FIXTURES
        .iter()
        .map(|name| (*name, std::fs::read(fixture(name)).unwrap()))
        .collect();
    let (mut cases, mut refused) = (0u64, 0u64);
    let mut panics = Vec::new();
    for seed in seeds() {
        for (name, original) in &originals {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let path = dir.path().join(format!("{seed}-{name}"));
            std::fs::write(&path, mutate(&mut rng, original)).unwrap();
            match catch_unwind(AssertUnwindSafe(|| read_as_ingest_does(&path))) {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    assert!(
                        !error.to_string().trim().is_empty(),
                        "{error:?} has no message"
                    );
                    refused += 1;
                }
                Err(_) => panics.push(format!("seed {seed} of {name}")),
            }
            std::fs::remove_file(&path).unwrap();
            cases += 1;
        }
    }
    eprintln!(
        "{cases} mutated files: {refused} refused, {} panicked",
        panics.len()
    );
    assert!(panics.is_empty(), "the reader panicked on: {panics:?}");
}
