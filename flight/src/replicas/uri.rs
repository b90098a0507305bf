//! How clients reach a replica (`--advertise`, `--peers`) and the DNS name
//! whose addresses are the replicas (`--peers-dns`), parsed and checked
//! once, at startup.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Longest host name (DNS allows 253 characters) or bracketed IPv6 literal.
const MAX_HOST_CHARS: usize = 253;

/// The Flight URI schemes a replica may be reached by (docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheme {
    Grpc,
    GrpcTcp,
    GrpcTls,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::GrpcTcp => "grpc+tcp",
            Self::GrpcTls => "grpc+tls",
        }
    }
}

/// `SCHEME://HOST:PORT`: one replica as a Flight location.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaUri {
    scheme: Scheme,
    host: String,
    port: u16,
}

/// Why a replica URI or DNS name was refused; the message names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("{0:?}: expected SCHEME://HOST:PORT with scheme grpc, grpc+tcp or grpc+tls")]
    NotAUri(String),
    #[error("{input:?}: scheme {scheme:?} is not grpc, grpc+tcp or grpc+tls")]
    Scheme { input: String, scheme: String },
    #[error("{0:?}: expected HOST:PORT, with a port from 1 to 65535")]
    HostPort(String),
    #[error("{0:?}: not a host name or IP address (at most 253 characters; IPv6 in brackets)")]
    Host(String),
}

impl ReplicaUri {
    /// The replica at `address`, reached by `scheme`.
    pub fn of_address(scheme: Scheme, address: SocketAddr) -> Self {
        let host = match address.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        Self {
            scheme,
            host,
            port: address.port(),
        }
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
}

impl FromStr for ReplicaUri {
    type Err = UriError;

    fn from_str(input: &str) -> Result<Self, UriError> {
        let (scheme, authority) = input
            .split_once("://")
            .ok_or_else(|| UriError::NotAUri(input.into()))?;
        let scheme = match scheme {
            "grpc" => Scheme::Grpc,
            "grpc+tcp" => Scheme::GrpcTcp,
            "grpc+tls" => Scheme::GrpcTls,
            other => {
                return Err(UriError::Scheme {
                    input: input.into(),
                    scheme: other.into(),
                })
            }
        };
        // The error names the whole URI, as given, not its authority alone.
        let HostPort { host, port } = authority.parse().map_err(|error| match error {
            UriError::Host(_) => UriError::Host(input.into()),
            _ => UriError::HostPort(input.into()),
        })?;
        Ok(Self { scheme, host, port })
    }
}

impl fmt::Display for ReplicaUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.name(), self.host, self.port)
    }
}

/// `HOST:PORT`: a DNS name whose A/AAAA records are the replicas, all
/// listening on `port` (`--peers-dns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl FromStr for HostPort {
    type Err = UriError;

    fn from_str(input: &str) -> Result<Self, UriError> {
        let bad_host_port = || UriError::HostPort(input.into());
        let (host, port) = input.rsplit_once(':').ok_or_else(bad_host_port)?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&port| port != 0)
            .ok_or_else(bad_host_port)?;
        if !is_host(host) {
            return Err(UriError::Host(input.into()));
        }
        Ok(Self {
            host: host.into(),
            port,
        })
    }
}

/// A DNS name (letters, digits, `-`, `.`, `_`), an IPv4 address, or an
/// IPv6 address in brackets.
fn is_host(host: &str) -> bool {
    if host.is_empty() || host.len() > MAX_HOST_CHARS {
        return false;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    host.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flight_scheme_is_a_replica_uri_shown_as_given() {
        for uri in [
            "grpc://10.1.2.3:50051",
            "grpc+tcp://replica-0.cellflight.svc:50051",
            "grpc+tls://[::1]:443",
        ] {
            assert_eq!(uri.parse::<ReplicaUri>().unwrap().to_string(), uri);
        }
    }

    #[test]
    fn a_bad_uri_is_refused_with_a_message_naming_it() {
        let cases = [
            ("10.1.2.3:50051", "expected SCHEME://HOST:PORT"),
            ("http://10.1.2.3:50051", "scheme \"http\" is not grpc"),
            ("grpc://10.1.2.3", "expected HOST:PORT"),
            ("grpc://10.1.2.3:0", "a port from 1 to 65535"),
            ("grpc://10.1.2.3:70000", "a port from 1 to 65535"),
            ("grpc://:50051", "not a host name"),
            ("grpc://host/path:50051", "not a host name"),
            ("grpc://[not-ipv6]:50051", "not a host name"),
        ];
        for (input, reason) in cases {
            let message = input.parse::<ReplicaUri>().unwrap_err().to_string();
            assert!(message.contains(&format!("{input:?}")), "{message}");
            assert!(message.contains(reason), "{input}: {message}");
        }
    }

    #[test]
    fn an_address_becomes_a_uri_with_ipv6_in_brackets() {
        let v4 = ReplicaUri::of_address(Scheme::Grpc, "127.0.0.2:7".parse().unwrap());
        let v6 = ReplicaUri::of_address(Scheme::GrpcTls, "[::1]:7".parse().unwrap());
        assert_eq!(v4.to_string(), "grpc://127.0.0.2:7");
        assert_eq!(v6.to_string(), "grpc+tls://[::1]:7");
    }

    #[test]
    fn a_dns_name_needs_a_port() {
        let name: HostPort = "cellflight.default.svc.cluster.local:50051"
            .parse()
            .unwrap();
        assert_eq!(name.port, 50051);
        assert!("cellflight".parse::<HostPort>().is_err());
        assert!("cellflight:http".parse::<HostPort>().is_err());
    }
}
