//! The engine on its own, as a program that embeds it would use it: plan a
//! request, serve each partition, no transport in between.

use std::sync::Arc;

use cellflight_engine::{
    Caller, Engine, EngineConfig, EngineError, FetchRows, Plan, RowSource, SEND_QUEUE_BYTES,
};
use cellflight_generate::{generate, GenerateOptions};
use cellflight_schemas::StreamRequest;
use futures::StreamExt;

const CELLS: u64 = 1_000;

fn engine(root: &tempfile::TempDir) -> Engine {
    engine_of(root, CELLS, 50)
}

/// An engine serving one generated dataset of `cells` × `genes`.
fn engine_of(root: &tempfile::TempDir, cells: u64, genes: u64) -> Engine {
    let mut options = GenerateOptions::new(root.path().join("demo"), cells);
    options.genes = genes;
    generate(&options, &|_| {}).unwrap();
    Engine::new(&EngineConfig::new(root.path())).unwrap()
}

async fn plan(engine: &Engine, request: &str) -> Plan {
    let request = StreamRequest::from_json(request.as_bytes()).unwrap();
    engine.plan(&Caller::anyone(), request).await.unwrap()
}

/// Each minibatch of `partition` from `start_batch` on, as (batch, cells),
/// and the error that ended it, if one did.
async fn serve(
    engine: &Engine,
    plan: Arc<Plan>,
    partition: u32,
    start_batch: u64,
) -> (Vec<(u64, usize)>, Option<EngineError>) {
    let served = engine.partition(plan, partition, start_batch).unwrap();
    let mut minibatches = Vec::new();
    let mut stream = served.minibatches;
    while let Some(minibatch) = stream.next().await {
        match minibatch {
            Ok(minibatch) => {
                assert_eq!(minibatch.position.partition, partition);
                minibatches.push((minibatch.position.batch, minibatch.cells));
            }
            Err(error) => return (minibatches, Some(error)),
        }
    }
    (minibatches, None)
}

