//! A collection in SQL: its `cells` are its members' in member order,
//! ids moved by each member's offset, with `source_dataset`; filters work
//! across members; and only a caller granted every member reaches it.

use std::sync::Arc;

use cellflight_schemas::{CollectionDefinition, DatasetName, Join};
use cellflight_sql::{run_query, Access, CatalogSnapshot, SqlError};
use cellflight_store::{Collection, Dataset};

use crate::common::*;

struct Pooled {
    fixture: Fixture,
    other: Arc<Dataset>,
    snapshot: Arc<CatalogSnapshot>,
}

/// `pooled`: demo then other (3,000 and 100 cells), outer join on gene_id.
fn pooled() -> Pooled {
    let fixture = fixture();
    let other = Arc::new(Dataset::open(&fixture.root.path().join("other")).unwrap());
    let datasets = vec![fixture.demo.clone(), other.clone()];
    let by_name = datasets
        .iter()
        .map(|d| (d.manifest().name.to_string(), d.clone()))
        .collect();
    let members = vec!["demo".parse().unwrap(), "other".parse().unwrap()];
    let definition = CollectionDefinition::new(members, "gene_id".into(), Join::Outer).unwrap();
    let name: DatasetName = "pooled".parse().unwrap();
    let path = fixture.root.path().join("pooled.collection.json");
    let collection = Collection::open(name, &path, definition, &by_name, &[]).unwrap();
    let snapshot =
        CatalogSnapshot::with_collections(datasets, vec![Arc::new(collection)], None).unwrap();
    Pooled {
        fixture,
        other,
        snapshot,
    }
}

async fn run(
    pooled: &Pooled,
    access: &Access,
    sql: &str,
) -> Result<cellflight_sql::QueryResult, SqlError> {
    let snapshot = pooled.snapshot.restricted(access);
    let ctx = pooled.fixture.engine.context(&snapshot)?;
    run_query(&ctx, sql, &[], &pooled.fixture.engine).await
}

#[tokio::test]
async fn cells_are_the_members_cells_in_order_with_offset_ids_and_their_source() {
    let pooled = pooled();
    let sql = "SELECT cell_id, obs_name, plate, source_dataset FROM pooled.cells ORDER BY cell_id";
    let got = one_batch(&run(&pooled, &Access::All, sql).await.unwrap());
    let demo = cells_of(&pooled.fixture.demo);
    let other = cells_of(&pooled.other);
    assert_eq!(u64s(&got, "cell_id"), (0..CELLS + 100).collect::<Vec<_>>());
    let names = [strings(&demo, "obs_name"), strings(&other, "obs_name")].concat();
    assert_eq!(strings(&got, "obs_name"), names);
    let plates = [strings(&demo, "plate"), strings(&other, "plate")].concat();
    assert_eq!(strings(&got, "plate"), plates);
    let sources: Vec<Option<String>> = (0..CELLS + 100)
        .map(|id| Some(if id < CELLS { "demo" } else { "other" }.to_string()))
        .collect();
    assert_eq!(strings(&got, "source_dataset"), sources);
}

#[tokio::test]
async fn filters_and_groups_reach_across_members() {
    let pooled = pooled();
    let sql = "SELECT source_dataset, count(*) AS n FROM pooled.cells \
               WHERE cell_id >= 2950 GROUP BY source_dataset ORDER BY source_dataset";
    let got = one_batch(&run(&pooled, &Access::All, sql).await.unwrap());
    assert_eq!(
        strings(&got, "source_dataset"),
        [Some("demo".into()), Some("other".into())]
    );
    assert_eq!(u64s(&got, "n"), [50, 100]);
}

#[tokio::test]
async fn a_collection_needs_a_grant_on_every_member() {
    let pooled = pooled();
    let granted = |names: &[&str]| Access::granted(names.iter().map(|n| n.to_string()));
    let listed = |access: &Access| -> Vec<String> {
        let snapshot = pooled.snapshot.restricted(access);
        snapshot.datasets().map(|d| d.name().to_string()).collect()
    };
    assert_eq!(
        listed(&granted(&["demo", "other"])),
        ["demo", "other", "pooled"]
    );
    assert_eq!(
        listed(&granted(&["demo", "pooled"])),
        ["demo"],
        "naming it is not enough"
    );
    let sql = "SELECT count(*) AS n FROM pooled.cells";
    match run(&pooled, &granted(&["demo", "pooled"]), sql).await {
        Err(SqlError::PermissionDenied { dataset }) => assert_eq!(dataset, "pooled"),
        other => panic!("expected pooled to be denied, got {other:?}"),
    }
    let got = run(&pooled, &granted(&["demo", "other"]), sql)
        .await
        .unwrap();
    assert_eq!(u64s(&one_batch(&got), "n"), [CELLS + 100]);
}
