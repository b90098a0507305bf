//! Replicas found by DNS (`--peers-dns NAME:PORT`): the A/AAAA records of a
//! name, as a Kubernetes headless Service answers with its ready pods,
//! asked of the system's resolver (/etc/resolv.conf, /etc/hosts), or, with
//! `--dns-server`, the A records asked of that name server. Looked
//! up again when a FlightInfo is made, at most every [`ANSWER_TTL`], each
//! lookup waited for at most [`LOOKUP_BOUND`]: a slow or failed lookup
//! keeps the last good answer (and says so in the log) rather than holding
//! up a trainer's plan.

use std::time::{Duration, Instant};

use std::net::SocketAddr;

use tokio::sync::Mutex;

use super::dns_query::a_records;
use super::uri::{HostPort, ReplicaUri, Scheme};

/// How long an answer is used before the name is looked up again.
pub(crate) const ANSWER_TTL: Duration = Duration::from_secs(5);
/// Longest a lookup may hold up a FlightInfo.
pub(crate) const LOOKUP_BOUND: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(crate) struct DnsPeers {
    name: HostPort,
    scheme: Scheme,
    /// Asked instead of the system's resolver.
    server: Option<SocketAddr>,
    answer: Mutex<Answer>,
}

/// The last good answer, and when the name was last asked.
#[derive(Debug, Default)]
struct Answer {
    replicas: Vec<ReplicaUri>,
    asked: Option<Instant>,
}

impl DnsPeers {
    /// Lookups of `name`; each address answered becomes `scheme://ADDRESS:PORT`.
    pub(crate) fn new(name: HostPort, scheme: Scheme, server: Option<SocketAddr>) -> Self {
        Self {
            name,
            scheme,
            server,
            answer: Mutex::default(),
        }
    }

    /// The replicas the name stands for now: looked up if the last answer
    /// is older than [`ANSWER_TTL`], else the last answer.
    pub(crate) async fn replicas(&self) -> Vec<ReplicaUri> {
        let mut answer = self.answer.lock().await;
        let fresh = answer.asked.is_some_and(|at| at.elapsed() < ANSWER_TTL);
        if !fresh {
            // Asked now even if it fails: a DNS server that is down is asked
            // again after the TTL, not by every request meanwhile.
            answer.asked = Some(Instant::now());
            match self.look_up().await {
                Ok(replicas) => answer.replicas = replicas,
                Err(reason) => tracing::warn!(
                    name = %self.name.host,
                    kept = answer.replicas.len(),
                    "--peers-dns: {reason}; keeping the last good answer"
                ),
            }
        }
        answer.replicas.clone()
    }

    async fn look_up(&self) -> Result<Vec<ReplicaUri>, String> {
        let HostPort { host, port } = &self.name;
        let lookup = async {
            match self.server {
                Some(server) => a_records(server, host).await.map(|addresses| {
                    addresses
                        .into_iter()
                        .map(|ip| SocketAddr::from((ip, *port)))
                        .collect::<Vec<_>>()
                }),
                None => tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map(Iterator::collect)
                    .map_err(|e| e.to_string()),
            }
        };
        let addresses = match tokio::time::timeout(LOOKUP_BOUND, lookup).await {
            Err(_) => return Err(format!("no answer within {LOOKUP_BOUND:?}")),
            Ok(Err(error)) => return Err(error),
            Ok(Ok(addresses)) => addresses,
        };
        let replicas: Vec<_> = addresses
            .into_iter()
            .map(|address| ReplicaUri::of_address(self.scheme, address))
            .collect();
        if replicas.is_empty() {
            return Err("no A or AAAA records".into());
        }
        Ok(replicas)
    }
}
