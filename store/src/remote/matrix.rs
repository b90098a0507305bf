//! `matrix.arrow` of a remote version, read by ranged reads: only the
//! rows asked for, never whole stored batches.
//!
//! The IPC footer is read at open. A stored batch's message header (where
//! its buffers lie) is read the first time one of its cells is, and kept.
//! Rows then cost two rounds of reads: their offsets, then their indices
//! and values (both lists share the offsets, as the writer makes them).

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use arrow_array::{make_array, ArrayRef, ListArray, RecordBatch};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_data::ArrayDataBuilder;
use arrow_ipc::convert::fb_to_schema;
use arrow_ipc::reader::read_footer_length;
use arrow_ipc::{root_as_footer, root_as_message, Block};
use arrow_schema::{DataType, FieldRef, SchemaRef};
use bytes::Bytes;

use super::object::RemoteObject;
use crate::{StoreError, VERSION_METADATA_KEY};

/// Field nodes and buffers of a stored batch: two non-null lists of
/// primitives, each a validity and an offsets buffer, then its items'
/// validity and values.
const NODES: usize = 4;
const BUFFERS: usize = 8;
const INDEX_OFFSETS: usize = 1;
const INDEX_ITEMS: usize = 3;
const VALUE_ITEMS: usize = 7;

pub struct RemoteMatrix {
    object: RemoteObject,
    schema: SchemaRef,
    blocks: Vec<Block>,
    layouts: Vec<OnceLock<BatchLayout>>,
    cells_per_batch: u64,
    n_cells: u64,
}

impl fmt::Debug for RemoteMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteMatrix")
            .field("url", &self.object.url())
            .field("n_cells", &self.n_cells)
            .finish_non_exhaustive()
    }
}

/// Where one stored batch's rows lie in the object.
#[derive(Debug, Clone)]
struct BatchLayout {
    rows: u64,
    offsets: Range<u64>,
    index_items: Range<u64>,
    value_items: Range<u64>,
}

/// Rows `rows` of stored batch `batch`.
#[derive(Debug, Clone)]
struct Piece {
    batch: usize,
    rows: Range<u64>,
}

