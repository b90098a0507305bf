//! Command-line flags; every flag of `serve` can also come from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use cellflight_flight::{HostPort, ReplicaUri};
use clap::{Args, Parser};

use cellflight_store::DataLocation;

use crate::byte_size::ByteSize;

#[derive(Debug, Parser)]
#[command(
    name = "cellflight",
    version,
    about = "Single-cell expression data served to trainers over Arrow Flight"
)]
pub struct Cli {
    /// Log filter, e.g. `info` or `cellflight=debug`.
    #[arg(long = "log", env = "CELLFLIGHT_LOG", global = true)]
    pub log_filter: Option<String>,
    #[command(subcommand)]
    pub subcommand: Subcommand,
}

// Parsed once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Serve datasets over Arrow Flight (with no --data: a generated demo dataset).
    Serve(ServeArgs),
    /// Turn an AnnData .h5ad file into a dataset.
    Ingest(IngestArgs),
    /// Write a synthetic Tahoe-like dataset (and optionally the same data as .h5ad).
    Generate(GenerateArgs),
    /// Describe a dataset; with --verify, check it end to end.
    Inspect(InspectArgs),
    /// Read a password from stdin (one line) and print its argon2id hash, the `password_hash` of a users file.
    HashPassword,
    /// Remove the versions of a dataset in an object store that stopped being current more than --keep-for ago (docs/format.md "Object storage").
    Prune(PruneArgs),
    /// Define collections: several datasets of a data directory served as one.
    #[command(subcommand)]
    Collection(CollectionCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum CollectionCommand {
    /// Write DATA/NAME.collection.json, once its members are checked as a server would (docs/format.md).
    Create(CollectionCreateArgs),
}

#[derive(Debug, Args)]
pub struct CollectionCreateArgs {
    /// The data directory holding the members (a server's --data).
    #[arg(long)]
    pub data: PathBuf,
    /// The collection's name ([a-z][a-z0-9_]*), unused by any dataset.
    pub name: String,
    /// A member dataset; repeat in the order the collection's cells take (at most 64).
    #[arg(long = "member", value_name = "DATASET", required = true)]
    pub members: Vec<String>,
    /// The genes column whose values say which genes of two members are the same.
    #[arg(long, default_value = "gene_id")]
    pub gene_key: String,
    /// outer: every gene of any member; inner: the genes all members have.
    #[arg(long, default_value = "outer", value_parser = ["outer", "inner"])]
    pub join: String,
    /// Replace an existing definition, atomically.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A dataset directory, a directory of them, or an object store prefix datasets are published under (s3://bucket/prefix, gs://…, az://…; credentials and endpoint from the store's standard environment variables, e.g. AWS_ACCESS_KEY_ID, AWS_ENDPOINT). Default: the demo dataset, generated on first run.
    #[arg(long, env = "CELLFLIGHT_DATA", value_parser = parse_location)]
    pub data: Option<DataLocation>,
    /// Where token tables (NAME.vocabulary.parquet) for "format": "tokens" are. Default: --data when it is a directory of datasets; none when it is one dataset.
    #[arg(long, env = "CELLFLIGHT_VOCABULARIES")]
    pub vocabularies: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "CELLFLIGHT_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Also listen on this Unix socket, for trainers on the same host (pyarrow: grpc+unix://PATH).
    #[arg(long, env = "CELLFLIGHT_UNIX", value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Where the demo dataset is kept, and what is copied from an object store (tables/, and blocks/ of matrices). Default: $XDG_CACHE_HOME/cellflight or ~/.cache/cellflight.
    #[arg(long, env = "CELLFLIGHT_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Most bytes of matrix blocks read from an object store kept in --cache-dir, least recently used evicted first.
    #[arg(long, env = "CELLFLIGHT_CACHE_SIZE", default_value = "10GiB")]
    pub cache_size: ByteSize,
    /// The dataset reached without a name (and by unqualified table names in SQL). Default: the only dataset, when --data holds exactly one at startup.
    #[arg(long, env = "CELLFLIGHT_DEFAULT_DATASET")]
    pub default_dataset: Option<String>,
    /// Memory for whole metadata columns held to attach obs columns to minibatches (about 4 bytes a cell for a categorical), least recently used evicted first.
    #[arg(long, env = "CELLFLIGHT_COLUMN_CACHE", default_value = "2GiB")]
    pub column_cache: ByteSize,
    /// Most DoGet streams (training partitions and query results) open at once; one more is refused with ResourceExhausted.
    #[arg(
        long,
        env = "CELLFLIGHT_MAX_STREAMS",
        default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_streams: u32,
    /// Most streams one client may have open at once (a signed-in user is one client from every host; without authentication clients are told apart by IP address, and the Unix socket's count as one).
    #[arg(
        long,
        env = "CELLFLIGHT_MAX_STREAMS_PER_CLIENT",
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_streams_per_client: u32,
    /// Memory all open training streams may hold at their worst, together (each reserves its share when it opens; one that cannot is refused with ResourceExhausted). See docs/operations.md for the server's whole memory.
    #[arg(long, env = "CELLFLIGHT_MAX_MEMORY", default_value = "8GiB")]
    pub max_memory: ByteSize,
    /// How long a stream whose client reads nothing keeps its slot; then it ends with Aborted and the clients resume it from the next batch. Generous, as validation and checkpoints pause training.
    #[arg(long, env = "CELLFLIGHT_STREAM_IDLE_TIMEOUT", default_value = "30min")]
    pub stream_idle_timeout: humantime::Duration,
    /// Most calls open at once on one connection (HTTP/2 streams).
    #[arg(
        long,
        env = "CELLFLIGHT_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 128,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_streams_per_connection: u32,
    /// How often the server pings each connection (HTTP/2 keepalive), to find peers that vanished without closing it.
    #[arg(long, env = "CELLFLIGHT_KEEPALIVE_INTERVAL", default_value = "60s")]
    pub keepalive_interval: humantime::Duration,
    /// How long a ping may go unanswered before the connection is closed and its streams freed.
    #[arg(long, env = "CELLFLIGHT_KEEPALIVE_TIMEOUT", default_value = "20s")]
    pub keepalive_timeout: humantime::Duration,
    /// Serve Prometheus metrics over HTTP at this address (GET /metrics), e.g. 127.0.0.1:9100. Default: none.
    #[arg(long, env = "CELLFLIGHT_METRICS", value_name = "ADDRESS")]
    pub metrics: Option<SocketAddr>,
    /// After SIGTERM or SIGINT, how long open streams may go on before the server closes them and exits, e.g. 30s.
    #[arg(long, env = "CELLFLIGHT_SHUTDOWN_GRACE", default_value = "30s")]
    pub shutdown_grace: humantime::Duration,
    /// Largest message a client may send (a request, a ticket), and largest DoPut of bound query parameters, all its messages together; more is refused with ResourceExhausted.
    #[arg(long, env = "CELLFLIGHT_MAX_REQUEST_SIZE", default_value = "16MiB")]
    pub max_request_size: ByteSize,
    #[command(flatten)]
    pub security: SecurityArgs,
    #[command(flatten)]
    pub sql: SqlArgs,
    #[command(flatten)]
    pub replicas: ReplicaArgs,
}

/// Who may connect and call (docs/operations.md). With none of these, anyone
/// who reaches the port reads every dataset, over plain TCP. Its Debug form
/// leaves the token out.
#[derive(Default, Args)]
pub struct SecurityArgs {
    /// Users and their bearer tokens, password hashes and dataset grants (JSON; chmod 600). With it, every call needs a token.
    #[arg(long, env = "CELLFLIGHT_AUTH_FILE", value_name = "PATH")]
    pub auth_file: Option<PathBuf>,
    /// One bearer token reading every dataset; better set in the environment than on a command line others can list.
    #[arg(
        long,
        env = "CELLFLIGHT_AUTH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub auth_token: Option<String>,
    /// Serve TLS (clients connect to grpc+tls://) with this PEM certificate chain.
    #[arg(
        long,
        env = "CELLFLIGHT_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "CELLFLIGHT_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this PEM CA (mutual TLS).
    #[arg(
        long,
        env = "CELLFLIGHT_TLS_CLIENT_CA",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,
    /// How long a client may take over its TLS handshake before the connection is closed.
    #[arg(long, env = "CELLFLIGHT_TLS_HANDSHAKE_TIMEOUT", default_value = "10s")]
    pub tls_handshake_timeout: humantime::Duration,
}

impl std::fmt::Debug for SecurityArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityArgs")
            .field("auth_file", &self.auth_file)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "<hidden>"))
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_client_ca", &self.tls_client_ca)
            .field("tls_handshake_timeout", &self.tls_handshake_timeout)
            .finish()
    }
}

