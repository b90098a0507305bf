//! Arrow IPC record batch and dictionary batch messages whose bodies are
//! written in place. A minibatch's stored rows are gathered straight from
//! the memory map into the message body, one copy; building a RecordBatch
//! and handing it to arrow-ipc's writer would copy every buffer twice.
//!
//! The body follows the IPC format as arrow-ipc writes it: buffers in
//! field order (validity, then the type's buffers, children after their
//! parent), each padded to 64 bytes, a 0-length validity buffer for a
//! field without nulls.

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_buffer::ArrowNativeType;
use arrow_data::ArrayData;
use arrow_ipc::writer::EncodedData;
use arrow_schema::{ArrowError, DataType};
use flatbuffers::FlatBufferBuilder;

/// Buffers start at multiples of this, as arrow-ipc aligns them, so a reader
/// can map any buffer without copying it.
const ALIGNMENT: usize = 64;

/// The body of one IPC message, and its field nodes and buffer locations.
pub(crate) struct MessageBody {
    body: Vec<u8>,
    nodes: Vec<arrow_ipc::FieldNode>,
    buffers: Vec<arrow_ipc::Buffer>,
}

impl MessageBody {
    /// An empty body with room for `bytes` of buffers.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Self {
            body: Vec::with_capacity(bytes),
            nodes: Vec::new(),
            buffers: Vec::new(),
        }
    }

    /// A field node: an array of `len` values, `nulls` of them null.
    pub(crate) fn node(&mut self, len: usize, nulls: usize) {
        self.nodes
            .push(arrow_ipc::FieldNode::new(len as i64, nulls as i64));
    }

    /// A buffer of exactly `len` bytes, which `write` appends to the body.
    pub(crate) fn buffer_with(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.body.len();
        write(&mut self.body);
        debug_assert_eq!(
            self.body.len() - start,
            len,
            "a buffer wrote the wrong length"
        );
        self.buffers
            .push(arrow_ipc::Buffer::new(start as i64, len as i64));
        let padded = len.next_multiple_of(ALIGNMENT);
        self.body.resize(start + padded, 0);
    }

    pub(crate) fn buffer(&mut self, bytes: &[u8]) {
        self.buffer_with(bytes.len(), |body| body.extend_from_slice(bytes));
    }

    /// A buffer holding `values` in native (little-endian) byte order.
    pub(crate) fn values<T: ArrowNativeType>(&mut self, values: &[T]) {
        self.buffer(values_bytes(values));
    }

    /// The 0-length validity buffer of a field without nulls.
    pub(crate) fn no_validity(&mut self) {
        self.buffer(&[]);
    }

    /// A whole array: its node and buffers, its children after them. Every
    /// array built for a minibatch is new; a slice other than of
    /// fixed-width values is refused. Types are those [`is_supported`]
    /// accepts.
    pub(crate) fn array(&mut self, array: &dyn Array) -> Result<(), ArrowError> {
        self.array_data(&array.to_data())
    }

    fn array_data(&mut self, data: &ArrayData) -> Result<(), ArrowError> {
        // A slice of fixed-width values has its buffer sliced (offset 0); a
        // bit-packed or nested slice keeps an offset, which is not written.
        if data.offset() != 0 {
            return Err(ArrowError::InvalidArgumentError(
                "a sliced array cannot be written in place".into(),
            ));
        }
        let len = data.len();
        self.node(len, data.null_count());
        match data.nulls() {
            Some(nulls) if data.null_count() > 0 => {
                if nulls.offset() != 0 {
                    return Err(ArrowError::InvalidArgumentError(
                        "a sliced validity bitmap cannot be written in place".into(),
                    ));
                }
                self.buffer(&nulls.validity()[..len.div_ceil(8)]);
            }
            _ => self.no_validity(),
        }
        match data.data_type() {
            DataType::Boolean => self.buffer(&data.buffers()[0].as_slice()[..len.div_ceil(8)]),
            DataType::Utf8 | DataType::Binary => self.byte_array::<i32>(data)?,
            DataType::LargeUtf8 | DataType::LargeBinary => self.byte_array::<i64>(data)?,
            DataType::List(_) => {
                let offsets = &data.buffer::<i32>(0)[..=len];
                self.list_offsets(offsets)?;
                self.array_data(&data.child_data()[0])?;
            }
            DataType::FixedSizeList(_, _) => self.array_data(&data.child_data()[0])?,
            // A dictionary's keys: its values travel in a dictionary batch.
            DataType::Dictionary(key, _) => {
                let width = key.primitive_width().ok_or_else(|| {
                    ArrowError::InvalidArgumentError(format!("dictionary key type {key}"))
                })?;
                self.buffer(&data.buffers()[0].as_slice()[..len * width]);
            }
            data_type => match data_type.primitive_width() {
                Some(width) => self.buffer(&data.buffers()[0].as_slice()[..len * width]),
                None => {
                    return Err(ArrowError::NotYetImplemented(format!(
                        "streaming a column of type {data_type}"
                    )))
                }
            },
        }
        Ok(())
    }

    fn byte_array<O: ArrowNativeType + Into<i64>>(
        &mut self,
        data: &ArrayData,
    ) -> Result<(), ArrowError> {
        let offsets = &data.buffer::<O>(0)[..=data.len()];
        self.list_offsets(offsets)?;
        let end: i64 = offsets[offsets.len() - 1].into();
        self.buffer(&data.buffers()[1].as_slice()[..end as usize]);
        Ok(())
    }

    fn list_offsets<O: ArrowNativeType + Into<i64>>(
        &mut self,
        offsets: &[O],
    ) -> Result<(), ArrowError> {
        if offsets[0].into() != 0 {
            return Err(ArrowError::InvalidArgumentError(
                "offsets of an array written in place start at 0".into(),
            ));
        }
        self.values(offsets);
        Ok(())
    }

    /// The record batch message of `rows` rows.
    pub(crate) fn record_batch(self, rows: usize) -> EncodedData {
        let mut fbb = FlatBufferBuilder::new();
        let batch = self.batch_header(&mut fbb, rows);
        self.message(
            fbb,
            arrow_ipc::MessageHeader::RecordBatch,
            batch.as_union_value(),
        )
    }

    /// The dictionary batch message of dictionary `id`, whose values are
    /// the body's one array, of `rows` values.
    pub(crate) fn dictionary_batch(self, id: i64, rows: usize) -> EncodedData {
        let mut fbb = FlatBufferBuilder::new();
        let batch = self.batch_header(&mut fbb, rows);
        let mut dictionary = arrow_ipc::DictionaryBatchBuilder::new(&mut fbb);
        dictionary.add_id(id);
        dictionary.add_data(batch);
        dictionary.add_isDelta(false);
        let dictionary = dictionary.finish();
        self.message(
            fbb,
            arrow_ipc::MessageHeader::DictionaryBatch,
            dictionary.as_union_value(),
        )
    }

    fn batch_header<'a>(
        &self,
        fbb: &mut FlatBufferBuilder<'a>,
        rows: usize,
    ) -> flatbuffers::WIPOffset<arrow_ipc::RecordBatch<'a>> {
        let nodes = fbb.create_vector(&self.nodes);
        let buffers = fbb.create_vector(&self.buffers);
        let mut batch = arrow_ipc::RecordBatchBuilder::new(fbb);
        batch.add_length(rows as i64);
        batch.add_nodes(nodes);
        batch.add_buffers(buffers);
        batch.finish()
    }

    fn message(
        self,
        mut fbb: FlatBufferBuilder<'_>,
        kind: arrow_ipc::MessageHeader,
        header: flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset>,
    ) -> EncodedData {
        let mut message = arrow_ipc::MessageBuilder::new(&mut fbb);
        // The version arrow-ipc's writer uses by default.
        message.add_version(arrow_ipc::MetadataVersion::V5);
        message.add_header_type(kind);
        message.add_bodyLength(self.body.len() as i64);
        message.add_header(header);
        let message = message.finish();
        fbb.finish(message, None);
        EncodedData {
            ipc_message: fbb.finished_data().to_vec(),
            arrow_data: self.body,
        }
    }
}

