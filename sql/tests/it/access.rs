//! A snapshot seen with a caller's grants: the datasets granted are listed
//! and read as ever; any query reaching another one (by name, join,
//! subquery, or unqualified default) fails naming it, and a cohort cached
//! for one caller is never served to a caller without its grants.

use crate::common;

use cellflight_sql::{cohort, run_query, Access, CohortCache, CohortQuery, SqlError};
use common::*;

fn only(datasets: &[&str]) -> Access {
    Access::granted(datasets.iter().map(|d| d.to_string()))
}

async fn run(
    f: &Fixture,
    access: &Access,
    sql: &str,
) -> Result<cellflight_sql::QueryResult, SqlError> {
    let snapshot = f.snapshot.restricted(access);
    let ctx = f.engine.context(&snapshot)?;
    run_query(&ctx, sql, &[], &f.engine).await
}

fn assert_denied(result: Result<impl std::fmt::Debug, SqlError>, dataset: &str, sql: &str) {
    match result {
        Err(SqlError::PermissionDenied { dataset: got }) => assert_eq!(got, dataset, "{sql}"),
        other => panic!("{sql}: expected permission denied for {dataset}, got {other:?}"),
    }
}

#[tokio::test]
async fn only_granted_datasets_are_listed_and_read() {
    let f = fixture();
    let snapshot = f.snapshot.restricted(&only(&["other"]));
    let names: Vec<_> = snapshot.datasets().map(|d| d.name().to_string()).collect();
    assert_eq!(names, ["other"]);
    assert!(snapshot.dataset("other").is_ok());
    assert_denied(
        snapshot.dataset("demo").map(|_| ()),
        "demo",
        "dataset(demo)",
    );
    let got = run(
        &f,
        &only(&["other"]),
        "SELECT count(*) AS n FROM other.cells",
    )
    .await
    .unwrap();
    assert_eq!(u64s(&one_batch(&got), "n"), [100]);
}

#[tokio::test]
async fn every_way_of_reaching_another_dataset_is_denied_by_name() {
    let f = fixture();
    let access = only(&["other"]);
    for sql in [
        "SELECT * FROM demo.cells",
        "SELECT * FROM cells", // the default dataset is demo
        "SELECT o.cell_id FROM other.cells o JOIN demo.cells d ON o.cell_id = d.cell_id",
        "SELECT cell_id FROM other.cells WHERE cell_id IN (SELECT cell_id FROM demo.cells)",
        "SELECT (SELECT max(cell_id) FROM demo.genes) FROM other.cells",
        "WITH d AS (SELECT * FROM cellflight.demo.cells) SELECT count(*) FROM d",
    ] {
        assert_denied(run(&f, &access, sql).await, "demo", sql);
    }
}

#[tokio::test]
async fn information_schema_names_only_the_granted_datasets() {
    let f = fixture();
    let access = only(&["other"]);
    let schemata = run(
        &f,
        &access,
        "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = 'cellflight' ORDER BY schema_name",
    )
    .await
    .unwrap();
    let names = strings(&one_batch(&schemata), "schema_name");
    assert_eq!(names, [Some("other".to_string())]);
    let tables = run(
        &f,
        &access,
        "SELECT table_schema FROM information_schema.tables WHERE table_catalog = 'cellflight' AND table_schema <> 'information_schema'",
    )
    .await
    .unwrap();
    let schemas = strings(&one_batch(&tables), "table_schema");
    assert!(
        schemas.iter().all(|s| s.as_deref() == Some("other")),
        "{schemas:?}"
    );
}

#[tokio::test]
async fn a_cohort_cached_for_one_caller_is_not_served_to_another_without_the_grant() {
    let f = fixture();
    let cache = CohortCache::new(1 << 20);
    let query = CohortQuery::Predicate(
        "cell_id IN (SELECT cell_id FROM demo.cells WHERE cell_id < 10)".into(),
    );
    let everyone = f.snapshot.restricted(&Access::All);
    let selected = cohort(&f.engine, &everyone, &cache, "other", &query)
        .await
        .unwrap();
    assert_eq!(selected.len(), 10);
    let restricted = f.snapshot.restricted(&only(&["other"]));
    let denied = cohort(&f.engine, &restricted, &cache, "other", &query).await;
    assert_denied(denied, "demo", "the cached cohort");
}
