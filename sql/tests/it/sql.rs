//! Queries over the catalog answer what the Parquet files say.

use crate::common;
use crate::store_support::test_description;

use std::collections::BTreeMap;
use std::sync::Arc;

use cellflight_schemas::Categorical;
use cellflight_sql::{
    describe_query, open_query, run_query, CatalogSnapshot, QueryResult, ScalarValue, SqlError,
    SqlErrorKind,
};
use cellflight_store::{CellRows, Dataset, DatasetSpec, DatasetWriter, WriteMode};
use common::*;
use datafusion::arrow::array::{
    ArrayRef, DictionaryArray, Float64Array, Int32Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use futures::StreamExt;

async fn query(f: &Fixture, sql: &str) -> Result<QueryResult, SqlError> {
    let ctx = f.engine.context(&f.snapshot)?;
    run_query(&ctx, sql, &[], &f.engine).await
}

async fn ok(f: &Fixture, sql: &str) -> RecordBatch {
    let result = query(f, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    one_batch(&result)
}

fn count_by<T: Ord + Clone>(values: &[T]) -> BTreeMap<T, u64> {
    let mut counts = BTreeMap::new();
    for v in values {
        *counts.entry(v.clone()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn group_by_counts_equal_the_parquet_counts() {
    let f = fixture();
    let got = ok(
        &f,
        "SELECT plate, count(*) AS n FROM demo.cells GROUP BY plate",
    )
    .await;
    let got: BTreeMap<_, _> = strings(&got, "plate")
        .into_iter()
        .zip(u64s(&got, "n"))
        .collect();
    let expected = count_by(&strings(&cells_of(&f.demo), "plate"));
    assert_eq!(got, expected);
    assert!(got.len() > 1, "the test needs several plates");
}

#[tokio::test]
async fn categorical_and_numeric_filters_select_the_same_cells_as_a_scan() {
    let f = fixture();
    let cells = cells_of(&f.demo);
    let drugs = strings(&cells, "drug");
    let n_genes = u64s(&cells, "stat_n_genes");
    let drug = drugs[0].clone().unwrap();
    let mut sorted = n_genes.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let sql = format!(
        "SELECT cell_id FROM demo.cells WHERE drug = '{drug}' AND stat_n_genes > {median} ORDER BY cell_id"
    );
    let got = u64s(&ok(&f, &sql).await, "cell_id");
    let expected: Vec<u64> = (0..cells.num_rows())
        .filter(|&i| drugs[i].as_deref() == Some(drug.as_str()) && n_genes[i] > median)
        .map(|i| i as u64)
        .collect();
    assert_eq!(got, expected);
    assert!(!got.is_empty());
}

#[tokio::test]
async fn question_mark_and_numbered_placeholders_bind_in_order() {
    let f = fixture();
    let cells = cells_of(&f.demo);
    let drugs = strings(&cells, "drug");
    let n_genes = u64s(&cells, "stat_n_genes");
    let drug = drugs[0].clone().unwrap();
    let expected: Vec<u64> = (0..cells.num_rows())
        .filter(|&i| drugs[i].as_deref() == Some(drug.as_str()) && n_genes[i] > 100)
        .map(|i| i as u64)
        .collect();
    let parameters = [
        ScalarValue::from(drug.as_str()),
        ScalarValue::Int64(Some(100)),
    ];
    let ctx = f.engine.context(&f.snapshot).unwrap();
    for sql in [
        "SELECT cell_id FROM cells WHERE drug = ? AND stat_n_genes > ? ORDER BY cell_id",
        "SELECT cell_id FROM cells WHERE drug = $1 AND stat_n_genes > $2 ORDER BY cell_id",
    ] {
        let (_, parameter_schema) = describe_query(&ctx, sql, &f.engine).await.unwrap();
        let names: Vec<&str> = parameter_schema
            .fields()
            .iter()
            .map(|p| p.name().as_str())
            .collect();
        assert_eq!(names, ["$1", "$2"], "{sql}");
        let result = run_query(&ctx, sql, &parameters, &f.engine).await.unwrap();
        assert_eq!(u64s(&one_batch(&result), "cell_id"), expected, "{sql}");
    }
    let mixed = "SELECT cell_id FROM cells WHERE drug = ? AND stat_n_genes > $2";
    let err = run_query(&ctx, mixed, &parameters, &f.engine)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), SqlErrorKind::InvalidQuery, "{err}");
}

#[tokio::test]
async fn as_many_values_as_placeholders_are_bound_or_none_is() {
    let f = fixture();
    let ctx = f.engine.context(&f.snapshot).unwrap();
    let one_placeholder = "SELECT cell_id FROM cells WHERE cell_id = $1";
    let three = vec![ScalarValue::Int64(Some(1)); 3];
    for (sql, bound, expected) in [
        (
            one_placeholder,
            &three[..],
            "1 placeholders and 3 parameters",
        ),
        (
            "SELECT 1 AS one",
            &three[..1],
            "0 placeholders and 1 parameters",
        ),
        (
            one_placeholder,
            &[][..],
            "Placeholder '$1' was not provided a value",
        ),
    ] {
        let err = run_query(&ctx, sql, bound, &f.engine).await.unwrap_err();
        assert_eq!(err.kind(), SqlErrorKind::InvalidQuery, "{err}");
        assert!(
            err.to_string().contains(expected),
            "{err} lacks {expected:?}"
        );
    }
    let one = run_query(&ctx, one_placeholder, &three[..1], &f.engine).await;
    assert_eq!(one.unwrap().num_rows(), 1);
}

#[tokio::test]
async fn like_and_in_lists_match_a_scan() {
    let f = fixture();
    let cells = cells_of(&f.demo);
    let names = strings(&cells, "obs_name");
    let got = ok(
        &f,
        "SELECT count(*) AS n FROM demo.cells WHERE obs_name LIKE '%7'",
    )
    .await;
    let expected = names.iter().flatten().filter(|n| n.ends_with('7')).count();
    assert_eq!(u64s(&got, "n"), vec![expected as u64]);

    let plates = strings(&cells, "plate");
    let chosen: Vec<String> = count_by(&plates)
        .keys()
        .take(2)
        .flatten()
        .cloned()
        .collect();
    let sql = format!(
        "SELECT count(*) AS n FROM demo.cells WHERE plate IN ('{}', '{}')",
        chosen[0], chosen[1]
    );
    let expected = plates
        .iter()
        .flatten()
        .filter(|p| chosen.contains(p))
        .count();
    assert_eq!(u64s(&ok(&f, &sql).await, "n"), vec![expected as u64]);
}

#[tokio::test]
async fn joins_of_cells_and_genes_pair_the_right_rows() {
    let f = fixture();
    let got = ok(
        &f,
        "SELECT c.cell_id, c.obs_name, g.gene_id FROM demo.cells c \
         JOIN demo.genes g ON c.cell_id = g.gene_idx ORDER BY c.cell_id",
    )
    .await;
    let cells = cells_of(&f.demo);
    let genes = read_parquet(&f.demo.dir().join("genes.parquet"));
    assert_eq!(got.num_rows(), genes.num_rows());
    assert_eq!(u64s(&got, "cell_id"), (0..200).collect::<Vec<u64>>());
    assert_eq!(
        strings(&got, "obs_name"),
        strings(&cells, "obs_name")[..200]
    );
    assert_eq!(strings(&got, "gene_id"), strings(&genes, "gene_id"));
}

#[tokio::test]
async fn the_default_dataset_is_reachable_unqualified() {
    let f = fixture();
    let got = ok(&f, "SELECT count(*) AS n FROM cells").await;
    assert_eq!(u64s(&got, "n"), vec![CELLS]);
    let got = ok(&f, "SELECT count(*) AS n FROM genes").await;
    assert_eq!(u64s(&got, "n"), vec![200]);
    let got = ok(&f, "SELECT count(*) AS n FROM other.cells").await;
    assert_eq!(u64s(&got, "n"), vec![100]);
}

#[tokio::test]
async fn without_a_default_dataset_unqualified_tables_are_not_found() {
    let f = fixture();
    let snapshot = CatalogSnapshot::new(vec![f.demo.clone()], None).unwrap();
    let ctx = f.engine.context(&snapshot).unwrap();
    let err = run_query(&ctx, "SELECT * FROM cells", &[], &f.engine)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), SqlErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn a_default_dataset_must_exist() {
    let f = fixture();
    let err = CatalogSnapshot::new(vec![f.demo.clone()], Some("nope")).unwrap_err();
    assert!(
        matches!(&err, SqlError::NotFound { what } if what.contains("nope")),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_datasets_tables_and_columns_are_named() {
    let f = fixture();
    let err = query(&f, "SELECT * FROM nope.cells").await.unwrap_err();
    assert!(
        matches!(&err, SqlError::NotFound { what } if what.contains("nope.cells")),
        "{err}"
    );
    let err = query(&f, "SELECT * FROM demo.matrix").await.unwrap_err();
    assert!(
        matches!(&err, SqlError::NotFound { what } if what.contains("demo.matrix")),
        "{err}"
    );
    let err = query(&f, "SELECT platee FROM demo.cells")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SqlError::UnknownColumn { column } if column.contains("platee")),
        "{err}"
    );
}

#[tokio::test]
async fn syntax_and_type_errors_are_invalid_queries_and_the_next_query_works() {
    let f = fixture();
    for sql in [
        "SELEC 1",
        "SELECT * FROM cells WHERE",
        "SELECT count(*) FROM demo.cells GROUP BY",
        "SELECT cast('abc' AS INT)",
        "SELECT no_such_function(1)",
    ] {
        let err = query(&f, sql).await.unwrap_err();
        assert_eq!(err.kind(), SqlErrorKind::InvalidQuery, "{sql}: {err}");
    }
    assert_eq!(
        u64s(&ok(&f, "SELECT count(*) AS n FROM cells").await, "n"),
        vec![CELLS]
    );
}

#[tokio::test]
async fn information_schema_lists_every_dataset_table() {
    let f = fixture();
    let got = ok(
        &f,
        "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables \
         WHERE table_catalog = 'cellflight' AND table_schema <> 'information_schema' ORDER BY t",
    )
    .await;
    let tables: Vec<_> = strings(&got, "t").into_iter().flatten().collect();
    assert_eq!(
        tables,
        ["demo.cells", "demo.genes", "other.cells", "other.genes"]
    );
}

#[tokio::test]
async fn columns_keep_the_format_types() {
    let f = fixture();
    let result = query(
        &f,
        "SELECT cell_id, obs_name, plate, stat_n_genes FROM cells LIMIT 1",
    )
    .await
    .unwrap();
    let types: Vec<_> = result
        .schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    assert_eq!(
        types,
        [DataType::UInt64, DataType::Utf8, dict, DataType::UInt32]
    );
}

/// An obs-only dataset with missing values: plate null in cells 2 and 4,
/// score null in cell 1.
fn nulls_dataset(root: &std::path::Path) -> Arc<Dataset> {
    let target = root.join("gaps");
    let spec = DatasetSpec {
        n_genes: 2,
        matrix: None,
    };
    let mut writer = DatasetWriter::create(&target, spec, WriteMode::CreateNew).unwrap();
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let schema = Schema::new(vec![
        Field::new("obs_name", DataType::Utf8, false),
        Field::new("plate", dict, true),
        Field::new("score", DataType::Float64, true),
    ]);
    let plates = DictionaryArray::new(
        Int32Array::from(vec![Some(0), Some(1), None, Some(0), None]),
        Arc::new(StringArray::from(vec!["p1", "p2"])),
    );
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["a", "b", "c", "d", "e"])),
        Arc::new(plates),
        Arc::new(Float64Array::from(vec![
            Some(1.0),
            None,
            Some(3.0),
            Some(5.0),
            Some(6.0),
        ])),
    ];
    let obs = RecordBatch::try_new(Arc::new(schema), columns).unwrap();
    let rows = CellRows::StatisticsOnly {
        n_genes: &[0; 5],
        totals: &[0.0; 5],
    };
    writer.append(rows, &obs).unwrap();
    let genes = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "gene_id",
            DataType::Utf8,
            false,
        )])),
        vec![Arc::new(StringArray::from(vec!["g1", "g2"]))],
    )
    .unwrap();
    let description = test_description(vec![Categorical {
        column: "plate".into(),
        categories: vec!["p1".into(), "p2".into()],
        ordered: false,
    }]);
    writer.finish(&genes, description).unwrap();
    Arc::new(Dataset::open(&target).unwrap())
}

