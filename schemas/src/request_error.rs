/// A request or ticket that cannot be served as written; the message says
/// which key and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, an unknown key, or a value of the wrong type; the
    /// message names what was being read (`request` or `ticket`) and the
    /// key where reading failed.
    #[error("{0}")]
    Json(String),
    /// Keys that do not go together, or a value out of its range.
    #[error("{0}")]
    Inconsistent(String),
}

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
