//! A server for a team: bearer tokens on every call, per-dataset grants,
//! and TLS (mutual, with a client CA), with certificates made at test time.

use crate::common;

use std::path::Path;

use cellflight_client::{Client, ClientError, ConnectOptions};
use cellflight_flight::{ServiceConfig, TlsFiles};
use cellflight_schemas::StreamRequest;
use common::{dataset, TestServer};
use futures::TryStreamExt;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const ALICE: &str = "alice-token-0123456789abcdef";
const TRAINER: &str = "trainer-token-0123456789abcdef";

/// A server of datasets alpha and beta with authentication on: alice may
/// read alpha only, trainer both.
async fn team_server(root: &Path) -> TestServer {
    dataset(root, "alpha", 200);
    dataset(root, "beta", 100);
    let users = root.join("users.json");
    let json = format!(
        r#"{{"users": {{
            "alice": {{"token": "{ALICE}", "datasets": ["alpha"]}},
            "trainer": {{"token": "{TRAINER}"}}
        }}}}"#
    );
    std::fs::write(&users, json).unwrap();
    std::fs::set_permissions(&users, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // The datasets sit beside the users file; a non-dataset file is skipped.
    let mut config = ServiceConfig::new(root);
    config.auth.users_file = Some(users);
    TestServer::start_with(&config).await
}

async fn connect(server: &TestServer, token: Option<&str>) -> Client {
    let options = ConnectOptions {
        token: token.map(str::to_string),
        ..ConnectOptions::default()
    };
    Client::connect_with(&server.address, &options)
        .await
        .unwrap()
}

fn request(json: &str) -> StreamRequest {
    StreamRequest::from_json(json.as_bytes()).unwrap()
}

fn refusal<T>(result: Result<T, ClientError>) -> tonic::Status {
    match result {
        Err(ClientError::Status(status)) => status,
        Err(other) => panic!("expected a status, got {other:?}"),
        Ok(_) => panic!("expected a refusal, and the call succeeded"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_without_a_known_token_are_unauthenticated() {
    let root = tempfile::tempdir().unwrap();
    let server = team_server(root.path()).await;
    let alpha = request(r#"{"dataset": "alpha"}"#);
    for token in [None, Some("not-a-token-of-this-server")] {
        let status = refusal(connect(&server, token).await.plan(&alpha).await);
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}: {status}");
    }
    let plan = connect(&server, Some(TRAINER)).await.plan(&alpha).await;
    assert_eq!(plan.unwrap().cohort_size, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_probes_need_no_token() {
    let root = tempfile::tempdir().unwrap();
    let server = team_server(root.path()).await;
    let check = HealthCheckRequest {
        service: String::new(),
    };
    let answer = HealthClient::new(server.channel().await)
        .check(check)
        .await
        .unwrap();
    assert_eq!(answer.into_inner().status, ServingStatus::Serving as i32);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_holds_for_requests_tickets_and_sql_reaching_another_dataset() {
    let root = tempfile::tempdir().unwrap();
    let server = team_server(root.path()).await;
    let mut alice = connect(&server, Some(ALICE)).await;

    let plan = alice
        .plan(&request(r#"{"dataset": "alpha"}"#))
        .await
        .unwrap();
    let cells: usize = alice
        .stream(&plan.tickets[0], plan.batches_per_partition)
        .await
        .unwrap()
        .map_ok(|minibatch| minibatch.data.num_rows())
        .try_fold(0, |sum, rows| async move { Ok(sum + rows) })
        .await
        .unwrap();
    assert_eq!(cells as u64, plan.total_records);

    let denied = [
        r#"{"dataset": "beta"}"#,
        r#"{"dataset": "alpha", "query": "cell_id IN (SELECT cell_id FROM beta.cells)"}"#,
        r#"{"dataset": "alpha", "query": "SELECT a.cell_id FROM alpha.cells a JOIN beta.cells b USING (cell_id)"}"#,
    ];
    for json in denied {
        let status = refusal(alice.plan(&request(json)).await);
        assert_eq!(status.code(), Code::PermissionDenied, "{json}: {status}");
        assert!(
            status.message().contains("dataset beta"),
            "{json}: {status}"
        );
    }

    // trainer's ticket for beta does not open beta to alice.
    let mut trainer = connect(&server, Some(TRAINER)).await;
    let beta = trainer
        .plan(&request(r#"{"dataset": "beta"}"#))
        .await
        .unwrap();
    let status = refusal(
        alice
            .stream(&beta.tickets[0], beta.batches_per_partition)
            .await,
    );
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
    server.stop().await;
}

/// A connection that fails, or whose first call does (TLS handshakes may
/// complete lazily).
async fn assert_refused(connected: Result<Client, ClientError>) {
    match connected {
        Ok(mut client) => assert!(client.plan(&request("{}")).await.is_err()),
        Err(ClientError::Connect { .. }) => {}
        Err(other) => panic!("expected a refused connection, got {other:?}"),
    }
}

/// A CA, and certificates it signs for the server (localhost) and a client.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.pem", ca_cert.pem());
        for (name, purpose) in [
            ("server", ExtendedKeyUsagePurpose::ServerAuth),
            ("client", ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            params.extended_key_usages = vec![purpose];
            let cert = params.signed_by(&key, &issuer).unwrap();
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap()
    }

    /// The server's identity; no client certificates asked for.
    fn server_tls(&self) -> TlsFiles {
        TlsFiles {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            client_ca: None,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn over_tls_a_client_trusting_the_ca_streams_and_plain_text_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let data = dataset(root.path(), "alpha", 50);
    let pki = Pki::new();
    let mut config = ServiceConfig::new(&data);
    config.tls = Some(pki.server_tls());
    let server = TestServer::start_with(&config).await;
    assert!(server.address.starts_with("grpc+tls://"));
    let trusting = ConnectOptions {
        ca_certificate: Some(pki.read("ca.pem")),
        ..ConnectOptions::default()
    };
    let mut client = Client::connect_with(&server.address, &trusting)
        .await
        .unwrap();
    assert_eq!(client.plan(&request("{}")).await.unwrap().cohort_size, 50);

    // The system's CAs do not know the test CA.
    assert_refused(Client::connect_with(&server.address, &ConnectOptions::default()).await).await;
    let plain = server.address.replacen("grpc+tls://", "grpc://", 1);
    assert_refused(Client::connect(&plain).await).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_client_ca_only_clients_with_a_signed_certificate_are_served() {
    let root = tempfile::tempdir().unwrap();
    let data = dataset(root.path(), "alpha", 50);
    let pki = Pki::new();
    let mut config = ServiceConfig::new(&data);
    config.tls = Some(TlsFiles {
        client_ca: Some(pki.path("ca.pem")),
        ..pki.server_tls()
    });
    let server = TestServer::start_with(&config).await;
    let anonymous = ConnectOptions {
        ca_certificate: Some(pki.read("ca.pem")),
        ..ConnectOptions::default()
    };
    assert_refused(Client::connect_with(&server.address, &anonymous).await).await;
    let identified = ConnectOptions {
        client_identity: Some((pki.read("client.pem"), pki.read("client.key"))),
        ..anonymous
    };
    let mut client = Client::connect_with(&server.address, &identified)
        .await
        .unwrap();
    assert_eq!(client.plan(&request("{}")).await.unwrap().cohort_size, 50);
    server.stop().await;
}
