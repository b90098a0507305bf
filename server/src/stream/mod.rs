//! The training stream (docs/protocol.md): a JSON request planned into
//! partitions, each served from its ticket as one record batch a minibatch.

mod assemble;
mod encode;
mod request;
mod ticket;

pub use assemble::{minibatch_schema, FetchReader};
pub use encode::{encode_minibatches, schema_message};
pub use request::StreamRequest;
pub use ticket::StreamTicket;
