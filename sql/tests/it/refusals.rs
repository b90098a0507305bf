//! Only read-only queries run, within the row cap, the timeout and the memory pool.

use crate::common;

use std::time::{Duration, Instant};

use cellflight_sql::{run_query, SqlEngine, SqlError, SqlLimits};
use common::*;

async fn run(f: &Fixture, sql: &str) -> Result<cellflight_sql::QueryResult, SqlError> {
    let ctx = f.engine.context(&f.snapshot)?;
    run_query(&ctx, sql, &[], &f.engine).await
}

async fn assert_refused(f: &Fixture, sql: &str, what: &str) {
    match run(f, sql).await {
        Err(SqlError::Refused { what: got, why }) => {
            assert!(
                got.contains(what),
                "{sql}: refused as {got:?}, expected {what:?}"
            );
            assert!(!why.is_empty());
        }
        other => panic!("{sql}: expected a refusal of {what}, got {other:?}"),
    }
}

#[tokio::test]
async fn ddl_dml_and_statements_are_refused_naming_what() {
    let f = fixture();
    let cases = [
        ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
        ("CREATE VIEW v AS SELECT * FROM demo.cells", "CREATE VIEW"),
        ("CREATE SCHEMA s", "CREATE SCHEMA"),
        (
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "CREATE EXTERNAL TABLE",
        ),
        ("INSERT INTO demo.cells SELECT * FROM demo.cells", "INSERT"),
        ("DELETE FROM demo.cells", "DELETE"),
        ("UPDATE demo.cells SET stat_total = 0", "UPDATE"),
        ("DROP TABLE demo.cells", "DROP TABLE"),
        ("DROP SCHEMA demo", "DROP SCHEMA"),
        ("SET datafusion.execution.batch_size = 1", "SET"),
        ("RESET datafusion.execution.batch_size", "RESET"),
        ("PREPARE p AS SELECT 1", "PREPARE"),
        ("SELECT 1; SELECT 2", "2 statements"),
        ("SELECT 1; DROP TABLE demo.cells", "2 statements"),
    ];
    for (sql, what) in cases {
        assert_refused(&f, sql, what).await;
    }
    // The catalog is untouched.
    let got = one_batch(
        &run(&f, "SELECT count(*) AS n FROM demo.cells")
            .await
            .unwrap(),
    );
    assert_eq!(u64s(&got, "n"), [CELLS]);
}

#[tokio::test]
async fn copy_to_is_refused_and_writes_nothing() {
    let f = fixture();
    let out = f.root.path().join("out.csv");
    let sql = format!("COPY (SELECT 1) TO '{}'", out.display());
    assert_refused(&f, &sql, "COPY").await;
    let sql = format!("EXPLAIN ANALYZE COPY (SELECT 1) TO '{}'", out.display());
    assert_refused(&f, &sql, "COPY").await;
    assert!(!out.exists());
}

#[tokio::test]
async fn file_and_url_tables_are_refused_even_in_subqueries() {
    let f = fixture();
    let path = f.demo.dir().join("cells.parquet");
    for sql in [
        format!("SELECT * FROM '{}'", path.display()),
        "SELECT * FROM cells WHERE cell_id IN (SELECT cell_id FROM 's3://bucket/x.parquet')".into(),
    ] {
        assert_refused(&f, &sql, "the table").await;
    }
}

#[tokio::test]
async fn show_and_explain_of_queries_are_allowed() {
    let f = fixture();
    assert!(run(&f, "SHOW TABLES").await.unwrap().num_rows() >= 4);
    assert!(
        run(&f, "SHOW COLUMNS FROM demo.cells")
            .await
            .unwrap()
            .num_rows()
            > 3
    );
    assert!(
        run(&f, "EXPLAIN SELECT * FROM cells")
            .await
            .unwrap()
            .num_rows()
            > 0
    );
}

fn fixture_with(limits: SqlLimits) -> Fixture {
    let mut f = fixture();
    f.engine = SqlEngine::new(limits, None).unwrap();
    f
}

#[tokio::test]
async fn the_row_cap_is_enforced_and_named() {
    let f = fixture_with(SqlLimits {
        max_rows: 10,
        ..limits()
    });
    let err = run(&f, "SELECT * FROM demo.cells").await.unwrap_err();
    assert!(
        matches!(&err, SqlError::ResourceExhausted { limit } if limit.contains("10 rows")),
        "{err}"
    );
    assert_eq!(
        run(&f, "SELECT * FROM cells LIMIT 10")
            .await
            .unwrap()
            .num_rows(),
        10
    );
}

#[tokio::test]
async fn a_slow_query_times_out_promptly() {
    let timeout = Duration::from_millis(1);
    let f = fixture_with(SqlLimits {
        timeout,
        ..limits()
    });
    let started = Instant::now();
    let err = run(
        &f,
        // The filter keeps the count from being answered from statistics.
        "SELECT count(*) FROM demo.cells a CROSS JOIN demo.cells b CROSS JOIN demo.cells c \
         WHERE a.stat_total + b.stat_total > c.stat_total",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SqlError::Timeout { limit } if limit == timeout),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// The limit named when a self-join of `demo.cells` runs out of memory
/// under `limits`; a small query runs after it (the memory is released).
async fn memory_refusal(limits: SqlLimits) -> String {
    let f = fixture_with(limits);
    let err = run(
        &f,
        "SELECT a.obs_name, b.obs_name FROM demo.cells a JOIN demo.cells b ON a.plate = b.plate",
    )
    .await
    .unwrap_err();
    let SqlError::ResourceExhausted { limit } = err else {
        panic!("expected ResourceExhausted, got {err}");
    };
    let got = one_batch(&run(&f, "SELECT count(*) AS n FROM cells").await.unwrap());
    assert_eq!(u64s(&got, "n"), [CELLS]);
    limit
}

#[tokio::test]
async fn a_query_past_the_memory_pool_is_refused_naming_the_limit() {
    let limit = memory_refusal(SqlLimits {
        memory_bytes: 64 << 10,
        ..limits()
    })
    .await;
    assert!(limit.contains(&(64 << 10).to_string()), "{limit}");
}

#[tokio::test]
async fn a_query_past_its_own_share_of_the_pool_is_refused_naming_that_limit() {
    let limit = memory_refusal(SqlLimits {
        query_memory_bytes: 64 << 10,
        ..limits()
    })
    .await;
    assert!(
        limit.contains("per-query memory limit of 65536 bytes"),
        "{limit}"
    );
}
