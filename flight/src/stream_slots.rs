//! How many DoGet streams (training partitions and query results) may be
//! open at once, in all and per client. A stream holds a slot from DoGet
//! until it ends or its client goes away; one past either limit is refused
//! with ResourceExhausted naming the limit, never queued.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cellflight_engine::Caller;

use crate::error::ServiceError;

/// How many DoGet streams may be open at once, and for how long unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Streams open at once on the server.
    pub max_streams: usize,
    /// Streams open at once for one client.
    pub max_streams_per_client: usize,
    /// How long a stream whose client reads nothing keeps its slot.
    pub idle_timeout: Duration,
}

/// Whom a stream serves: a signed-in user, whatever hosts their trainers
/// run on; without authentication, TCP clients told apart by address, and
/// the clients of the Unix socket, all on this host, as one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    User(Arc<str>),
    Address(IpAddr),
    UnixSocket,
}

impl Client {
    /// The client that sent `request` as `caller`.
    pub(crate) fn of<T>(request: &tonic::Request<T>, caller: &Caller) -> Self {
        match &caller.user {
            Some(user) => Self::User(Arc::clone(user)),
            None => Self::peer_of(request),
        }
    }

    /// Where `request` came from, whoever sent it.
    pub(crate) fn peer_of<T>(request: &tonic::Request<T>) -> Self {
        match request.remote_addr() {
            Some(address) => Self::Address(address.ip()),
            None => Self::UnixSocket,
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(user) => write!(f, "user {user}"),
            Self::Address(ip) => write!(f, "{ip}"),
            Self::UnixSocket => f.write_str("unix-socket"),
        }
    }
}

/// The open streams, counted against [`StreamLimits`].
#[derive(Debug)]
pub(crate) struct StreamSlots {
    limits: StreamLimits,
    open: Mutex<OpenStreams>,
}

#[derive(Debug, Default)]
struct OpenStreams {
    total: usize,
    by_client: HashMap<Client, usize>,
}

/// One open stream's place; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    slots: Arc<StreamSlots>,
    client: Client,
}

impl StreamSlots {
    pub(crate) fn new(limits: StreamLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: Mutex::default(),
        })
    }

    /// A place for one more stream of `client`, if both limits allow it.
    pub(crate) fn acquire(self: &Arc<Self>, client: Client) -> Result<StreamSlot, ServiceError> {
        let mut open = self.lock();
        if open.total >= self.limits.max_streams {
            return Err(ServiceError::ResourceExhausted(format!(
                "the server's limit of {} open streams (--max-streams) is reached; retry when one ends",
                self.limits.max_streams
            )));
        }
        let of_client = open.by_client.entry(client.clone()).or_default();
        if *of_client >= self.limits.max_streams_per_client {
            return Err(ServiceError::ResourceExhausted(format!(
                "{client} has {} streams open, the limit per client (--max-streams-per-client); retry when one ends",
                self.limits.max_streams_per_client
            )));
        }
        *of_client += 1;
        open.total += 1;
        Ok(StreamSlot {
            slots: Arc::clone(self),
            client,
        })
    }

    pub(crate) fn limits(&self) -> &StreamLimits {
        &self.limits
    }

    /// Streams open now.
    pub(crate) fn open(&self) -> usize {
        self.lock().total
    }

    /// The counts stay consistent under a panic elsewhere: each update is
    /// a couple of additions, done before anything can panic.
    fn lock(&self) -> MutexGuard<'_, OpenStreams> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        open.total -= 1;
        if let Some(count) = open.by_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max_streams: usize, max_streams_per_client: usize) -> Arc<StreamSlots> {
        StreamSlots::new(StreamLimits {
            max_streams,
            max_streams_per_client,
            idle_timeout: Duration::from_secs(1800),
        })
    }

    fn client(last: u8) -> Client {
        Client::Address(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn a_client_past_its_limit_is_refused_while_others_are_served() {
        let slots = slots(10, 2);
        let _held = [
            slots.acquire(client(1)).unwrap(),
            slots.acquire(client(1)).unwrap(),
        ];
        let refused = slots.acquire(client(1)).err().unwrap();
        assert!(matches!(refused, ServiceError::ResourceExhausted(_)));
        assert!(refused.to_string().contains("--max-streams-per-client"));
        assert!(refused.to_string().contains("10.0.0.1"));
        assert!(slots.acquire(client(2)).is_ok());
    }

    #[test]
    fn a_signed_in_user_is_one_client_from_every_host() {
        let slots = slots(10, 1);
        let request = |last: u8| {
            let mut request = tonic::Request::new(());
            let address = std::net::SocketAddr::from(([10, 0, 0, last], 4000));
            request
                .extensions_mut()
                .insert(tonic::transport::server::TcpConnectInfo {
                    local_addr: None,
                    remote_addr: Some(address),
                });
            request
        };
        let alice = Caller {
            user: Some(Arc::from("alice")),
            access: cellflight_sql::Access::All,
        };
        let _held = slots.acquire(Client::of(&request(1), &alice)).unwrap();
        let refused = slots
            .acquire(Client::of(&request(2), &alice))
            .err()
            .unwrap();
        assert!(refused
            .to_string()
            .contains("user alice has 1 streams open"));
        let anonymous = Caller::anyone();
        assert!(slots.acquire(Client::of(&request(2), &anonymous)).is_ok());
    }

    #[test]
    fn the_server_limit_counts_every_client() {
        let slots = slots(2, 2);
        let _held = [
            slots.acquire(client(1)).unwrap(),
            slots.acquire(Client::UnixSocket).unwrap(),
        ];
        let refused = slots.acquire(client(2)).err().unwrap();
        assert!(refused.to_string().contains("--max-streams)"));
        assert_eq!(slots.open(), 2);
    }

    #[test]
    fn a_dropped_slot_frees_its_place() {
        let slots = slots(1, 1);
        let slot = slots.acquire(client(1)).unwrap();
        assert!(slots.acquire(client(1)).is_err());
        drop(slot);
        assert_eq!(slots.open(), 0);
        assert!(slots.acquire(client(1)).is_ok());
    }
}
