//! Minibatches as Flight data: one IPC record batch message each, never
//! split, carrying `{"partition": p, "batch": k}` as app_metadata.

use arrow_array::RecordBatch;
use arrow_flight::FlightData;
use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions};
use arrow_schema::Schema;

use crate::error::ServiceError;

/// The schema message that opens every stream (also an empty one). It
/// assigns the dictionary ids that `tracker` then encodes batches with.
pub fn schema_message(schema: &Schema, tracker: &mut DictionaryTracker) -> FlightData {
    let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
        schema,
        tracker,
        &IpcWriteOptions::default(),
    );
    encoded.into()
}

/// The messages of one minibatch (dictionaries first, if any).
pub fn encode_minibatch(
    batch: &RecordBatch,
    partition: u32,
    index: u64,
    tracker: &mut DictionaryTracker,
) -> Result<Vec<FlightData>, ServiceError> {
    let options = IpcWriteOptions::default();
    let (dictionaries, data) =
        IpcDataGenerator::default().encode(batch, tracker, &options, &mut Default::default())?;
    let metadata = serde_json::json!({ "partition": partition, "batch": index }).to_string();
    let mut messages: Vec<FlightData> = dictionaries.into_iter().map(Into::into).collect();
    messages.push(FlightData::from(data).with_app_metadata(metadata));
    Ok(messages)
}