#[tokio::test]
async fn nulls_follow_sql_semantics() {
    let f = fixture();
    let gaps = nulls_dataset(f.root.path());
    let snapshot = CatalogSnapshot::new(vec![gaps], Some("gaps")).unwrap();
    let ctx = f.engine.context(&snapshot).unwrap();
    let sql = "SELECT count(*) AS n, count(plate) AS plates, count(score) AS scores, \
               avg(score) AS mean, sum(CASE WHEN plate IS NULL THEN 1 ELSE 0 END) AS missing \
               FROM cells";
    let got = one_batch(&run_query(&ctx, sql, &[], &f.engine).await.unwrap());
    assert_eq!(u64s(&got, "n"), [5]);
    assert_eq!(u64s(&got, "plates"), [3]);
    assert_eq!(u64s(&got, "scores"), [4]);
    assert_eq!(u64s(&got, "missing"), [2]);
    assert_eq!(f64s(&got, "mean"), [Some(15.0 / 4.0)]);
    // A comparison with null is unknown: neither `= 'p1'` nor `<> 'p1'` selects the gaps.
    let sql = "SELECT obs_name FROM cells WHERE plate <> 'p1' OR score IS NULL ORDER BY obs_name";
    let got = one_batch(&run_query(&ctx, sql, &[], &f.engine).await.unwrap());
    assert_eq!(strings(&got, "obs_name"), [Some("b".to_string())]);
}

