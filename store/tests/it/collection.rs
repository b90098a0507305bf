//! Collections opened over real (tiny) datasets: the rules a definition
//! must meet against its members, the united cells columns, and the
//! aligned gene space.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, DictionaryArray, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray,
    UInt8Array,
};
use arrow_schema::{DataType, Field, Schema};
use cellflight_schemas::{Categorical, CollectionDefinition, DatasetName, Join, ValueType};
use cellflight_store::*;

use crate::support::test_description;

/// One member to write: its genes (by `gene_id`), rows as (gene, value)
/// entries, and obs columns beside `obs_name`.
struct Member {
    name: &'static str,
    genes: Vec<&'static str>,
    rows: Vec<Vec<(u32, f64)>>,
    obs: Vec<(Field, ArrayRef)>,
    categoricals: Vec<Categorical>,
    value_type: ValueType,
}

fn write(dir: &Path, member: &Member) -> Arc<Dataset> {
    let n_cells = member.rows.len();
    let mut indptr = vec![0u64];
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    for row in &member.rows {
        for &(gene, value) in row {
            indices.push(gene);
            values.push(value);
        }
        indptr.push(indices.len() as u64);
    }
    let names: Vec<String> = (0..n_cells)
        .map(|i| format!("{}_{i}", member.name))
        .collect();
    let mut fields = vec![Field::new(OBS_NAME, DataType::Utf8, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(names))];
    for (field, column) in &member.obs {
        fields.push(field.clone());
        columns.push(column.clone());
    }
    let obs = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let genes = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            GENE_ID,
            DataType::Utf8,
            false,
        )])),
        vec![Arc::new(StringArray::from(member.genes.clone()))],
    )
    .unwrap();
    let target = dir.join(member.name);
    let spec = DatasetSpec {
        n_genes: member.genes.len() as u64,
        matrix: Some(MatrixSpec {
            value_type: member.value_type,
            cells_per_batch: 2,
        }),
    };
    let mut writer = DatasetWriter::create(&target, spec, WriteMode::Replace).unwrap();
    let rows = CellRows::Expression(CsrRows {
        indptr: &indptr,
        indices: &indices,
        values: &values,
    });
    writer.append(rows, &obs).unwrap();
    let description = test_description(member.categoricals.clone());
    writer.finish(&genes, description).unwrap();
    Arc::new(Dataset::open(&target).unwrap())
}

fn categorical(column: &str, categories: &[&str]) -> Categorical {
    Categorical {
        column: column.into(),
        categories: categories.iter().map(|c| c.to_string()).collect(),
        ordered: false,
    }
}

fn dictionary(keys: &[i32], categories: &[&str]) -> ArrayRef {
    let keys = Int32Array::from(keys.to_vec());
    let values = Arc::new(StringArray::from(categories.to_vec()));
    Arc::new(DictionaryArray::<Int32Type>::try_new(keys, values).unwrap())
}

fn plate_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// `a`: 3 cells over genes G1 G2 G3, uint8 values, a plate and an int16 count.
fn member_a() -> Member {
    Member {
        name: "a",
        genes: vec!["G1", "G2", "G3"],
        rows: vec![vec![(0, 1.0), (2, 3.0)], vec![], vec![(1, 7.0)]],
        obs: vec![
            (
                Field::new("plate", plate_type(), true),
                dictionary(&[0, 1, 0], &["p1", "p2"]),
            ),
            (
                Field::new("count", DataType::Int16, true),
                Arc::new(Int16Array::from(vec![-1, 2, 3])),
            ),
        ],
        categoricals: vec![categorical("plate", &["p1", "p2"])],
        value_type: ValueType::UInt8,
    }
}

