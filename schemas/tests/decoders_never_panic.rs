//! The request and ticket decoders take whatever a client sends: seeded
//! mutations of valid requests and tickets, and a corpus of hostile ones,
//! are each either decoded or refused with a message, never a panic. The
//! seeds make every case replay the same in every run;
//! `CELLFLIGHT_FUZZ_SECONDS=60` runs new seeds for that long instead
//! (docs/operations.md records such runs).

#![allow(
    unreachable_pub,
    clippy::expect_used,
    reason = "a test binary: its helper modules are pub to its tests, and a failed expectation is a failed test"
)]

use cellflight_schemas::{RequestError, StreamRequest, StreamTicket};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Mutations replayed by every `cargo test`, per decoder.
const REPLAYED: usize = 20_000;

const VALID_REQUEST: &str = r#"{"dataset": "tahoe", "query": "plate = 'plate3'", "batch_size": 64, "block_size": 16, "fetch_factor": 64, "seed": 1, "epoch": 2, "partitions": 4, "obs_columns": ["plate", "drug"], "genes_query": "stat_mean > 0.5", "format": "dense", "transform": {"normalize_total": 10000, "log1p": true}, "drop_last": true}"#;

/// A ticket as the server writes it, so mutations start from a real one.
fn valid_ticket() -> String {
    StreamTicket {
        request: StreamRequest::from_json(VALID_REQUEST.as_bytes()).unwrap(),
        partition: 1,
        dataset_version: "20261202T000000Z-abcdef".into(),
        vocabulary_hash: None,
        start_batch: 3,
    }
    .to_json()
}

/// Pieces a mutation splices in: JSON's own syntax and values at the edges
/// of every type a request holds.
const SPLICES: [&str; 16] = [
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\u0000",
    "-1",
    "0",
    "1e309",
    "18446744073709551616",
    "null",
    "true",
    "\"\u{1F9EC}\"",
    "4294967296",
];

fn mutate(rng: &mut ChaCha8Rng, text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..4) {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 if at < bytes.len() => bytes[at] = rng.random(),
            2 => {
                let splice = SPLICES[rng.random_range(0..SPLICES.len())];
                bytes.splice(at..at, splice.bytes());
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

fn refused_with_a_message(result: Result<(), RequestError>) {
    if let Err(error) = result {
        assert!(
            !error.to_string().trim().is_empty(),
            "{error:?} has no message"
        );
    }
}

/// Runs `case` on mutations of `valid`: the replayed ones from `seed`, or
/// new ones for as long as `CELLFLIGHT_FUZZ_SECONDS` says.
fn mutations(seed: u64, valid: &str, case: impl Fn(&[u8])) {
    let budget = std::env::var("CELLFLIGHT_FUZZ_SECONDS")
        .ok()
        .map(|seconds| {
            let seconds = seconds
                .parse()
                .expect("CELLFLIGHT_FUZZ_SECONDS is a whole number");
            Instant::now() + Duration::from_secs(seconds)
        });
    let mut rng = ChaCha8Rng::seed_from_u64(budget.map_or(seed, |_| rand::random()));
    let mut cases = 0usize;
    while budget.map_or(cases < REPLAYED, |until| Instant::now() < until) {
        case(&mutate(&mut rng, valid));
        cases += 1;
    }
    eprintln!("{cases} mutations of {:.40}...", valid);
}

#[test]
fn mutated_requests_are_decoded_or_refused_never_a_panic() {
    mutations(7, VALID_REQUEST, |bytes| {
        refused_with_a_message(StreamRequest::from_json(bytes).map(|_| ()))
    });
}

#[test]
fn mutated_tickets_are_decoded_or_refused_never_a_panic() {
    mutations(8, &valid_ticket(), |bytes| {
        refused_with_a_message(StreamTicket::from_json(bytes).map(|_| ()))
    });
}

#[test]
fn hostile_requests_are_refused_naming_what_is_wrong() {
    let long = "x".repeat(1 << 20);
    let query_past_its_bound = "x".repeat((4 << 20) + 1);
    let many_obs_columns = vec!["\"plate\""; 1_025].join(", ");
    // Counts of 0 are the sampler's to refuse, when the request is planned.
    let cases: [(String, &str); 14] = [
        (r#"{"batch_size": 4294967296}"#.into(), "batch_size"),
        (
            r#"{"batch_size": 65537}"#.into(),
            "batch_size must be at most 65536",
        ),
        (
            r#"{"partitions": 4294967295}"#.into(),
            "partitions must be at most 65536",
        ),
        (
            r#"{"block_size": 1048577}"#.into(),
            "block_size must be at most 1048576",
        ),
        (
            r#"{"batch_size": 65536, "fetch_factor": 4096}"#.into(),
            "batch_size × fetch_factor",
        ),
        (
            r#"{"sampling": "weighted", "balance_by": "plate", "num_samples": 4294967295}"#.into(),
            "num_samples must be at most 2147483648",
        ),
        (
            format!(r#"{{"query": "{query_past_its_bound}"}}"#),
            "query (bytes) must be at most 4194304",
        ),
        (
            format!(r#"{{"obs_columns": [{many_obs_columns}]}}"#),
            "obs_columns (names) must be at most 1024",
        ),
        (r#"{"batch_size": -1}"#.into(), "batch_size"),
        (r#"{"epoch": -5}"#.into(), "epoch"),
        (r#"{"fetch_factor": 1.5}"#.into(), "fetch_factor"),
        (format!(r#"{{"{long}": 1}}"#), "unknown field"),
        (r#"{"format": "parquet"}"#.into(), "format"),
        (r#"[1, 2, 3]"#.into(), "request"),
    ];
    for (request, named) in cases {
        let error = StreamRequest::from_json(request.as_bytes()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(named),
            "{message:.200} does not name {named}"
        );
        assert!(
            message.len() < 2_000,
            "the message echoes a huge input: {} bytes",
            message.len()
        );
    }
}

#[test]
fn a_ticket_round_trips_through_its_json() {
    let ticket = valid_ticket();
    assert_eq!(
        StreamTicket::from_json(ticket.as_bytes())
            .unwrap()
            .to_json(),
        ticket
    );
}
