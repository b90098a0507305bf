//! A collection's rows, read through each member's own [`RowSource`]: a
//! fetch's cell ids split by member, each member's rows read, their genes
//! moved to the collection's stored positions (re-sorted in a row when a
//! member's gene order differs from the collection's) and their values
//! cast to the collection's value type, the widest of its members'. A
//! member stored as the collection stores it (the first member of an
//! outer collection, of the widest type) lends its rows as they are.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowPrimitiveType, UInt16Type, UInt32Type};
use arrow_array::{make_array, new_empty_array, ArrayRef, PrimitiveArray};
use arrow_data::transform::MutableArrayData;
use arrow_data::ArrayData;
use arrow_schema::DataType;
use cellflight_schemas::IndexType;
use cellflight_store::Collection;

use crate::error::EngineError;
use crate::genes::GeneIndex;
use crate::rows::{FetchRows, MappedMatrix, RowSource};

#[derive(Debug)]
pub(crate) struct CollectionRows {
    collection: Arc<Collection>,
    members: Vec<MappedMatrix>,
    index_type: IndexType,
    value_type: DataType,
    /// Per member: whether its stored gene positions are the collection's.
    same_genes: Vec<bool>,
}

/// One member's rows of a fetch, remapped: its item arrays and the
/// entries of each row.
struct MemberRows {
    indices: ArrayRef,
    values: ArrayRef,
    lengths: Vec<u32>,
}

impl CollectionRows {
    /// The rows of `collection`, if every member has a matrix.
    pub(crate) fn of(collection: Arc<Collection>) -> Option<Self> {
        let (index_type, value_type) = collection.matrix_types()?;
        let members = collection
            .members()
            .iter()
            .map(|m| MappedMatrix::of(m.clone()));
        let same_genes = (0..collection.members().len())
            .map(|member| is_identity(collection.member_gene_positions(member)))
            .collect();
        Some(Self {
            members: members.collect::<Option<_>>()?,
            same_genes,
            collection,
            index_type,
            value_type: value_type.arrow(),
        })
    }

    /// Whether member `member`'s `rows` are already as the collection
    /// stores them: same gene positions, index type and value type.
    fn lends(&self, member: usize, rows: &FetchRows) -> bool {
        self.same_genes[member]
            && rows.items.iter().all(|(indices, values)| {
                indices.data_type() == &self.index_type.arrow()
                    && values.data_type() == &self.value_type
            })
    }

    /// Member `member`'s rows of `rows` (read from it) in the stored space.
    /// Only the entries of the rows are touched: a slice's item arrays are
    /// the member's whole mapped matrix.
    fn remap(&self, member: usize, rows: &FetchRows) -> Result<MemberRows, EngineError> {
        let Some((indices, _)) = rows.items.first() else {
            return Ok(MemberRows {
                indices: self.index_array(Vec::new()),
                values: new_empty_array(&self.value_type),
                lengths: Vec::new(),
            });
        };
        match indices.data_type() {
            DataType::UInt16 => self.remap_typed::<UInt16Type>(member, rows),
            _ => self.remap_typed::<UInt32Type>(member, rows),
        }
    }