#[tokio::test]
async fn a_running_query_keeps_its_version_when_the_dataset_is_replaced() {
    let f = fixture();
    let old_totals = f64s(&cells_of(&f.demo), "stat_total");
    let old_sum: f64 = old_totals.iter().flatten().sum();
    let ctx = f.engine.context(&f.snapshot).unwrap();
    let mut stream = open_query(&ctx, "SELECT stat_total FROM demo.cells", &[], &f.engine)
        .await
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();

    let replaced = generated(f.root.path(), "demo", CELLS, 99, true);
    assert_ne!(replaced.manifest().version, f.demo.manifest().version);

    let mut sum: f64 = f64s(&first, "stat_total").iter().flatten().sum();
    let mut rows = first.num_rows();
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap();
        rows += batch.num_rows();
        sum += f64s(&batch, "stat_total").iter().flatten().sum::<f64>();
    }
    assert_eq!(rows as u64, CELLS);
    assert!((sum - old_sum).abs() < 1e-6 * old_sum, "{sum} vs {old_sum}");

    // A new query planned on the old snapshot still reads the old files ...
    let got = ok(&f, "SELECT sum(stat_total) AS s FROM demo.cells").await;
    let again = f64s(&got, "s")[0].unwrap();
    assert!((again - old_sum).abs() < 1e-6 * old_sum);
    // ... and a new snapshot sees the new version.
    let new_sum: f64 = f64s(&cells_of(&replaced), "stat_total")
        .iter()
        .flatten()
        .sum();
    assert!(
        (new_sum - old_sum).abs() > 1e-6 * old_sum,
        "the seeds should differ"
    );
    let snapshot = CatalogSnapshot::new(vec![replaced], Some("demo")).unwrap();
    let ctx = f.engine.context(&snapshot).unwrap();
    let got = run_query(
        &ctx,
        "SELECT sum(stat_total) AS s FROM cells",
        &[],
        &f.engine,
    )
    .await
    .unwrap();
    let s = f64s(&one_batch(&got), "s")[0].unwrap();
    assert!((s - new_sum).abs() < 1e-6 * new_sum);
}
