//! Who a request is for. The front door finds out (tokens, grants); the
//! engine only reads what the caller's access allows.

use std::sync::Arc;

use cellflight_sql::Access;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user signed in; none when authentication is off.
    pub user: Option<Arc<str>>,
    pub access: Access,
}

impl Caller {
    /// Whoever calls a server without authentication: every dataset.
    pub fn anyone() -> Self {
        Self {
            user: None,
            access: Access::All,
        }
    }
}
