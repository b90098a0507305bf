"""A server for a team, seen from Python: bearer tokens (pyarrow headers, the
Basic Handshake, the cellflight client, ADBC), password hashes made by
`cellflight hash-password`, the per-peer sign-in limit, per-dataset grants
on every way a dataset can be reached, TLS, and the request size limit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import adbc_driver_flightsql.dbapi as adbc
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import trustme

import client_helpers  # noqa: F401  (puts this checkout's package first)
import cellflight as package  # the name `cellflight` is the binary's fixture
from test_serve import serving, start, stop

ALICE = "alice-token-0123456789abcdef"
TRAINER = "trainer-token-0123456789abcdef"


def hash_password(cellflight, password: str) -> str:
    """The binary's `hash-password` of `password`, given on stdin."""
    result = subprocess.run(
        cellflight.argv("hash-password"), input=password + "\n", capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def team(cellflight) -> dict:
    """Alice signs in with a password and reads alpha; trainer reads all by token."""
    return {
        "users": {
            "alice": {"token": ALICE, "password_hash": hash_password(cellflight, "wonderland"), "datasets": ["alpha"]},
            "trainer": {"token": TRAINER},
        }
    }


@pytest.fixture(scope="module")
def data(cellflight, tmp_path_factory):
    data = tmp_path_factory.mktemp("security") / "data"
    cellflight.ok("generate", data / "alpha", "--cells", 300, "--genes", 50, "--seed", 1)
    cellflight.ok("generate", data / "beta", "--cells", 100, "--genes", 50, "--seed", 2)
    return data


def users_file(directory, users, mode=0o600):
    path = directory / "users.json"
    path.write_text(json.dumps(users))
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def served(cellflight, data, tmp_path_factory):
    users = users_file(tmp_path_factory.mktemp("users"), team(cellflight))
    with serving(cellflight, data, "--auth-file", users) as (server, address):
        yield address


def bearer(token: str) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def listed(address: str, options: flight.FlightCallOptions) -> list[str]:
    infos = flight.connect(address).list_flights(options=options)
    return sorted(json.loads(i.descriptor.command)["dataset"] for i in infos)


def test_a_call_without_a_known_token_is_unauthenticated(served):
    client = flight.connect(served)
    with pytest.raises(flight.FlightUnauthenticatedError, match="no credentials"):
        list(client.list_flights())
    with pytest.raises(flight.FlightUnauthenticatedError, match="not one this server knows"):
        list(client.list_flights(options=bearer("guessed-token-0123456789")))


def test_basic_credentials_are_traded_for_the_token_by_the_handshake(served):
    client = flight.connect(served)
    header = client.authenticate_basic_token("alice", "wonderland")
    assert header == (b"authorization", f"Bearer {ALICE}".encode())
    assert listed(served, flight.FlightCallOptions(headers=[header])) == ["alpha"]
    with pytest.raises(flight.FlightUnauthenticatedError, match="wrong user name or password"):
        client.authenticate_basic_token("alice", "looking-glass")
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.authenticate_basic_token("trainer", "")  # trainer has no password


def test_each_token_lists_the_datasets_it_is_granted(served):
    assert listed(served, bearer(ALICE)) == ["alpha"]
    assert listed(served, bearer(TRAINER)) == ["alpha", "beta"]


@pytest.mark.parametrize(
    "command",
    [
        {"dataset": "beta"},
        {"dataset": "alpha", "query": "cell_id IN (SELECT cell_id FROM beta.cells)"},
        {"dataset": "alpha", "genes_query": "gene_idx IN (SELECT gene_idx FROM beta.genes)"},
        {"sql": "SELECT count(*) FROM alpha.cells a JOIN beta.cells b ON a.cell_id = b.cell_id"},
        {"sql": "SELECT * FROM (SELECT cell_id FROM beta.cells) AS hidden"},
    ],
    ids=["request", "cohort-subquery", "genes-subquery", "sql-join", "sql-subquery"],
)
def test_a_dataset_without_a_grant_is_denied_by_name_wherever_it_is_reached(served, command):
    client = flight.connect(served)
    descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
    with pytest.raises(flight.FlightUnauthorizedError, match="no grant for dataset beta"):
        client.get_flight_info(descriptor, options=bearer(ALICE))
    client.get_flight_info(descriptor, options=bearer(TRAINER))


def test_a_ticket_is_checked_against_the_token_that_presents_it(served):
    client = flight.connect(served)
    descriptor = flight.FlightDescriptor.for_command(json.dumps({"dataset": "beta"}))
    ticket = client.get_flight_info(descriptor, options=bearer(TRAINER)).endpoints[0].ticket
    with pytest.raises(flight.FlightUnauthorizedError, match="dataset beta"):
        client.do_get(ticket, options=bearer(ALICE)).read_all()
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.do_get(ticket).read_all()


def test_the_python_client_takes_a_token_or_a_password(served, monkeypatch):
    for client in [package.connect(served, token=ALICE), package.connect(served, username="alice", password="wonderland")]:
        with client:
            assert [d.name for d in client.datasets()] == ["alpha"]
            loader = client.loader("alpha", batch_size=64, seed=1)
            cells = [int(c) for b in loader for c in b.cell_id[~b.is_padding]]
            assert sorted(cells) == list(range(300))
            with pytest.raises(package.PermissionDenied, match="dataset beta"):
                client.count("beta")
    monkeypatch.setenv("CELLFLIGHT_TOKEN", TRAINER)
    with package.connect(served) as client:
        assert [d.name for d in client.datasets()] == ["alpha", "beta"]
    monkeypatch.delenv("CELLFLIGHT_TOKEN")
    with pytest.raises(package.Unauthenticated):
        package.connect(served).datasets()
    with pytest.raises(package.Unauthenticated, match="wrong user name or password"):
        package.connect(served, username="alice", password="nope")


def test_adbc_connects_with_a_token_or_a_password_and_meets_the_same_grants(served):
    for db_kwargs in [
        {"adbc.flight.sql.authorization_header": f"Bearer {ALICE}"},
        {"username": "alice", "password": "wonderland"},
    ]:
        with adbc.connect(served, db_kwargs=db_kwargs) as conn:
            with conn.cursor() as cursor:
                cursor.execute("SELECT count(*) AS n FROM alpha.cells")
                assert cursor.fetch_arrow_table().column("n").to_pylist() == [300]
                with pytest.raises(Exception, match="no grant for dataset beta"):
                    cursor.execute("SELECT count(*) FROM beta.cells")
            schemas = conn.adbc_get_objects(depth="db_schemas").read_all().to_pylist()
            assert [s["db_schema_name"] for s in schemas[0]["catalog_db_schemas"]] == ["alpha"]
    with pytest.raises(Exception, match="(?i)unauthenticated"):
        with adbc.connect(served) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")


def test_the_token_of_the_environment_reads_every_dataset(cellflight, data):
    environment = {**os.environ, "CELLFLIGHT_AUTH_TOKEN": TRAINER}
    server = cellflight.popen("serve", "--data", data, "--listen", "127.0.0.1:0", env=environment)
    try:
        address = server.stdout.readline().split()[-1]
        assert listed(address, bearer(TRAINER)) == ["alpha", "beta"]
        with pytest.raises(flight.FlightUnauthenticatedError):
            listed(address, flight.FlightCallOptions())
    finally:
        assert stop(server) == 0


def test_hash_password_prints_a_hash_that_signs_in_and_refuses_an_empty_password(cellflight, served):
    phc = hash_password(cellflight, "wonderland")
    assert phc.startswith("$argon2id$v=19$") and "wonderland" not in phc
    assert phc != hash_password(cellflight, "wonderland"), "each hash has its own salt"
    header = flight.connect(served).authenticate_basic_token("alice", "wonderland")
    assert header == (b"authorization", f"Bearer {ALICE}".encode())
    for empty in ["", "\n"]:
        result = subprocess.run(cellflight.argv("hash-password"), input=empty, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "the password is empty" in result.stderr, result


def test_a_peer_failing_to_sign_in_too_often_waits_and_the_server_serves_on(cellflight, data, tmp_path):
    server, address = start(cellflight, data, "--auth-file", users_file(tmp_path, team(cellflight)))
    try:
        client = flight.connect(address)
        for _ in range(5):
            with pytest.raises(flight.FlightUnauthenticatedError, match="wrong user name or password"):
                client.authenticate_basic_token("alice", "looking-glass")
        with pytest.raises(pa.ArrowException, match="too many failed sign-ins from this address: wait 1 s") as refused:
            client.authenticate_basic_token("alice", "wonderland")
        assert "resource exhausted" in str(refused.value).lower()
        assert listed(address, bearer(TRAINER)) == ["alpha", "beta"], "tokens are not limited"
        time.sleep(1.2)
        header = client.authenticate_basic_token("alice", "wonderland")
        assert listed(address, flight.FlightCallOptions(headers=[header])) == ["alpha"]
    finally:
        assert stop(server) == 0
    log = server.log_path.read_text()
    assert log.count("sign-ins refused") == 1, log
    assert "looking-glass" not in log and "wonderland" not in log


@pytest.mark.parametrize(
    "users, mode, mentions",
    [
        ({"users": {"trainer": {"token": TRAINER}}}, 0o644, ["--auth-file", "readable by other users", "chmod 600"]),
        (
            {"users": {"bob": {"token": TRAINER, "password": "wonderland"}}},
            0o600,
            ["--auth-file", 'user "bob"', 'plaintext "password" is refused', "cellflight hash-password"],
        ),
        (
            {"users": {"bob": {"token": TRAINER, "password_hash": "wonderland"}}},
            0o600,
            ["--auth-file", 'user "bob"', "not an argon2id PHC string"],
        ),
        ({"users": {"bob": {"token": "short"}}}, 0o600, ["--auth-file", 'user "bob"', "shorter than 16"]),
        ({"users": {"bob": {"token": TRAINER, "admin": True}}}, 0o600, ["--auth-file", "unknown field `admin`"]),
        ({"users": {}}, 0o600, ["--auth-file", "no users"]),
    ],
    ids=["world-readable", "plaintext-password", "not-a-hash", "short-token", "unknown-key", "empty"],
)
def test_a_bad_users_file_stops_serve_with_what_is_wrong(cellflight, data, tmp_path, users, mode, mentions):
    path = users_file(tmp_path, users, mode)
    cellflight.fails("serve", "--data", data, "--listen", "127.0.0.1:0", "--auth-file", path, mentions=mentions)


def test_a_request_over_the_size_limit_is_resource_exhausted_naming_it(cellflight, data):
    server, address = start(cellflight, data, "--max-request-size", "4KiB")
    try:
        client = flight.connect(address)
        query = "cell_id >= 0" + " OR cell_id = 1" * 1000  # ~15 kB
        descriptor = flight.FlightDescriptor.for_command(json.dumps({"dataset": "alpha", "query": query}))
        with pytest.raises(pa.ArrowException, match="over the server's --max-request-size of 4096 bytes") as raised:
            client.get_flight_info(descriptor)
        assert "resource exhausted" in str(raised.value).lower()
        small = flight.FlightDescriptor.for_command(json.dumps({"dataset": "alpha"}))
        assert client.get_flight_info(small).total_records >= 300
    finally:
        assert stop(server) == 0


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA made for this test, and a certificate it signed for localhost."""
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("localhost")
    server.cert_chain_pems[0].write_to_path(directory / "server.pem")
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(directory / "server.pem", append=True)
    server.private_key_pem.write_to_path(directory / "server.key")
    return {"dir": directory, "ca": ca.cert_pem.bytes()}


def test_over_tls_clients_trusting_the_ca_are_served(cellflight, data, certificates):
    directory = certificates["dir"]
    server, address = start(
        cellflight, data, "--tls-cert", directory / "server.pem", "--tls-key", directory / "server.key",
    )
    try:
        assert address.startswith("grpc+tls://")
        address = address.replace("127.0.0.1", "localhost")
        with package.connect(address, tls_root_certs=certificates["ca"]) as client:
            assert client.count("alpha") == 300
            batch = next(iter(client.loader("beta", batch_size=32)))
            assert len(batch.cell_id) == 32
        with pytest.raises(pa.ArrowException):
            list(flight.connect(address).list_flights())  # the system's CAs do not know ours
        with pytest.raises(pa.ArrowException):
            list(flight.connect(address.replace("grpc+tls://", "grpc://")).list_flights())
    finally:
        assert stop(server) == 0


def test_only_a_token_granted_every_dataset_may_refresh_the_catalog(served):
    client = flight.connect(served)
    with pytest.raises(flight.FlightUnauthorizedError, match="refresh reloads every dataset"):
        list(client.do_action(flight.Action("refresh", b""), options=bearer(ALICE)))
    (result,) = client.do_action(flight.Action("refresh", b""), options=bearer(TRAINER))
    assert sorted(json.loads(result.body.to_pybytes())["datasets"]) == ["alpha", "beta"]


def test_a_client_silent_in_its_tls_handshake_is_disconnected(cellflight, data, certificates):
    directory = certificates["dir"]
    server, address = start(
        cellflight, data, "--tls-cert", directory / "server.pem", "--tls-key", directory / "server.key",
        "--tls-handshake-timeout", "1s",
    )  # fmt: skip
    try:
        host, port = address.removeprefix("grpc+tls://").rsplit(":", 1)
        with socket.create_connection((host, int(port))) as silent:
            silent.settimeout(10)
            started = time.monotonic()
            try:
                closed = silent.recv(1) == b""
            except ConnectionResetError:
                closed = True
            assert closed and time.monotonic() - started < 5, "a silent TLS client keeps its connection"
        with package.connect(address.replace("127.0.0.1", "localhost"), tls_root_certs=certificates["ca"]) as client:
            assert client.count("alpha") == 300
    finally:
        assert stop(server) == 0