/// `b`: 2 cells over genes G3 G4 G1 (another order, one new), uint16
/// values, a plate with a new category, a wider count and a donor.
fn member_b() -> Member {
    Member {
        name: "b",
        genes: vec!["G3", "G4", "G1"],
        rows: vec![vec![(0, 300.0), (1, 2.0), (2, 5.0)], vec![(2, 9.0)]],
        obs: vec![
            (
                Field::new("plate", plate_type(), true),
                dictionary(&[1, 0], &["p3", "p1"]),
            ),
            (
                Field::new("count", DataType::Int64, true),
                Arc::new(Int64Array::from(vec![40_000, 5])),
            ),
            (
                Field::new("donor", DataType::Utf8, true),
                Arc::new(StringArray::from(vec!["d1", "d2"])),
            ),
        ],
        categoricals: vec![categorical("plate", &["p3", "p1"])],
        value_type: ValueType::UInt16,
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    datasets: BTreeMap<String, Arc<Dataset>>,
}

impl Fixture {
    fn new(members: &[Member]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let datasets = members
            .iter()
            .map(|m| (m.name.to_string(), write(dir.path(), m)))
            .collect();
        Self { dir, datasets }
    }

    fn open(&self, members: &[&str], join: Join) -> Result<Collection, CollectionError> {
        self.open_as("both", members, "gene_id", join)
    }

    fn open_as(
        &self,
        name: &str,
        members: &[&str],
        key: &str,
        join: Join,
    ) -> Result<Collection, CollectionError> {
        let members = members.iter().map(|m| m.parse().unwrap()).collect();
        let definition = CollectionDefinition::new(members, key.into(), join).unwrap();
        let collections: Vec<DatasetName> =
            vec!["both".parse().unwrap(), "nested".parse().unwrap()];
        Collection::open(
            name.parse().unwrap(),
            Path::new("both.collection.json"),
            definition,
            &self.datasets,
            &collections,
        )
    }
}

fn two() -> Fixture {
    Fixture::new(&[member_a(), member_b()])
}

fn strings(array: &dyn Array) -> Vec<Option<String>> {
    let text = arrow_cast::cast(array, &DataType::Utf8).unwrap();
    text.as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}

#[test]
fn cells_follow_member_order_with_offset_ids_and_their_source() {
    let collection = two().open(&["a", "b"], Join::Outer).unwrap();
    assert_eq!(collection.offsets(), [0, 3, 5]);
    let (_, ids) = collection.column(Table::Cells, CELL_ID).unwrap();
    assert_eq!(
        ids.as_primitive::<UInt64Type>().values().as_ref(),
        [0, 1, 2, 3, 4]
    );
    let (field, source) = collection.column(Table::Cells, SOURCE_DATASET).unwrap();
    assert_eq!(field.data_type(), &plate_type());
    let source = source.as_dictionary::<Int32Type>();
    assert_eq!(
        source.keys().values().as_ref(),
        [0, 0, 0, 1, 1],
        "codes are member positions"
    );
    assert_eq!(
        strings(source.values().as_ref()),
        [Some("a".into()), Some("b".into())]
    );
    let names: Vec<String> = collection
        .cells()
        .iter()
        .map(|c| c.field.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            CELL_ID,
            OBS_NAME,
            "plate",
            "count",
            STAT_N_GENES,
            STAT_TOTAL,
            "donor",
            SOURCE_DATASET
        ],
        "cell_id, the first member's columns, later members' new ones, source_dataset"
    );
}

#[test]
fn a_categorical_unites_its_categories_in_member_order_with_consistent_codes() {
    let collection = two().open(&["a", "b"], Join::Outer).unwrap();
    let (_, plate) = collection.column(Table::Cells, "plate").unwrap();
    let plate = plate.as_dictionary::<Int32Type>();
    assert_eq!(
        strings(plate.values().as_ref()),
        [Some("p1".into()), Some("p2".into()), Some("p3".into())]
    );
    // a: p1 p2 p1; b: p1 p3 (its codes 1, 0 over [p3, p1]).
    assert_eq!(plate.keys().values().as_ref(), [0, 1, 0, 0, 2]);
}