#[tokio::test]
async fn every_partition_serves_its_batches_in_order_and_together_every_cell() {
    let root = tempfile::tempdir().unwrap();
    let engine = engine(&root);
    let plan = Arc::new(plan(&engine, r#"{"batch_size": 32, "partitions": 3}"#).await);
    assert_eq!(plan.cohort_size(), CELLS);
    let mut cells = 0;
    for partition in 0..3 {
        let (minibatches, error) = serve(&engine, Arc::clone(&plan), partition, 0).await;
        assert!(error.is_none(), "{error:?}");
        let batches: Vec<u64> = minibatches.iter().map(|(batch, _)| *batch).collect();
        let expected: Vec<u64> = (0..plan.batches_per_partition()).collect();
        assert_eq!(batches, expected);
        cells += minibatches
            .iter()
            .map(|(_, cells)| *cells as u64)
            .sum::<u64>();
    }
    assert_eq!(cells, plan.total_records());
}

#[tokio::test]
async fn a_partition_resumed_at_a_batch_serves_the_rest_of_it() {
    let root = tempfile::tempdir().unwrap();
    let engine = engine(&root);
    let plan = Arc::new(plan(&engine, r#"{"batch_size": 32}"#).await);
    let (whole, _) = serve(&engine, Arc::clone(&plan), 0, 0).await;
    let (rest, error) = serve(&engine, plan, 0, 5).await;
    assert!(error.is_none());
    assert_eq!(rest, whole[5..]);
}

#[tokio::test]
async fn a_ticket_plans_the_same_stream_as_its_request() {
    let root = tempfile::tempdir().unwrap();
    let engine = engine(&root);
    let planned = plan(&engine, r#"{"batch_size": 50, "partitions": 2, "seed": 7}"#).await;
    let ticket = planned.tickets().nth(1).unwrap();
    let replanned = engine
        .plan_ticket(&Caller::anyone(), &ticket)
        .await
        .unwrap();
    assert_eq!(replanned.metadata(), planned.metadata());
}

/// Rows that cannot be read: a disk gone bad, or a bug in a row source.
#[derive(Debug)]
enum FaultyRows {
    Failing,
    Panicking,
}

impl RowSource for FaultyRows {
    fn read(&self, _cell_ids: Vec<u64>) -> Result<FetchRows, EngineError> {
        match self {
            Self::Failing => Err(EngineError::TaskFailed {
                task: "reading rows",
                reason: "the disk is gone".into(),
            }),
            Self::Panicking => panic!("a bug in the row source"),
        }
    }

    fn prefetch(&self, _cell_ids: &[u64]) -> Result<(), EngineError> {
        Ok(())
    }

    fn check_intact(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_row_source_error_ends_the_partition_with_that_error() {
    let root = tempfile::tempdir().unwrap();
    let engine = engine(&root);
    let plan = plan(&engine, "{}")
        .await
        .reading_from(Arc::new(FaultyRows::Failing));
    let (minibatches, error) = serve(&engine, Arc::new(plan), 0, 0).await;
    assert!(minibatches.is_empty());
    assert!(error.unwrap().to_string().contains("the disk is gone"));
}

#[tokio::test]
async fn a_row_source_panic_ends_the_partition_with_an_error_not_silence() {
    let root = tempfile::tempdir().unwrap();
    let engine = engine(&root);
    let plan = plan(&engine, "{}")
        .await
        .reading_from(Arc::new(FaultyRows::Panicking));
    let (minibatches, error) = serve(&engine, Arc::new(plan), 0, 0).await;
    assert!(minibatches.is_empty());
    let error = error.expect("an error, not a short stream");
    assert!(
        error.to_string().contains("a bug in the row source"),
        "{error}"
    );
}

#[tokio::test]
async fn a_plan_whose_tickets_would_exceed_the_limit_is_refused_naming_both_figures() {
    let root = tempfile::tempdir().unwrap();
    let engine = engine(&root);
    let query = "cell_id >= 0 AND ".repeat(200) + "cell_id >= 0";
    let json = format!(r#"{{"partitions": 65536, "query": "{query}"}}"#);
    let request = StreamRequest::from_json(json.as_bytes()).unwrap();
    let error = engine.plan(&Caller::anyone(), request).await.unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("65536 partitions of "), "{message}");
    assert!(
        message.contains("above the 67108864-byte limit of a plan"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_unread_holds_at_most_its_send_queue_bytes_of_minibatches() {
    let root = tempfile::tempdir().unwrap();
    let engine = engine_of(&root, 4_000, 4_000);
    // Dense minibatches of 256 × 4,000 × 4 bytes (4 MB), 16 to a fetch (64 MB).
    let request =
        r#"{"format": "dense", "batch_size": 256, "fetch_factor": 16, "sampling": "sequential"}"#;
    let plan = Arc::new(plan(&engine, request).await);
    let served = engine.partition(Arc::clone(&plan), 0, 0).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;

    let mut minibatches = served.minibatches.into_inner();
    let minibatch_bytes = 256 * 4_000 * 4;
    let fit = SEND_QUEUE_BYTES as usize / minibatch_bytes;
    assert!(
        (1..=fit).contains(&minibatches.len()),
        "{} minibatches queued; {fit} fit in the send queue",
        minibatches.len()
    );
    let mut received = 0;
    while let Some(minibatch) = minibatches.recv().await {
        minibatch.unwrap();
        received += 1;
    }
    assert_eq!(received, plan.batches_per_partition());
}

#[tokio::test]
async fn the_default_request_is_served_on_a_tahoe_wide_gene_space_in_csr_and_dense() {
    // Tahoe-100M's 62,710 genes: the worst-case minibatch of the default
    // batch_size must stay within the per-minibatch bound in both formats.
    let root = tempfile::tempdir().unwrap();
    let engine = engine_of(&root, 200, 62_710);
    for request in ["{}", r#"{"format": "dense"}"#] {
        let plan = Arc::new(plan(&engine, request).await);
        let (minibatches, error) = serve(&engine, Arc::clone(&plan), 0, 0).await;
        assert!(error.is_none(), "{request}: {error:?}");
        let cells: usize = minibatches.iter().map(|(_, cells)| cells).sum();
        assert_eq!(cells, 200, "{request}");
    }
}

#[tokio::test]
async fn a_csr_stream_reserves_memory_for_the_largest_stored_cell_not_every_gene() {
    let root = tempfile::tempdir().unwrap();
    let engine = engine_of(&root, 200, 62_710);
    let csr = plan(&engine, "{}").await;
    let largest = csr.dataset().largest_cell_genes().unwrap();
    assert!(largest < 62_710 / 10, "a sparse dataset: {largest} genes");
    // The send queue, and twice a minibatch of the largest cells at 8 bytes
    // an entry, with room for the rest: 64 cells × 62,710 genes would add
    // 16 MB more.
    let minibatch = 64 * (largest * 8 + 16);
    let bound = u64::from(SEND_QUEUE_BYTES) + 2 * minibatch + (8 << 20);
    assert!(
        csr.stream_memory_bytes() <= bound,
        "{} bytes",
        csr.stream_memory_bytes()
    );
}