/// Whether [`MessageBody::array`] writes arrays of this type: every type a
/// dataset's `cells` table holds (docs/format.md), and the expression
/// columns.
pub(crate) fn is_supported(data_type: &DataType) -> bool {
    match data_type {
        DataType::Boolean
        | DataType::Utf8
        | DataType::Binary
        | DataType::LargeUtf8
        | DataType::LargeBinary => true,
        DataType::List(item) | DataType::FixedSizeList(item, _) => is_supported(item.data_type()),
        DataType::Dictionary(key, value) => key.is_integer() && is_supported(value),
        other => other.primitive_width().is_some(),
    }
}

/// The dictionary values of a dictionary-encoded column.
pub(crate) fn dictionary_values(column: &dyn Array) -> Option<&ArrayRef> {
    column.as_any_dictionary_opt().map(|d| d.values())
}

/// The bytes of fixed-width values, in native (little-endian) order.
pub(crate) fn values_bytes<T: ArrowNativeType>(values: &[T]) -> &[u8] {
    // SAFETY: Arrow native types are plain fixed-width numbers without
    // padding or invalid bit patterns; the slice covers exactly their bytes.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), std::mem::size_of_val(values)) }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::types::{Int32Type, UInt16Type};
    use arrow_array::{
        BooleanArray, DictionaryArray, Int32Array, ListArray, RecordBatch, StringArray, UInt64Array,
    };
    use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
    use arrow_flight::FlightData;
    use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions};
    use arrow_schema::{Field, Schema};
    use futures::{StreamExt, TryStreamExt};

    use super::*;

    /// What arrow-flight's own decoder reads back from our messages.
    async fn decode(messages: Vec<EncodedData>) -> Vec<RecordBatch> {
        let messages = messages.into_iter().map(|m| Ok(FlightData::from(m)));
        let stream = futures::stream::iter(messages);
        FlightDataDecoder::new(stream)
            .try_filter_map(|d| async move {
                Ok(match d.payload {
                    DecodedPayload::RecordBatch(b) => Some(b),
                    _ => None,
                })
            })
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    #[tokio::test]
    async fn messages_written_in_place_decode_to_the_arrays_written() {
        let categories = Arc::new(StringArray::from(vec!["a", "b", "c"]));
        let plate = DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(vec![Some(2), None, Some(0)]),
            categories.clone(),
        )
        .unwrap();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(vec![7, 8, 9])),
            Arc::new(ListArray::from_iter_primitive::<UInt16Type, _, _>(vec![
                Some(vec![Some(1), Some(5)]),
                Some(vec![]),
                Some(vec![Some(3)]),
            ])),
            Arc::new(BooleanArray::from(vec![true, false, true])),
            Arc::new(StringArray::from(vec![Some("x"), None, Some("zz")])),
            Arc::new(plate),
        ];
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        assert!(batch
            .schema()
            .fields()
            .iter()
            .all(|f| is_supported(f.data_type())));

        let mut tracker = DictionaryTracker::new(false);
        let schema = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
            &batch.schema(),
            &mut tracker,
            &IpcWriteOptions::default(),
        );
        let mut dictionary = MessageBody::with_capacity(0);
        dictionary.array(categories.as_ref()).unwrap();
        let dictionary = dictionary.dictionary_batch(tracker.dict_id()[0], 3);
        let mut body = MessageBody::with_capacity(0);
        for column in batch.columns() {
            body.array(column.as_ref()).unwrap();
        }
        let messages = vec![schema, dictionary, body.record_batch(3)];
        assert_eq!(decode(messages).await, [batch]);
    }

    #[test]
    fn a_slice_that_cannot_be_written_as_is_is_refused_rather_than_misread() {
        let sliced = StringArray::from(vec!["a", "bb", "ccc"]).slice(1, 2);
        let mut body = MessageBody::with_capacity(0);
        assert!(body.array(&sliced).is_err());
        let sliced = BooleanArray::from(vec![true, false, true]).slice(1, 2);
        assert!(body.array(&sliced).is_err());
    }

    #[tokio::test]
    async fn a_sliced_primitive_array_writes_its_own_values() {
        let sliced = UInt64Array::from(vec![1, 2, 3, 4]).slice(1, 2);
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::UInt64, false)]));
        let mut tracker = DictionaryTracker::new(false);
        let header = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
            &schema,
            &mut tracker,
            &IpcWriteOptions::default(),
        );
        let mut body = MessageBody::with_capacity(0);
        body.array(&sliced).unwrap();
        let decoded = decode(vec![header, body.record_batch(2)]).await;
        let expected =
            RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![2, 3]))]).unwrap();
        assert_eq!(decoded, [expected]);
    }
}
