//! Cohorts are the sorted, distinct cells a predicate or query selects, cached by version.

use crate::common;

use std::sync::Arc;

use cellflight_sql::{
    cohort, CatalogSnapshot, Cohort, CohortCache, CohortQuery, SqlError, SqlErrorKind,
};
use common::*;

fn pred(s: &str) -> CohortQuery {
    CohortQuery::Predicate(s.to_string())
}

fn select(s: &str) -> CohortQuery {
    CohortQuery::Select(s.to_string())
}

async fn get(f: &Fixture, cache: &CohortCache, q: &CohortQuery) -> Result<Arc<Cohort>, SqlError> {
    cohort(&f.engine, &f.snapshot, cache, "demo", q).await
}

fn big_cache() -> CohortCache {
    CohortCache::new(64 << 20)
}

fn assert_sorted_distinct(ids: &[u32]) {
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "not sorted and distinct"
    );
}

#[tokio::test]
async fn a_predicate_cohort_equals_a_filter_over_the_parquet() {
    let f = fixture();
    let cells = cells_of(&f.demo);
    let plates = strings(&cells, "plate");
    let n_genes = u64s(&cells, "stat_n_genes");
    let plate = plates[5].clone().unwrap();
    let mut sorted = n_genes.clone();
    sorted.sort_unstable();
    let threshold = sorted[sorted.len() / 3];
    let q = pred(&format!("plate = '{plate}' AND stat_n_genes > {threshold}"));
    let got = get(&f, &big_cache(), &q).await.unwrap();
    let expected: Vec<u32> = (0..cells.num_rows())
        .filter(|&i| plates[i].as_deref() == Some(plate.as_str()) && n_genes[i] > threshold)
        .map(|i| i as u32)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(got.ids(), expected);
    assert_sorted_distinct(got.ids());
    assert_eq!(got.version(), f.demo.manifest().version);
}

#[tokio::test]
async fn a_select_cohort_may_use_subqueries_and_is_made_distinct() {
    let f = fixture();
    let cells = cells_of(&f.demo);
    let drugs = strings(&cells, "drug");
    let q = select(
        "SELECT cell_id FROM cells WHERE drug IN (SELECT drug FROM cells WHERE cell_id < 3) \
         UNION ALL SELECT cell_id FROM cells WHERE cell_id < 50",
    );
    let got = get(&f, &big_cache(), &q).await.unwrap();
    let chosen = &drugs[..3];
    let expected: Vec<u32> = (0..cells.num_rows())
        .filter(|&i| i < 50 || chosen.contains(&drugs[i]))
        .map(|i| i as u32)
        .collect();
    assert_eq!(got.ids(), expected);
    assert_sorted_distinct(got.ids());
}

#[tokio::test]
async fn a_select_cohort_may_join_genes() {
    let f = fixture();
    let q = select("SELECT c.cell_id FROM cells c JOIN genes g ON c.cell_id = g.gene_idx * 2");
    let got = get(&f, &big_cache(), &q).await.unwrap();
    let expected: Vec<u32> = (0..200).map(|g| g * 2).collect();
    assert_eq!(got.ids(), expected);
}

#[tokio::test]
async fn a_cohort_query_must_return_one_unsigned_cell_id_column() {
    let f = fixture();
    for sql in [
        "SELECT obs_name FROM cells",
        "SELECT cell_id, plate FROM cells",
        "SELECT CAST(cell_id AS BIGINT) AS cell_id FROM cells",
    ] {
        let err = get(&f, &big_cache(), &select(sql)).await.unwrap_err();
        assert!(
            matches!(&err, SqlError::InvalidQuery(m) if m.contains("cell_id")),
            "{sql}: {err}"
        );
    }
    let err = get(
        &f,
        &big_cache(),
        &select("SELECT arrow_cast(4294967296, 'UInt64') AS cell_id"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, SqlError::InvalidQuery(m) if m.contains("32 bits")),
        "{err}"
    );
}

#[tokio::test]
async fn a_predicate_is_one_expression_and_nothing_more() {
    let f = fixture();
    for p in [
        "1 = 1; DROP TABLE demo.cells",
        "true) UNION SELECT cell_id FROM other.cells --",
        "true UNION SELECT cell_id FROM other.cells",
        "plate = 'x' AS p",
        "",
    ] {
        let err = get(&f, &big_cache(), &pred(p)).await.unwrap_err();
        assert_eq!(err.kind(), SqlErrorKind::InvalidQuery, "{p:?}: {err}");
    }
    let err = get(
        &f,
        &big_cache(),
        &select("SELECT cell_id FROM cells; DROP TABLE cells"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), SqlErrorKind::Refused, "{err}");
    let err = get(&f, &big_cache(), &pred("no_such_column > 1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), SqlErrorKind::UnknownColumn, "{err}");
}

#[tokio::test]
async fn an_unknown_dataset_is_named() {
    let f = fixture();
    let err = cohort(&f.engine, &f.snapshot, &big_cache(), "nope", &pred("true"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SqlError::NotFound { what } if what.contains("nope")),
        "{err}"
    );
}

#[tokio::test]
async fn the_same_query_however_spelled_hits_the_cache() {
    let f = fixture();
    let cache = big_cache();
    let a = get(&f, &cache, &pred("stat_n_genes>10 AND plate<>'x'"))
        .await
        .unwrap();
    let b = get(
        &f,
        &cache,
        &pred("  stat_n_genes >  10\n AND plate <> 'x' "),
    )
    .await
    .unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(cache.len(), 1);
    assert!(cache.bytes() >= a.len() * 4);
}

#[tokio::test]
async fn a_replaced_dataset_misses_the_cache() {
    let mut f = fixture();
    let cache = big_cache();
    let q = pred("stat_n_genes > 20");
    let old = get(&f, &cache, &q).await.unwrap();
    let replaced = generated(f.root.path(), "demo", CELLS, 99, true);
    f.snapshot = CatalogSnapshot::new(vec![replaced.clone()], Some("demo")).unwrap();
    let new = get(&f, &cache, &q).await.unwrap();
    assert!(!Arc::ptr_eq(&old, &new));
    assert_eq!(new.version(), replaced.manifest().version);
    let n_genes = u64s(&cells_of(&replaced), "stat_n_genes");
    let expected: Vec<u32> = (0..n_genes.len() as u32)
        .filter(|&i| n_genes[i as usize] > 20)
        .collect();
    assert_eq!(new.ids(), expected);
}

#[tokio::test]
async fn the_least_recently_used_cohort_is_evicted_first() {
    let f = fixture();
    // Each cohort holds 100 cells (400 bytes plus its key): two fit, three don't.
    let cache = CohortCache::new(1200);
    let a = pred("cell_id < 100");
    let b = pred("cell_id >= 2900");
    let c = pred("cell_id BETWEEN 1000 AND 1099");
    let first_a = get(&f, &cache, &a).await.unwrap();
    let first_b = get(&f, &cache, &b).await.unwrap();
    assert!(Arc::ptr_eq(&first_a, &get(&f, &cache, &a).await.unwrap()));
    get(&f, &cache, &c).await.unwrap();
    assert_eq!(cache.len(), 2);
    assert!(cache.bytes() <= 1200);
    assert!(Arc::ptr_eq(&first_a, &get(&f, &cache, &a).await.unwrap()));
    assert!(!Arc::ptr_eq(&first_b, &get(&f, &cache, &b).await.unwrap()));
}