/// Bounds on SQL (ad hoc queries, Flight SQL and cohorts).
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// Memory shared by all running queries; a query that needs more spills (with --spill-dir) or fails.
    #[arg(
        long = "sql-memory",
        env = "CELLFLIGHT_SQL_MEMORY",
        default_value = "2GiB"
    )]
    pub memory: ByteSize,
    /// Most of --sql-memory one query (or cohort selection) may hold, so no one query takes it all.
    #[arg(
        long = "sql-query-memory",
        env = "CELLFLIGHT_SQL_QUERY_MEMORY",
        default_value = "1GiB"
    )]
    pub query_memory: ByteSize,
    /// Longest a query may run, planning included, e.g. 30s or 5m.
    #[arg(
        long = "sql-timeout",
        env = "CELLFLIGHT_SQL_TIMEOUT",
        default_value = "60s"
    )]
    pub timeout: humantime::Duration,
    /// Most rows an ad hoc query may return (cohorts are not capped).
    #[arg(
        long = "sql-max-rows",
        env = "CELLFLIGHT_SQL_MAX_ROWS",
        default_value_t = 10_000_000
    )]
    pub max_rows: usize,
    /// Queries planned at once, each on a thread of its own (planning never yields, so it is kept off the threads that serve streams); one more is refused with ResourceExhausted.
    #[arg(
        long = "sql-planning-threads",
        env = "CELLFLIGHT_SQL_PLANNING_THREADS",
        default_value_t = 4,
        value_parser = clap::value_parser!(u32).range(1..=256)
    )]
    pub planning_threads: u32,
    /// Where large sorts and joins spill. Default: no spilling.
    #[arg(long, env = "CELLFLIGHT_SPILL_DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Memory for cached cohorts (4 bytes a cell; 12 with sampling weights), least recently used evicted first.
    #[arg(long, env = "CELLFLIGHT_COHORT_CACHE", default_value = "1GiB")]
    pub cohort_cache: ByteSize,
}

