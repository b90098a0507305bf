//! The replicas serving the same data, as Flight endpoint locations
//! (docs/protocol.md, "Replicas"): this server's `--advertise` URI, its
//! `--peers` and the addresses `--peers-dns` answers, sorted, deduplicated
//! and listed by every endpoint of a training stream's FlightInfo, rotated
//! so that partition p is first sent to replica p mod n.

mod dns;
mod dns_query;
mod uri;

use std::collections::BTreeSet;

pub use uri::{HostPort, ReplicaUri, Scheme, UriError};

use dns::DnsPeers;

/// Most replicas an endpoint lists: beyond, the first of them sorted (a
/// FlightInfo grows by this many locations a partition).
pub const MAX_REPLICAS: usize = 64;

/// How this server and the other replicas are reached. Without an
/// `advertise` URI endpoints list no locations: clients read them on the
/// connection they planned with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaConfig {
    pub advertise: Option<ReplicaUri>,
    pub peers: Vec<ReplicaUri>,
    pub peers_dns: Option<HostPort>,
    /// The name server `peers_dns` is asked of; none: the system's resolver.
    pub dns_server: Option<std::net::SocketAddr>,
}

#[derive(Debug)]
pub(crate) struct Replicas {
    /// `advertise` and `peers`.
    configured: Vec<ReplicaUri>,
    dns: Option<DnsPeers>,
}

impl Replicas {
    pub(crate) fn new(config: &ReplicaConfig) -> Self {
        let Some(advertise) = &config.advertise else {
            return Self {
                configured: Vec::new(),
                dns: None,
            };
        };
        let dns = config
            .peers_dns
            .clone()
            .map(|name| DnsPeers::new(name, advertise.scheme(), config.dns_server));
        let configured = std::iter::once(advertise.clone())
            .chain(config.peers.iter().cloned())
            .collect();
        Self { configured, dns }
    }

    /// Every replica's URI now, sorted and deduplicated, at most
    /// [`MAX_REPLICAS`]; empty without `--advertise`.
    pub(crate) async fn uris(&self) -> Vec<String> {
        let mut replicas: BTreeSet<String> =
            self.configured.iter().map(ReplicaUri::to_string).collect();
        if let Some(dns) = &self.dns {
            replicas.extend(dns.replicas().await.iter().map(ReplicaUri::to_string));
        }
        if replicas.len() > MAX_REPLICAS {
            tracing::warn!(
                replicas = replicas.len(),
                "more than {MAX_REPLICAS} replicas: endpoints list the first {MAX_REPLICAS}"
            );
        }
        replicas.into_iter().take(MAX_REPLICAS).collect()
    }
}

/// The locations of partition `partition`'s endpoint: every replica, the
/// (`partition` mod n)-th first, then on in order, so that first tries
/// spread evenly and a failed replica's partitions spread over the next.
pub(crate) fn rotated(replicas: &[String], partition: usize) -> Vec<String> {
    if replicas.is_empty() {
        return Vec::new();
    }
    let first = partition % replicas.len();
    replicas[first..]
        .iter()
        .chain(&replicas[..first])
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> ReplicaUri {
        text.parse().unwrap()
    }

    #[test]
    fn partition_p_is_first_sent_to_replica_p_mod_n() {
        let replicas = ["a", "b", "c"].map(String::from);
        assert_eq!(rotated(&replicas, 0), ["a", "b", "c"]);
        assert_eq!(rotated(&replicas, 1), ["b", "c", "a"]);
        assert_eq!(rotated(&replicas, 2), ["c", "a", "b"]);
        assert_eq!(rotated(&replicas, 4), ["b", "c", "a"]);
        assert!(rotated(&[], 3).is_empty());
    }

    #[tokio::test]
    async fn without_advertise_there_are_no_locations() {
        let replicas = Replicas::new(&ReplicaConfig::default());
        assert!(replicas.uris().await.is_empty());
    }

    #[tokio::test]
    async fn the_replicas_are_advertise_and_peers_sorted_without_repeats() {
        let config = ReplicaConfig {
            advertise: Some(uri("grpc://127.0.0.3:1")),
            peers: [
                "grpc://127.0.0.4:1",
                "grpc://127.0.0.2:1",
                "grpc://127.0.0.3:1",
            ]
            .map(uri)
            .into(),
            ..ReplicaConfig::default()
        };
        let replicas = Replicas::new(&config);
        assert_eq!(
            replicas.uris().await,
            [
                "grpc://127.0.0.2:1",
                "grpc://127.0.0.3:1",
                "grpc://127.0.0.4:1"
            ]
        );
    }

    #[tokio::test]
    async fn beyond_the_bound_the_first_replicas_sorted_are_kept() {
        let peers = (0..100).map(|i| uri(&format!("grpc://10.0.0.{i}:1")));
        let config = ReplicaConfig {
            advertise: Some(uri("grpc://10.0.0.0:1")),
            peers: peers.collect(),
            ..ReplicaConfig::default()
        };
        let uris = Replicas::new(&config).uris().await;
        assert_eq!(uris.len(), MAX_REPLICAS);
        assert!(uris.is_sorted());
        assert_eq!(uris[0], "grpc://10.0.0.0:1");
    }

    #[tokio::test]
    async fn a_dns_name_adds_its_addresses_with_the_advertised_scheme() {
        let config = ReplicaConfig {
            advertise: Some(uri("grpc+tls://127.0.0.2:7")),
            peers_dns: Some("127.0.0.3:7".parse().unwrap()),
            ..ReplicaConfig::default()
        };
        let uris = Replicas::new(&config).uris().await;
        assert_eq!(uris, ["grpc+tls://127.0.0.2:7", "grpc+tls://127.0.0.3:7"]);
    }
}
