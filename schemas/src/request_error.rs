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