/// Replicas serving the same data (docs/operations.md): every endpoint of a
/// training stream lists them as locations, and clients fail over along them.
#[derive(Debug, Args)]
pub struct ReplicaArgs {
    /// How clients reach this replica, e.g. grpc://10.1.2.3:50051 or grpc+tls://host:50051. Without it, endpoints list no locations.
    #[arg(long, env = "CELLFLIGHT_ADVERTISE", value_name = "URI")]
    pub advertise: Option<ReplicaUri>,
    /// The other replicas' URIs, comma-separated (this one may be among them).
    #[arg(
        long,
        env = "CELLFLIGHT_PEERS",
        value_name = "URI,URI,...",
        value_delimiter = ',',
        requires = "advertise"
    )]
    pub peers: Vec<ReplicaUri>,
    /// A DNS name whose A/AAAA records are the replicas (a Kubernetes headless Service), and their port; asked of the system's resolver again every few seconds, with --advertise's scheme.
    #[arg(
        long,
        env = "CELLFLIGHT_PEERS_DNS",
        value_name = "NAME:PORT",
        requires = "advertise"
    )]
    pub peers_dns: Option<HostPort>,
    /// The name server --peers-dns asks (its A records), instead of the system's resolver, e.g. 10.96.0.10:53.
    #[arg(
        long,
        env = "CELLFLIGHT_DNS_SERVER",
        value_name = "IP:PORT",
        requires = "peers_dns"
    )]
    pub dns_server: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The AnnData file to read.
    pub input: PathBuf,
    /// The dataset directory to write, or an object store URL to publish it to (s3://bucket/prefix/NAME); its last part is the dataset's name ([a-z][a-z0-9_]*).
    pub output: String,
    /// Take the matrix from layers/NAME instead of X.
    #[arg(long, value_name = "NAME", conflicts_with = "raw")]
    pub layer: Option<String>,
    /// Take the matrix from raw/X (with raw/var) instead of X.
    #[arg(long)]
    pub raw: bool,
    /// Replace an existing dataset, atomically.
    #[arg(long)]
    pub force: bool,
    /// Memory budget, e.g. 512MiB or 4GiB.
    #[arg(long, default_value = "4GiB")]
    pub memory: ByteSize,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The dataset directory to write, or an object store URL to publish it to (s3://bucket/prefix/NAME); its last part is the dataset's name.
    pub output: String,
    /// Number of cells.
    #[arg(long)]
    pub cells: u64,
    /// Number of genes.
    #[arg(long, default_value_t = 62_710)]
    pub genes: u64,
    /// Random seed: the same seed gives the same dataset.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the same data as an uncompressed .h5ad file, as anndata writes it.
    #[arg(long, value_name = "FILE", conflicts_with = "obs_only")]
    pub h5ad: Option<PathBuf>,
    /// Write only the cell and gene metadata, no matrix (for SQL benchmarks).
    #[arg(long)]
    pub obs_only: bool,
    /// Replace an existing dataset, atomically.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The dataset's URL: s3://bucket/prefix/NAME.
    pub dataset: String,
    /// How long a replaced version stays readable, for streams still reading it (and replicas not yet refreshed).
    #[arg(long, default_value = "7d")]
    pub keep_for: humantime::Duration,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The dataset directory, or a collection's file (DATA/NAME.collection.json).
    pub dir: PathBuf,
    /// Check everything (files against the manifest, the matrix cell by cell, statistics; each member of a collection); exit non-zero on any fault.
    #[arg(long)]
    pub verify: bool,
}

/// `--data`, parsed (and its object store set up) once, at startup.
fn parse_location(text: &str) -> Result<DataLocation, String> {
    DataLocation::parse(text).map_err(|e| e.to_string())
}
