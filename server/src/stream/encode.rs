//! A partition's stream as Flight data: the schema, the dictionaries of its
//! obs columns, then one record batch message a minibatch, never split,
//! carrying `{"partition": p, "batch": k}` as app_metadata.

use arrow_flight::FlightData;
use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions};
use arrow_schema::Schema;

use super::columns::CachedColumn;
use super::ipc::{dictionary_values, MessageBody};
use crate::error::ServiceError;

/// The messages that open a stream (also an empty one): the schema, then
/// the dictionary of each categorical obs column, sent once, as every
/// minibatch codes against the same full category list.
pub fn stream_preamble(
    schema: &Schema,
    obs: &[std::sync::Arc<CachedColumn>],
) -> Result<Vec<FlightData>, ServiceError> {
    let mut tracker = DictionaryTracker::new(false);
    let schema = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
        schema,
        &mut tracker,
        &IpcWriteOptions::default(),
    );
    let mut messages = vec![FlightData::from(schema)];
    // Obs columns are the only dictionary columns, so the ids the schema
    // assigned, in field order, are theirs.
    let dictionaries = obs.iter().filter_map(|c| dictionary_values(c.array()));
    for (&id, values) in tracker.dict_id().iter().zip(dictionaries) {
        let mut body = MessageBody::with_capacity(values.get_array_memory_size());
        body.array(values.as_ref())?;
        messages.push(body.dictionary_batch(id, values.len()));
    }
    Ok(messages)
}

/// The message of minibatch `index` of `partition`, of `rows` cells.
pub fn minibatch_message(body: MessageBody, rows: usize, partition: u32, index: u64) -> FlightData {
    let position = serde_json::json!({ "partition": partition, "batch": index });
    body.record_batch(rows)
        .with_app_metadata(position.to_string())
}