    fn remap_typed<I>(&self, member: usize, rows: &FetchRows) -> Result<MemberRows, EngineError>
    where
        I: ArrowPrimitiveType,
        I::Native: GeneIndex,
    {
        let positions = self.collection.member_gene_positions(member);
        let keeps_order = self.collection.member_keeps_gene_order(member);
        let genes: Vec<&[I::Native]> = (rows.items.iter())
            .map(|(indices, _)| indices.as_primitive::<I>().values().as_ref())
            .collect();
        let values: Vec<ArrayData> = rows.items.iter().map(|(_, v)| v.to_data()).collect();
        let nnz: usize = rows.entries.iter().map(|&(_, _, len)| len as usize).sum();
        let mut gathered = MutableArrayData::new(values.iter().collect(), false, nnz);
        let mut indices: Vec<u32> = Vec::with_capacity(nnz);
        let mut row: Vec<(u32, usize)> = Vec::new();
        for &(slice, start, len) in &rows.entries {
            let (slice, start, end) = (slice as usize, start as usize, (start + len) as usize);
            let stored = genes[slice][start..end].iter();
            if keeps_order {
                indices.extend(stored.map(|&gene| positions[gene.gene() as usize]));
                gathered.try_extend(slice, start, end)?;
                continue;
            }
            row.clear();
            row.extend(
                stored
                    .zip(start..end)
                    .map(|(&g, e)| (positions[g.gene() as usize], e)),
            );
            row.sort_unstable_by_key(|&(position, _)| position);
            for &(position, entry) in &row {
                indices.push(position);
                gathered.try_extend(slice, entry, entry + 1)?;
            }
        }
        Ok(MemberRows {
            indices: self.index_array(indices),
            values: arrow_cast::cast(&make_array(gathered.freeze()), &self.value_type)?,
            lengths: rows.entries.iter().map(|&(_, _, len)| len).collect(),
        })
    }

    fn index_array(&self, indices: Vec<u32>) -> ArrayRef {
        match self.index_type {
            IndexType::UInt32 => Arc::new(PrimitiveArray::<UInt32Type>::from(indices)),
            // Exact: stored positions are below the stored width, at most
            // 65,536 for UInt16.
            IndexType::UInt16 => Arc::new(PrimitiveArray::<UInt16Type>::from_iter_values(
                indices.into_iter().map(|i| i as u16),
            )),
        }
    }
}

/// Whether `positions` maps every gene to its own index.
fn is_identity(positions: &[u32]) -> bool {
    (positions.iter().enumerate()).all(|(gene, &position)| position as usize == gene)
}

/// `cell_ids` (ascending) split by member: each member holding some, with
/// their ids in it.
fn by_member(offsets: &[u64], cell_ids: &[u64]) -> Vec<(usize, Vec<u64>)> {
    let mut parts = Vec::new();
    let mut rest = cell_ids;
    for (member, bounds) in offsets.windows(2).enumerate() {
        let end = rest.partition_point(|&id| id < bounds[1]);
        if end > 0 {
            parts.push((
                member,
                rest[..end].iter().map(|id| id - bounds[0]).collect(),
            ));
        }
        rest = &rest[end..];
    }
    parts
}

impl RowSource for CollectionRows {
    fn read(&self, cell_ids: Vec<u64>) -> Result<FetchRows, EngineError> {
        let mut items = Vec::new();
        let mut entries = Vec::with_capacity(cell_ids.len());
        for (member, ids) in by_member(self.collection.offsets(), &cell_ids) {
            let rows = self.members[member].read(ids)?;
            if self.lends(member, &rows) {
                let first = items.len() as u32;
                let lent = rows.entries.iter();
                entries.extend(lent.map(|&(slice, start, len)| (first + slice, start, len)));
                items.extend(rows.items);
                continue;
            }
            let rows = self.remap(member, &rows)?;
            let slice = items.len() as u32;
            let mut start = 0;
            for len in rows.lengths {
                entries.push((slice, start, len));
                start += len;
            }
            items.push((rows.indices, rows.values));
        }
        Ok(FetchRows {
            cell_ids,
            items,
            entries,
        })
    }

    fn prefetch(&self, cell_ids: &[u64]) -> Result<(), EngineError> {
        for (member, ids) in by_member(self.collection.offsets(), cell_ids) {
            self.members[member].prefetch(&ids)?;
        }
        Ok(())
    }

    fn check_intact(&self) -> Result<(), EngineError> {
        self.members
            .iter()
            .try_for_each(|member| member.check_intact())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_ids_split_by_member_offsets_into_local_ids() {
        let offsets = [0, 3, 3, 8];
        assert_eq!(
            by_member(&offsets, &[0, 2, 3, 7]),
            [(0, vec![0, 2]), (2, vec![0, 4])],
            "the empty member is skipped, the last one's ids start at 0"
        );
        assert_eq!(by_member(&offsets, &[]), []);
    }
}
