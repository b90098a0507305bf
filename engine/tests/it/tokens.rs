//! `tokens` streams through the engine: planned against a vocabulary file
//! beside the dataset, tickets bound to its content, minibatches of the
//! planned shape, and memory reserved by `max_length`.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use cellflight_engine::{Caller, Engine, EngineConfig, ErrorKind, Plan};
use cellflight_generate::{generate, GenerateOptions};
use cellflight_schemas::{StreamRequest, StreamTicket};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;

const GENES: u64 = 40;

/// A generated dataset and, beside it, vocabulary `gf` over its genes
/// (token id = gene + 3, median 1) with `<pad>`, `<cls>`, `<eos>`.
fn engine(root: &tempfile::TempDir) -> Engine {
    let mut options = GenerateOptions::new(root.path().join("demo"), 300);
    options.genes = GENES;
    generate(&options, &|_| {}).unwrap();
    write_vocabulary(root, "gf", 3);
    Engine::new(&EngineConfig::new(root.path())).unwrap()
}

/// Vocabulary `name`: the specials, then gene g's token `g + first_gene_id`.
fn write_vocabulary(root: &tempfile::TempDir, name: &str, first_gene_id: u32) {
    let specials = ["<pad>", "<cls>", "<eos>"].map(String::from);
    let genes = (1..=GENES).map(|g| format!("ENSG{g:011}"));
    let keys: Vec<String> = specials.into_iter().chain(genes).collect();
    let ids = (0..3).chain((0..GENES as u32).map(|g| g + first_gene_id));
    let medians = (0..keys.len()).map(|i| (i >= 3).then_some(1.0));
    let batch = RecordBatch::try_from_iter([
        ("key", Arc::new(StringArray::from(keys)) as ArrayRef),
        (
            "token_id",
            Arc::new(UInt32Array::from_iter_values(ids)) as ArrayRef,
        ),
        (
            "median",
            Arc::new(Float64Array::from_iter(medians)) as ArrayRef,
        ),
    ])
    .unwrap();
    let file =
        std::fs::File::create(root.path().join(format!("{name}.vocabulary.parquet"))).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

async fn plan(engine: &Engine, request: &str) -> Result<Plan, cellflight_engine::EngineError> {
    let request = StreamRequest::from_json(request.as_bytes()).unwrap();
    engine.plan(&Caller::anyone(), request).await
}

const GENEFORMER: &str = r#"{"format": "tokens", "batch_size": 16, "partitions": 2,
    "tokenizer": {"kind": "geneformer", "vocabulary": "gf", "max_length": 8, "cls": true}}"#;

#[tokio::test]
async fn a_tokens_plan_serves_every_cell_with_its_tokenizer_in_the_metadata() {
    let root = tempfile::tempdir().unwrap();
    let engine = engine(&root);
    let plan = Arc::new(plan(&engine, GENEFORMER).await.unwrap());
    let names: Vec<&str> = plan
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        names,
        ["cell_id", "input_ids", "attention_mask", "is_padding"]
    );
    let spec = plan.metadata().tokenizer.unwrap();
    assert_eq!(spec.vocabulary_hash.len(), 64);
    let ticket = plan.tickets().next().unwrap();
    assert_eq!(
        ticket.vocabulary_hash.as_deref(),
        Some(spec.vocabulary_hash.as_str())
    );
    let mut cells = 0;
    for partition in 0..2 {
        let served = engine.partition(Arc::clone(&plan), partition, 0).unwrap();
        let mut minibatches = served.minibatches;
        while let Some(minibatch) = minibatches.next().await {
            cells += minibatch.unwrap().cells as u64;
        }
    }
    assert_eq!(cells, plan.total_records());
}

#[tokio::test]
async fn a_ticket_of_other_vocabulary_content_is_refused_naming_both_hashes() {
    let root = tempfile::tempdir().unwrap();
    let engine = engine(&root);
    let ticket = plan(&engine, GENEFORMER)
        .await
        .unwrap()
        .tickets()
        .next()
        .unwrap();
    write_vocabulary(&root, "gf", 1_000);
    let json = ticket.to_json();
    let error = engine
        .plan_ticket(
            &Caller::anyone(),
            &StreamTicket::from_json(json.as_bytes()).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::FailedPrecondition);
    let message = error.to_string();
    let old = ticket.vocabulary_hash.unwrap();
    assert!(message.contains(&format!("hash {old}")), "{message}");
    assert!(message.contains("now has hash "), "{message}");
}

#[tokio::test]
async fn an_unknown_vocabulary_is_not_found_and_a_single_dataset_server_has_none() {
    let root = tempfile::tempdir().unwrap();
    let engine = engine(&root);
    let unknown = GENEFORMER.replace(r#""gf""#, r#""nope""#);
    let error = plan(&engine, &unknown).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
    assert!(
        error.to_string().starts_with("unknown vocabulary nope: "),
        "{error}"
    );
    let vocabulary_of_a_single_dataset =
        Engine::new(&EngineConfig::new(root.path().join("demo"))).unwrap();
    let error = plan(&vocabulary_of_a_single_dataset, GENEFORMER)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no vocabulary directory"),
        "{error}"
    );
}

#[tokio::test]
async fn a_stream_reserves_memory_for_max_length_tokens_a_cell() {
    let root = tempfile::tempdir().unwrap();
    let engine = engine(&root);
    let short = plan(&engine, GENEFORMER).await.unwrap();
    let long = plan(
        &engine,
        &GENEFORMER.replace("\"max_length\": 8", "\"max_length\": 65536"),
    )
    .await
    .unwrap();
    // 16 cells × 65,528 more tokens × 5 bytes (id and mask), in the
    // minibatch being made and in the send queue at least once each.
    assert!(long.stream_memory_bytes() - short.stream_memory_bytes() >= 2 * 16 * 65_528 * 5);
}
