/// A request or ticket that cannot be served as written; the message says
/// which key and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, an unknown key, or a value of the wrong type; the first
    /// field names what was being read (`request` or `ticket`).
    #[error("invalid {0}: {1}")]
    Json(&'static str, serde_json::Error),
    /// Keys that do not go together, or a value out of its range.
    #[error("{0}")]
    Inconsistent(String),
}
