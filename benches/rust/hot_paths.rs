//! The hot paths of a training stream, each on its own so a regression
//! shows where it is: reading a fetch's blocks from the store, planning a
//! partition's fetches, and a minibatch stream assembled and encoded by the
//! engine (no transport; assembly writes straight into the IPC message
//! body, so the two are one pass).
//!
//! `cargo bench -p cellflight-benches` over a generated Tahoe-shaped
//! dataset (62,710 genes, ~1,500 non-zeros a cell) of
//! `CELLFLIGHT_BENCH_CELLS` cells (default 100,000), page cache warm.

#![allow(
    unreachable_pub,
    clippy::expect_used,
    reason = "a benchmark: its setup failing is a failed run"
)]

use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use cellflight_engine::{Caller, Engine, EngineConfig};
use cellflight_generate::{generate, GenerateOptions};
use cellflight_sampler::{Plan, SamplerConfig};
use cellflight_schemas::StreamRequest;
use cellflight_store::{runs, Dataset};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::StreamExt;

/// The generated dataset, made once for every group.
struct Fixture {
    _root: tempfile::TempDir,
    dataset: std::path::PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let cells = std::env::var("CELLFLIGHT_BENCH_CELLS")
            .map(|n| {
                n.parse()
                    .expect("CELLFLIGHT_BENCH_CELLS: a number of cells")
            })
            .unwrap_or(100_000);
        let root = tempfile::tempdir().expect("a temporary directory");
        let dataset = root.path().join("tahoe");
        generate(&GenerateOptions::new(&dataset, cells), &|_| {}).expect("generate the dataset");
        Fixture {
            _root: root,
            dataset,
        }
    })
}

/// The first fetch of partition 0 (64 batches of 64 cells) at `block_size`.
fn first_fetch_cells(n_cells: u64, block_size: u32) -> Vec<u64> {
    let config = SamplerConfig {
        block_size,
        ..SamplerConfig::default()
    };
    let fetch = Plan::new(n_cells, &config)
        .and_then(|plan| plan.fetches(0, 0))
        .expect("a valid plan")
        .next()
        .expect("a first fetch");
    fetch.read_order().to_vec()
}

/// A fetch's cells located in the memory-mapped matrix and their bytes
/// loaded (summed), in blocks of 16 cells and of 1.
fn store_block_read(c: &mut Criterion) {
    let dataset = Dataset::open(&fixture().dataset).expect("open the dataset");
    let matrix = dataset.matrix().expect("an expression matrix");
    let mut group = c.benchmark_group("store/fetch_read");
    for block_size in [16, 1] {
        let runs = runs(&first_fetch_cells(matrix.n_cells(), block_size));
        group.throughput(Throughput::Elements(
            runs.iter().map(|r| r.end - r.start).sum(),
        ));
        group.bench_function(BenchmarkId::new("block", block_size), |b| {
            b.iter(|| {
                let mut loaded = 0u64;
                for run in &runs {
                    for slice in matrix.cells(run.clone()).expect("stored cells") {
                        loaded += slice_bytes_sum(&slice);
                    }
                }
                loaded
            })
        });
    }
    group.finish();
}

/// The sum of the bytes of a slice's expression entries: loads them.
fn slice_bytes_sum(slice: &RecordBatch) -> u64 {
    slice
        .columns()
        .iter()
        .map(|column| {
            let list = column.as_list::<i32>();
            let (first, last) = (list.value_offsets()[0], list.value_offsets()[list.len()]);
            let items = list.values().to_data();
            let width = items
                .data_type()
                .primitive_width()
                .expect("fixed-width items");
            let bytes = &items.buffers()[0].as_slice()[items.offset() * width..];
            bytes[first as usize * width..last as usize * width]
                .iter()
                .map(|&b| u64::from(b))
                .sum::<u64>()
        })
        .sum()
}

/// A partition's plan and its first 16 fetches (65,536 cells), for a
/// cohort of 100M cells: the sampler's work per stream, no I/O.
fn sampler_planning(c: &mut Criterion) {
    const FETCHES: usize = 16;
    let mut group = c.benchmark_group("sampler/fetches");
    let config = SamplerConfig {
        partitions: 8,
        ..SamplerConfig::default()
    };
    let cells_per_fetch = u64::from(config.batch_size * config.fetch_factor);
    group.throughput(Throughput::Elements(cells_per_fetch * FETCHES as u64));
    group.bench_function("block_shuffle/100M_cells", |b| {
        b.iter(|| {
            let plan = Plan::new(100_000_000, &config).expect("a valid plan");
            plan.fetches(3, 0)
                .expect("partition 3 exists")
                .take(FETCHES)
                .map(|fetch| fetch.read_order()[0])
                .sum::<u64>()
        })
    });
    group.finish();
}

/// The engine planning a request, planning it again from its first ticket
/// (as a DoGet does), and streaming its first two fetches (128 minibatches
/// of 64 cells), one output form at a time.
fn minibatch_stream(c: &mut Criterion) {
    const BATCHES: usize = 128;
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let config = EngineConfig::new(&fixture().dataset);
    let engine = Engine::new(&config).expect("an engine");
    let forms = [
        ("csr_stored", r#"{}"#),
        ("csr_2000_genes", r#"{"genes_query": "gene_idx < 2000"}"#),
        (
            "csr_log1p",
            r#"{"transform": {"normalize_total": 10000, "log1p": true}}"#,
        ),
        (
            "dense_2000_genes",
            r#"{"genes_query": "gene_idx < 2000", "format": "dense"}"#,
        ),
        // The README's request: a gene selection and a transform.
        (
            "csr_readme",
            r#"{"genes_query": "stat_mean > 0.5", "transform": {"normalize_total": 10000, "log1p": true}}"#,
        ),
        (
            "dense_2000_genes_log1p",
            r#"{"genes_query": "gene_idx < 2000", "format": "dense", "transform": {"normalize_total": 10000, "log1p": true}}"#,
        ),
    ];
    let mut group = c.benchmark_group("stream/first_128_minibatches");
    group.throughput(Throughput::Elements(64 * BATCHES as u64));
    group.sample_size(20);
    for (form, request) in forms {
        group.bench_function(form, |b| {
            b.to_async(&runtime)
                .iter(|| stream_minibatches(&engine, request, BATCHES))
        });
    }
    group.finish();
}

/// Plans `request` and reads `batches` minibatches of its partition 0;
/// returns the bytes of their messages.
async fn stream_minibatches(engine: &Engine, request: &str, batches: usize) -> usize {
    let caller = Caller::anyone();
    let request = StreamRequest::from_json(request.as_bytes()).expect("a request");
    let plan = engine.plan(&caller, request).await.expect("a plan");
    let ticket = plan.tickets().next().expect("a ticket");
    let plan = engine.plan_ticket(&caller, &ticket).await.expect("a plan");
    let partition = engine.partition(Arc::new(plan), 0, 0).expect("a partition");
    let bodies: Vec<usize> = partition
        .minibatches
        .take(batches)
        .map(|minibatch| minibatch.expect("a minibatch").message.arrow_data.len())
        .collect()
        .await;
    assert_eq!(bodies.len(), batches, "the stream ended early");
    bodies.iter().sum()
}

criterion_group!(
    benches,
    store_block_read,
    sampler_planning,
    minibatch_stream
);
criterion_main!(benches);