#[test]
fn numbers_widen_and_missing_columns_are_null() {
    let collection = two().open(&["a", "b"], Join::Outer).unwrap();
    let (field, count) = collection.column(Table::Cells, "count").unwrap();
    assert_eq!(
        field.data_type(),
        &DataType::Int64,
        "Int16 with Int64 gives Int64"
    );
    assert_eq!(
        count.as_primitive::<Int64Type>().values().as_ref(),
        [-1, 2, 3, 40_000, 5]
    );
    let (field, donor) = collection.column(Table::Cells, "donor").unwrap();
    assert!(field.is_nullable());
    assert_eq!(
        strings(donor.as_ref()),
        [None, None, None, Some("d1".into()), Some("d2".into())]
    );
}

#[test]
fn the_outer_gene_space_is_the_first_members_genes_then_each_later_ones_new_genes() {
    let collection = two().open(&["a", "b"], Join::Outer).unwrap();
    let genes = collection.genes_table();
    let keys = strings(genes.column_by_name(GENE_ID).unwrap().as_ref());
    let keys: Vec<String> = keys.into_iter().flatten().collect();
    assert_eq!(keys, ["G1", "G2", "G3", "G4"]);
    assert_eq!(collection.member_gene_positions(0), [0, 1, 2]);
    assert_eq!(collection.member_gene_positions(1), [2, 3, 0]);
    assert!(collection.member_keeps_gene_order(0) && !collection.member_keeps_gene_order(1));
    assert_eq!(
        collection.gene_space(),
        None,
        "outer: the stored space itself"
    );
    let members = genes.column_by_name(STAT_N_MEMBERS).unwrap();
    assert_eq!(
        members.as_primitive::<UInt32Type>().values().as_ref(),
        [2, 1, 2, 1]
    );
    let n_cells = genes.column_by_name(STAT_N_CELLS).unwrap();
    // G1: a's cell 0 and both of b's cells; G3: a's cell 0 and b's cell 0.
    assert_eq!(
        n_cells.as_primitive::<UInt64Type>().values().as_ref(),
        [3, 1, 2, 1]
    );
}

#[test]
fn the_inner_gene_space_is_the_shared_genes_in_the_first_members_order() {
    let collection = two().open(&["b", "a"], Join::Inner).unwrap();
    let keys = strings(
        collection
            .genes_table()
            .column_by_name(GENE_ID)
            .unwrap()
            .as_ref(),
    );
    assert_eq!(keys, [Some("G3".into()), Some("G1".into())]);
    assert_eq!(collection.n_genes(), 2);
    assert_eq!(
        collection.n_stored_genes(),
        4,
        "rows keep every gene, for their totals"
    );
    assert_eq!(
        collection.gene_space(),
        Some(&[0, 2][..]),
        "G3 and G1 in b's order"
    );
}

#[test]
fn rows_are_read_in_the_widest_member_type() {
    let collection = two().open(&["a", "b"], Join::Outer).unwrap();
    assert_eq!(
        collection.matrix_types(),
        Some((cellflight_schemas::IndexType::UInt16, ValueType::UInt16))
    );
    assert_eq!(collection.n_cells(), 5);
    assert_eq!(collection.nnz(), 3 + 4);
}

#[test]
fn the_version_changes_with_a_member_and_with_the_definition() {
    let mut fixture = two();
    let outer = fixture.open(&["a", "b"], Join::Outer).unwrap();
    assert_eq!(
        outer.version(),
        fixture.open(&["a", "b"], Join::Outer).unwrap().version()
    );
    let inner = fixture.open(&["a", "b"], Join::Inner).unwrap();
    assert_ne!(outer.version(), inner.version());
    let replaced = write(fixture.dir.path(), &member_b());
    fixture.datasets.insert("b".into(), replaced);
    let after = fixture.open(&["a", "b"], Join::Outer).unwrap();
    assert_ne!(outer.version(), after.version(), "b was written again");
}