impl RemoteMatrix {
    /// The matrix in `object`, which must be stamped with `version`.
    pub(crate) fn open(
        object: RemoteObject,
        version: &str,
        cells_per_batch: u32,
        n_cells: u64,
    ) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            file: object.url().to_owned(),
            reason,
        };
        let size = object.size();
        let tail_start = size
            .checked_sub(10)
            .ok_or_else(|| corrupt("too short for an Arrow IPC file".into()))?;
        let tail = object.read_range(tail_start..size)?;
        let trailer: [u8; 10] = tail[..]
            .try_into()
            .map_err(|_| corrupt("no trailer".into()))?;
        let footer_len = read_footer_length(trailer).map_err(|e| corrupt(e.to_string()))?;
        let footer_start = tail_start
            .checked_sub(footer_len as u64)
            .ok_or_else(|| corrupt("the footer is longer than the file".into()))?;
        let footer_bytes = object.read_range(footer_start..tail_start)?;
        let footer = root_as_footer(&footer_bytes)
            .map_err(|e| corrupt(format!("unreadable IPC footer: {e}")))?;
        let schema = footer
            .schema()
            .map(|s| Arc::new(fb_to_schema(s)))
            .ok_or_else(|| corrupt("the footer has no schema".into()))?;
        let found = schema.metadata().get(VERSION_METADATA_KEY);
        if found.map(String::as_str) != Some(version) {
            return Err(corrupt(format!(
                "belongs to version {}, but the manifest says {version}",
                found.map_or("none", String::as_str)
            )));
        }
        let blocks: Vec<Block> = footer
            .recordBatches()
            .map(|b| b.iter().copied().collect())
            .unwrap_or_default();
        if blocks.len() as u64 != n_cells.div_ceil(u64::from(cells_per_batch.max(1))) {
            return Err(corrupt(format!(
                "{} stored batches for {n_cells} cells of {cells_per_batch} a batch",
                blocks.len()
            )));
        }
        Ok(Self {
            layouts: blocks.iter().map(|_| OnceLock::new()).collect(),
            object,
            schema,
            blocks,
            cells_per_batch: u64::from(cells_per_batch),
            n_cells,
        })
    }

    pub fn n_cells(&self) -> u64 {
        self.n_cells
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn object(&self) -> &RemoteObject {
        &self.object
    }

    /// Cells `cells` (each range ascending) as record batches of the
    /// stored schema, one per stored batch a range touches, in order.
    pub fn cells(&self, cells: &[Range<u64>]) -> Result<Vec<RecordBatch>, StoreError> {
        let pieces = self.pieces(cells)?;
        self.load_layouts(&pieces)?;
        let offset_ranges: Vec<Range<u64>> = pieces
            .iter()
            .map(|p| {
                let at = self.layout(p.batch).offsets.start;
                at + 4 * p.rows.start..at + 4 * (p.rows.end + 1)
            })
            .collect();
        let offsets = self.object.read_ranges(&offset_ranges)?;
        let entries = pieces
            .iter()
            .zip(&offsets)
            .map(|(piece, raw)| self.entries(piece, raw))
            .collect::<Result<Vec<_>, _>>()?;
        let (index_width, value_width) = (self.item_width(0)?, self.item_width(1)?);
        let item_ranges: Vec<Range<u64>> = pieces
            .iter()
            .zip(&entries)
            .flat_map(|(piece, (first, last, _))| {
                let layout = self.layout(piece.batch);
                [
                    layout.index_items.start + index_width * first
                        ..layout.index_items.start + index_width * last,
                    layout.value_items.start + value_width * first
                        ..layout.value_items.start + value_width * last,
                ]
            })
            .collect();
        let items = self.object.read_ranges(&item_ranges)?;
        entries
            .into_iter()
            .zip(items.chunks(2))
            .map(|((_, _, offsets), items)| self.batch(offsets, &items[0], &items[1]))
            .collect()
    }

    /// Reads `cells` in the background, so that reading them next finds
    /// them in the block cache.
    pub fn prefetch(self: &Arc<Self>, cells: Vec<Range<u64>>) {
        let matrix = Arc::clone(self);
        let started = super::io::spawn_blocking(move || {
            if let Err(error) = matrix.cells(&cells) {
                tracing::debug!(%error, "prefetching failed; the read will try again");
            }
        });
        if let Err(error) = started {
            tracing::debug!(%error, "cannot prefetch");
        }
    }

    fn pieces(&self, cells: &[Range<u64>]) -> Result<Vec<Piece>, StoreError> {
        let mut pieces = Vec::new();
        for run in cells {
            if run.start > run.end || run.end > self.n_cells {
                return Err(StoreError::InvalidInput(format!(
                    "cells {run:?} requested of a matrix of {} cells",
                    self.n_cells
                )));
            }
            let mut next = run.start;
            while next < run.end {
                let batch = next / self.cells_per_batch;
                let first = batch * self.cells_per_batch;
                let end = run.end.min(first + self.cells_per_batch);
                pieces.push(Piece {
                    batch: batch as usize,
                    rows: next - first..end - first,
                });
                next = end;
            }
        }
        Ok(pieces)
    }

    /// Reads the message headers of the batches `pieces` touch that were
    /// never read, all at once.
    fn load_layouts(&self, pieces: &[Piece]) -> Result<(), StoreError> {
        let mut missing: Vec<usize> = pieces
            .iter()
            .map(|p| p.batch)
            .filter(|&b| self.layouts[b].get().is_none())
            .collect();
        missing.dedup();
        let ranges: Vec<Range<u64>> = missing
            .iter()
            .map(|&b| {
                let block = &self.blocks[b];
                let start = block.offset() as u64;
                start..start + block.metaDataLength() as u64
            })
            .collect();
        let headers = self.object.read_ranges(&ranges)?;
        for (batch, header) in missing.into_iter().zip(headers) {
            let layout = self.parse_layout(batch, &header)?;
            let _ = self.layouts[batch].set(layout);
        }
        for piece in pieces {
            let rows = self.layout(piece.batch).rows;
            if piece.rows.end > rows {
                return Err(self.corrupt(format!(
                    "stored batch {} has {rows} rows, fewer than the manifest says",
                    piece.batch
                )));
            }
        }
        Ok(())
    }

    fn layout(&self, batch: usize) -> &BatchLayout {
        match self.layouts[batch].get() {
            Some(layout) => layout,
            None => unreachable!("load_layouts reads every layout a piece needs first"),
        }
    }

    fn parse_layout(&self, batch: usize, header: &Bytes) -> Result<BatchLayout, StoreError> {
        let block = &self.blocks[batch];
        let flatbuffer = match header.get(..4) {
            Some([0xff, 0xff, 0xff, 0xff]) => header.get(8..),
            _ => header.get(4..),
        }
        .ok_or_else(|| self.corrupt(format!("batch {batch}: a header too short")))?;
        let message = root_as_message(flatbuffer)
            .map_err(|e| self.corrupt(format!("batch {batch}: unreadable header: {e}")))?;
        let batch_header = message
            .header_as_record_batch()
            .ok_or_else(|| self.corrupt(format!("batch {batch}: not a record batch")))?;
        let nodes = batch_header.nodes().map(|n| n.len()).unwrap_or(0);
        let buffers: Vec<_> = batch_header
            .buffers()
            .map(|b| b.iter().collect())
            .unwrap_or_default();
        let nulls = batch_header
            .nodes()
            .is_some_and(|n| n.iter().any(|n| n.null_count() != 0));
        if batch_header.compression().is_some()
            || nodes != NODES
            || buffers.len() != BUFFERS
            || nulls
        {
            return Err(self.corrupt(format!(
                "batch {batch}: not the stored layout (two non-null uncompressed lists)"
            )));
        }
        let body = block.offset() as u64 + block.metaDataLength() as u64;
        let body_end = body + block.bodyLength() as u64;
        let range = |i: usize| {
            let start = body + buffers[i].offset() as u64;
            let range = start..start + buffers[i].length() as u64;
            match range.end <= body_end && buffers[i].offset() >= 0 {
                true => Ok(range),
                false => Err(self.corrupt(format!("batch {batch}: buffer {i} outside its body"))),
            }
        };
        Ok(BatchLayout {
            rows: batch_header.length() as u64,
            offsets: range(INDEX_OFFSETS)?,
            index_items: range(INDEX_ITEMS)?,
            value_items: range(VALUE_ITEMS)?,
        })
    }

    /// The first and last entry of `piece` and its offsets from 0, checked
    /// against the items its batch holds.
    fn entries(&self, piece: &Piece, raw: &Bytes) -> Result<(u64, u64, Vec<i32>), StoreError> {
        let offsets: Vec<i32> = raw
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let layout = self.layout(piece.batch);
        let items = (layout.index_items.end - layout.index_items.start) / self.item_width(0)?;
        let sound = offsets.len() as u64 == piece.rows.end - piece.rows.start + 1
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && offsets[0] >= 0
            && offsets.last().is_some_and(|&last| last as u64 <= items);
        if !sound {
            return Err(self.corrupt(format!("batch {}: bad offsets", piece.batch)));
        }
        let first = offsets[0];
        let last = offsets[offsets.len() - 1];
        let rebased = offsets.iter().map(|o| o - first).collect();
        Ok((first as u64, last as u64, rebased))
    }

    fn batch(
        &self,
        offsets: Vec<i32>,
        indices: &Bytes,
        values: &Bytes,
    ) -> Result<RecordBatch, StoreError> {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let columns = [indices, values]
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| {
                let field = self.list_item(i)?;
                let n = bytes.len() / self.item_width(i)? as usize;
                let items = ArrayDataBuilder::new(field.data_type().clone())
                    .len(n)
                    .add_buffer(Buffer::from(bytes.clone()))
                    .align_buffers(true)
                    .build()
                    .map_err(|e| self.corrupt(e.to_string()))?;
                let list = ListArray::try_new(field, offsets.clone(), make_array(items), None)
                    .map_err(|e| self.corrupt(e.to_string()))?;
                Ok(Arc::new(list) as ArrayRef)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| self.corrupt(e.to_string()))
    }

    fn list_item(&self, column: usize) -> Result<FieldRef, StoreError> {
        match self.schema.fields().get(column).map(|f| f.data_type()) {
            Some(DataType::List(item)) => Ok(item.clone()),
            _ => Err(self.corrupt(format!("column {column} is not a list"))),
        }
    }

    fn item_width(&self, column: usize) -> Result<u64, StoreError> {
        self.list_item(column)?
            .data_type()
            .primitive_width()
            .map(|w| w as u64)
            .ok_or_else(|| self.corrupt(format!("column {column} holds no primitives")))
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            file: self.object.url().to_owned(),
            reason,
        }
    }
}
