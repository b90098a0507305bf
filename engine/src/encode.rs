//! A partition's stream as Arrow IPC messages: the schema, the dictionaries
//! of its obs columns, then one record batch message a minibatch, never
//! split. The front door sends them as they are (each minibatch with its
//! position as app_metadata).

use std::sync::Arc;

use arrow_ipc::writer::{DictionaryTracker, EncodedData, IpcDataGenerator, IpcWriteOptions};
use arrow_schema::Schema;

use crate::columns::CachedColumn;
use crate::error::EngineError;
use crate::ipc::dictionary_values;
use crate::ipc::MessageBody;

/// The messages that open a stream (also an empty one): the schema, then
/// the dictionary of each categorical obs column, sent once, as every
/// minibatch codes against the same full category list.
pub(crate) fn stream_preamble(
    schema: &Schema,
    obs: &[Arc<CachedColumn>],
) -> Result<Vec<EncodedData>, EngineError> {
    let mut tracker = DictionaryTracker::new(false);
    let schema = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
        schema,
        &mut tracker,
        &IpcWriteOptions::default(),
    );
    let mut messages = vec![schema];
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
