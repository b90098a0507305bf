//! The contract's JSON, both ways: decoding names the key where a
//! client's JSON went wrong; encoding the contract's own types cannot fail.

use serde::Serialize;

use crate::request_error::RequestError;

/// Longest piece of a client's input (a key, a value) an error message
/// repeats.
const MAX_ECHO_BYTES: usize = 200;

/// `bytes` as the JSON of a `what` (`request`, `ticket`); an error names the
/// key where reading failed (`batch_size`, `transform.log1p`), repeating
/// at most a few hundred bytes of what the client sent.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, RequestError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let failed = |key: String, error: serde_json::Error| {
        let key = if key == "." {
            String::new()
        } else {
            format!("{}: ", shorten(&key, MAX_ECHO_BYTES))
        };
        // serde's message holds at most one echoed key or value, and the
        // list of keys expected.
        let error = shorten(&error.to_string(), 4 * MAX_ECHO_BYTES);
        RequestError::Json(format!("invalid {what}: {key}{error}"))
    };
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| failed(e.path().to_string(), e.into_inner()))?;
    deserializer.end().map_err(|e| failed(".".into(), e))?;
    Ok(value)
}

fn shorten(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let cut = (0..=max_bytes)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

/// `value` as compact JSON.
pub(crate) fn encode(value: &impl Serialize) -> String {
    #[allow(
        clippy::expect_used,
        reason = "the contract's types are structs of plain fields with string keys"
    )]
    serde_json::to_string(value).expect("the contract's types always serialise")
}

/// `value` as indented JSON, for files people read.
pub(crate) fn encode_pretty(value: &impl Serialize) -> String {
    #[allow(
        clippy::expect_used,
        reason = "the contract's types are structs of plain fields with string keys"
    )]
    serde_json::to_string_pretty(value).expect("the contract's types always serialise")
}