#[test]
fn members_that_break_the_rules_are_refused_naming_them() {
    let fixture = two();
    let refused = |name: &str, members: &[&str], key: &str| {
        fixture
            .open_as(name, members, key, Join::Outer)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refused("both", &["a", "zz"], "gene_id"),
        "collection both: member zz is not a dataset of the data directory"
    );
    assert!(refused("both", &["a", "nested"], "gene_id").contains("member nested is a collection"));
    assert!(refused("a", &["b"], "gene_id").contains("a dataset already has that name"));
    assert!(refused("both", &["a", "b"], "symbol")
        .contains("member a's genes have no column \"symbol\""));
}

#[test]
fn a_member_with_duplicate_gene_keys_is_refused_naming_them() {
    let mut twice = member_b();
    twice.name = "twice";
    twice.genes = vec!["G3", "G1", "G1"];
    let fixture = Fixture::new(&[member_a(), twice]);
    let error = fixture
        .open(&["a", "twice"], Join::Outer)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("member twice's gene key gene_id holds some values more than once: \"G1\""),
        "{error}"
    );
}

#[test]
fn conflicting_types_and_a_taken_source_dataset_are_refused() {
    let mut texts = member_b();
    texts.name = "texts";
    texts.obs[1] = (
        Field::new("count", DataType::Utf8, true),
        Arc::new(StringArray::from(vec!["x", "y"])),
    );
    let mut sourced = member_b();
    sourced.name = "sourced";
    sourced.obs[2] = (
        Field::new(SOURCE_DATASET, DataType::UInt8, true),
        Arc::new(UInt8Array::from(vec![1, 2])),
    );
    let fixture = Fixture::new(&[member_a(), texts, sourced]);
    let error = fixture
        .open(&["a", "texts"], Join::Outer)
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "collection both: column count is Int16 in a and Utf8 in texts, which do not widen to one type (docs/format.md)"
    );
    let error = fixture
        .open(&["a", "sourced"], Join::Outer)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("member sourced's cells already have a column source_dataset"),
        "{error}"
    );
}

#[test]
fn an_ordered_conflict_is_refused() {
    let mut ordered = member_b();
    ordered.name = "ordered";
    ordered.categoricals[0].ordered = true;
    let fixture = Fixture::new(&[member_a(), ordered]);
    let error = fixture
        .open(&["a", "ordered"], Join::Outer)
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "collection both: categorical plate is ordered in ordered but not in a"
    );
}

#[test]
fn definitions_round_trip_through_their_file_and_the_directory_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let definition =
        CollectionDefinition::new(vec!["a".parse().unwrap()], "gene_id".into(), Join::Inner)
            .unwrap();
    let name: DatasetName = "both".parse().unwrap();
    let path = write_definition(dir.path(), &name, &definition).unwrap();
    assert_eq!(path, dir.path().join("both.collection.json"));
    assert_eq!(read_definition(&path).unwrap(), definition);
    std::fs::write(dir.path().join("Bad.collection.json"), "{}").unwrap();
    let listed: Vec<String> = collection_files(dir.path())
        .unwrap()
        .into_iter()
        .map(|f| match f {
            Ok((name, _)) => name.to_string(),
            Err(e) => e.to_string(),
        })
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&"both".to_string()));
    assert!(
        listed
            .iter()
            .any(|l| l.contains("invalid dataset name \"Bad\"")),
        "{listed:?}"
    );
}

#[test]
fn a_definition_file_over_its_bound_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.collection.json");
    let padding = " ".repeat(cellflight_schemas::MAX_COLLECTION_FILE_BYTES as usize);
    std::fs::write(&path, format!("{{\"members\": [\"a\"]}}{padding}")).unwrap();
    let error = read_definition(&path).unwrap_err().to_string();
    assert!(
        error.contains("too large for a collection definition"),
        "{error}"
    );
}
