"""The Kubernetes deployment under deploy/, without a cluster or a container
engine: every manifest is valid against the Kubernetes schemas, the
Dockerfile keeps the invariants the image needs, the manifests agree with
each other and with the server's own settings, and the real binary, started
exactly as the Deployment's container (its args, env, Secrets and volumes
laid out as the kubelet lays them), passes its probes and serves a user of
the users Secret."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import time
import tomllib
from urllib.parse import urlsplit

import grpc
import kubernetes_validate
import pyarrow.compute as pc
import pyarrow.flight as flight
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli import REPO
from cluster_dns import headless_service
from deploy_files import (
    dockerfile_stages,
    flag_bytes,
    flags,
    host_port,
    manifest,
    manifest_files,
    manifests,
    quantity_bytes,
    seconds,
    server_container,
)
from kubelet import Pod, container_env, expand, pod_root, secret_data

# The Kubernetes release the manifests are written for (its schemas ship with
# kubernetes-validate). Strict: a field the API does not know fails, as
# `kubectl apply --validate=strict` would refuse it.
KUBERNETES = "1.35.0"

# What the gRPC health service answers for (tests/rust/health.rs).
HEALTH_SERVICES = {"", "arrow.flight.protocol.FlightService"}


def validate(resource: dict) -> None:
    kubernetes_validate.validate(resource, KUBERNETES, strict=True)


def deployment() -> dict:
    return manifest("Deployment", "cellflight")


def pod_spec() -> dict:
    return deployment()["spec"]["template"]["spec"]


def container() -> dict:
    return server_container(deployment())


def server_flags() -> dict[str, str]:
    return flags(container())


# --- The manifests against the Kubernetes schemas ---------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda path: path.name)
def test_every_manifest_is_valid_for_kubernetes(path):
    for resource in yaml.safe_load_all(path.read_text()):
        validate(resource)


def test_the_manifests_hold_the_deployment_its_services_secrets_and_budget():
    kinds = sorted((m["kind"], m["metadata"]["name"]) for m in manifests())
    assert kinds == [
        ("Deployment", "cellflight"),
        ("PodDisruptionBudget", "cellflight"),
        ("Secret", "cellflight-s3"),
        ("Secret", "cellflight-users"),
        ("Service", "cellflight"),
        ("Service", "cellflight-peers"),
    ]


def test_a_field_kubernetes_does_not_know_fails_validation():
    broken = copy.deepcopy(deployment())
    server_container(broken)["readinessProbe"]["grpc"]["servce"] = "arrow.flight.protocol.FlightService"
    with pytest.raises(kubernetes_validate.ValidationError, match="'servce' was unexpected"):
        validate(broken)
    misplaced = copy.deepcopy(deployment())
    misplaced["spec"]["template"]["spec"]["securityContext"]["readOnlyRootFilesystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFilesystem"):
        validate(misplaced)  # a container's setting, not the pod's


# --- The manifests against each other and the server's settings -------------


def test_the_headless_service_names_the_ready_replicas_the_server_asks_dns_for():
    peers = manifest("Service", "cellflight-peers")["spec"]
    assert peers["clusterIP"] == "None" and peers["publishNotReadyAddresses"] is False
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert peers["selector"].items() <= labels.items()
    name, port = host_port(server_flags()["--peers-dns"])
    assert name.split(".")[:3] == ["cellflight-peers", "$(POD_NAMESPACE)", "svc"]
    assert [p["port"] for p in peers["ports"]] == [port]
    assert server_flags()["--advertise"] == f"grpc://$(POD_IP):{port}"


def test_the_client_service_reaches_the_flight_port():
    service = manifest("Service", "cellflight")["spec"]
    named = {p["name"]: p["containerPort"] for p in container()["ports"]}
    (port,) = service["ports"]
    assert named[port["targetPort"]] == host_port(server_flags()["--listen"])[1] == port["port"]


def test_the_probes_ask_the_health_service_on_the_port_the_server_listens_on():
    _, listen_port = host_port(server_flags()["--listen"])
    for probe in ("readinessProbe", "livenessProbe"):
        grpc = container()[probe]["grpc"]
        assert grpc["port"] == listen_port, probe
        assert grpc.get("service", "") in HEALTH_SERVICES, probe


def test_the_cache_volume_holds_the_cache_and_the_pod_the_volume():
    (cache,) = [v for v in pod_spec()["volumes"] if v["name"] == "cache"]
    (mount,) = [m for m in container()["volumeMounts"] if m["name"] == "cache"]
    assert server_flags()["--cache-dir"] == mount["mountPath"]
    size_limit = quantity_bytes(cache["emptyDir"]["sizeLimit"])
    assert size_limit > flag_bytes(server_flags()["--cache-size"])
    storage = container()["resources"]
    assert quantity_bytes(storage["limits"]["ephemeral-storage"]) > size_limit, "the pod's logs need room too"


def test_the_memory_limit_covers_the_servers_budgets_at_their_worst():
    """docs/operations.md: peak RSS ≤ idle RSS + --max-memory + --sql-memory
    + --cohort-cache + --column-cache + --sql-planning-threads × 512 MiB (no
    mapped matrix: the matrices are remote). Each budget is set explicitly,
    and 1 GiB is left for the idle server and the object store reads in
    flight."""
    given = server_flags()
    budgets = sum(
        flag_bytes(given[name]) for name in ("--max-memory", "--sql-memory", "--cohort-cache", "--column-cache")
    )
    budgets += int(given["--sql-planning-threads"]) * 512 * 1024**2
    resources = container()["resources"]
    limit = quantity_bytes(resources["limits"]["memory"])
    assert limit - budgets >= 1024**3
    assert resources["requests"]["memory"] == resources["limits"]["memory"], "Guaranteed: requests equal limits"
    assert flag_bytes(given["--sql-query-memory"]) <= flag_bytes(given["--sql-memory"])


def test_kubernetes_waits_for_the_servers_shutdown_grace_before_killing_it():
    grace = seconds(server_flags()["--shutdown-grace"])
    assert pod_spec()["terminationGracePeriodSeconds"] > grace


def test_no_service_link_puts_variables_in_the_servers_environment():
    assert pod_spec()["enableServiceLinks"] is False


def test_the_pod_runs_unprivileged_on_a_read_only_root_with_the_cache_writable():
    security = pod_spec()["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    own = container()["securityContext"]
    assert own["readOnlyRootFilesystem"] is True and own["allowPrivilegeEscalation"] is False
    assert own["capabilities"]["drop"] == ["ALL"]
    (users,) = [v for v in pod_spec()["volumes"] if v["name"] == "users"]
    mode = users["secret"]["defaultMode"]
    assert mode & 0o037 == 0 and mode & 0o040, "group-readable through fsGroup, nothing more (docs/operations.md)"


# --- The Dockerfile -----------------------------------------------------------


def test_the_image_is_built_in_a_rust_stage_and_runs_from_a_slim_debian_of_the_same_release():
    builder, runtime = dockerfile_stages()
    rust = re.fullmatch(r"rust:([\d.]+)-(\w+)", builder.image)
    assert rust and builder.alias == "builder", builder.image
    debian = re.fullmatch(r"debian:(\w+)-slim", runtime.image)
    assert debian, runtime.image
    assert rust.group(2) == debian.group(1), "the binary must run on the glibc it was linked against"


def test_the_builder_toolchain_is_not_older_than_the_workspace_needs():
    builder, _ = dockerfile_stages()
    toolchain = tuple(map(int, re.match(r"rust:([\d.]+)", builder.image).group(1).split(".")))
    workspace = tomllib.loads((REPO / "Cargo.toml").read_text())
    needed = tuple(map(int, workspace["workspace"]["package"]["rust-version"].split(".")))
    assert toolchain >= needed


def test_the_image_ships_the_symbol_less_dist_binary_as_its_entrypoint():
    builder, runtime = dockerfile_stages()
    profile = tomllib.loads((REPO / "Cargo.toml").read_text())["profile"]["dist"]
    assert profile["inherits"] == "release" and profile["strip"] == "symbols"
    build = [c for c in builder.commands() if c[:2] == ["cargo", "build"]]
    assert build == [["cargo", "build", "--profile", "dist", "-p", "cellflight", "--locked"]]
    (copied,) = [c for c in builder.commands() if c[:1] == ["cp"]]
    assert copied[1] == "target/dist/cellflight"
    (shipped,) = runtime.values("COPY")
    assert shipped.split() == ["--from=builder", copied[2], copied[2]]
    assert json.loads(runtime.values("ENTRYPOINT")[0]) == [copied[2]]


def test_the_runtime_installs_ca_certificates_and_nothing_else():
    _, runtime = dockerfile_stages()
    installs = [c for c in runtime.commands() if c[:2] == ["apt-get", "install"]]
    assert [[w for w in c[2:] if not w.startswith("-")] for c in installs] == [["ca-certificates"]]
    assert ["rm", "-rf", "/var/lib/apt/lists/*"] in runtime.commands()


def test_the_image_runs_as_the_deployments_non_root_user_and_exposes_its_ports():
    _, runtime = dockerfile_stages()
    (user,) = runtime.values("USER")
    uid, gid = map(int, user.split(":"))
    security = pod_spec()["securityContext"]
    assert uid != 0 and (uid, gid) == (security["runAsUser"], security["runAsGroup"])
    (useradd,) = [c for c in runtime.commands() if c[:1] == ["useradd"]]
    assert useradd[useradd.index("--uid") + 1] == str(uid)
    exposed = {int(port) for value in runtime.values("EXPOSE") for port in value.split()}
    assert exposed == {port["containerPort"] for port in container()["ports"]}


# --- The server, started as the Deployment's pods -----------------------------


def test_the_binary_knows_every_flag_the_deployment_gives_it(cellflight):
    assert missing_flags(cellflight) == []


def test_the_kubelet_stand_in_expands_variables_as_kubernetes_does():
    env = {"POD_IP": "10.0.0.7"}
    assert expand("grpc://$(POD_IP):50051", env) == "grpc://10.0.0.7:50051"
    assert expand("$(POD_NAMESPACE).svc", env) == "$(POD_NAMESPACE).svc", "an undefined variable stays as written"
    assert expand("$$(POD_IP) costs $$5", env) == "$(POD_IP) costs $5", "$$ escapes"
    spec = {"env": [{"name": "B", "value": "$(A)-b"}, {"name": "A", "value": "a"}, {"name": "C", "value": "$(A)-c"}]}
    assert container_env(spec, {}, {}) == {"B": "$(A)-b", "A": "a", "C": "a-c"}, "only earlier variables expand"


# One loopback address a pod, its POD_IP (away from the 127.0.0.x other tests use).
POD_IPS = ["127.0.10.1", "127.0.10.2", "127.0.10.3"]
NAMESPACE = "cellflight-test"
# The runtime stage's PATH (debian's image ENV), which a container inherits.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The datasets the test publishes under --data, from real files; the
# analyst of the users Secret is granted pbmc alone.
DATASETS = {"pbmc": ("10x_pbmc68k_reduced.h5ad", 700), "wu2020": ("wu2020_200_v0_11.h5ad", 200)}
# The password whose hash the users Secret's analyst has (said in the file).
ANALYST_PASSWORD = "CHANGE-ME"


def missing_flags(cellflight) -> list[str]:
    """The Deployment's flags this binary does not know."""
    usage = cellflight.ok("serve", "--help").stdout
    return [name for name in server_flags() if not re.search(rf"\s{re.escape(name)}[ =\s]", usage)]


def s3_secret(s3) -> dict[str, bytes]:
    """The S3 Secret as an operator fills it for the test's S3-compatible
    server: the example's keys, the server's credentials and endpoint."""
    example = secret_data(manifest("Secret", "cellflight-s3"))
    filled = {
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_REGION": example["AWS_REGION"].decode(),
        "AWS_ENDPOINT": s3.endpoint,
        "AWS_ALLOW_HTTP": "true",
    }
    assert example.keys() <= filled.keys(), "a key of the example Secret the test does not fill"
    return {key: value.encode() for key, value in filled.items()}


def configured(s3) -> dict:
    """The Deployment's container as an operator configures it for the
    test's S3-compatible server: --data names that server's bucket (the
    manifest's is an example, as its README says), under the manifest's
    prefix. Every other arg is the manifest's."""
    configured = copy.deepcopy(container())
    prefix = urlsplit(server_flags()["--data"]).path
    configured["args"] = [
        f"--data=s3://{s3.bucket}{prefix}" if arg.startswith("--data=") else arg for arg in configured["args"]
    ]
    return configured


def publish_datasets(cellflight, data_file, data_url: str, secrets) -> None:
    """Ingests the real files under `data_url` with the object store
    settings the pods get."""
    env = {**os.environ, **{k: v.decode() for k, v in secrets["cellflight-s3"].items()}}
    for name, (file, _) in DATASETS.items():
        ingest = cellflight.argv("ingest", data_file(file), f"{data_url}/{name}")
        result = subprocess.run(ingest, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr


def start_pod(binary, server: dict, ip: str, secrets, dns_server: str) -> subprocess.Popen:
    """Runs the container `server` as one pod of the Deployment, at `ip`."""
    _, runtime = dockerfile_stages()
    entrypoint = json.loads(runtime.values("ENTRYPOINT")[0])
    pod = Pod(pod_spec(), pod_root(), ip, NAMESPACE)
    pod.install_image_file(entrypoint[0], binary)
    pod.mount_volumes(server, secrets)
    env = container_env(server, secrets, {"status.podIP": ip, "metadata.namespace": NAMESPACE})
    argv = pod.argv(server, entrypoint, env)
    # The cluster's DNS, which a pod's resolv.conf names, is the test's.
    process_env = {"PATH": IMAGE_PATH, "HOSTNAME": f"cellflight-{ip}", **env, "CELLFLIGHT_DNS_SERVER": dns_server}
    process = pod.start(argv, process_env, pod.root / "log")
    process.pod = pod
    return process


def probe(process, name: str) -> bool:
    """One run of the container's gRPC probe `name`, as the kubelet runs it:
    a health check on the pod's address, the probe's port and service,
    within its timeout; success is SERVING."""
    spec = container()[name]
    address = f"{process.pod.ip}:{spec['grpc']['port']}"
    with grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
        request = health_pb2.HealthCheckRequest(service=spec["grpc"].get("service", ""))
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(request, timeout=spec.get("timeoutSeconds", 1))
        except grpc.RpcError:
            return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def wait_ready(process, seconds_at_most: float = 60) -> None:
    """Runs the readiness probe until it succeeds: each second rather than
    each periodSeconds, to keep the test short."""
    period = container()["readinessProbe"].get("periodSeconds", 10)
    deadline = time.monotonic() + seconds_at_most
    while not probe(process, "readinessProbe"):
        assert process.poll() is None, f"the pod exited: {(process.pod.root / 'log').read_text()}"
        assert time.monotonic() < deadline, f"not ready: {(process.pod.root / 'log').read_text()}"
        time.sleep(min(period, 1))


def terminate(process) -> int:
    """As the kubelet stops a pod: SIGTERM, then the grace period."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=pod_spec()["terminationGracePeriodSeconds"])
    finally:
        shutil.rmtree(process.pod.root, ignore_errors=True)


@pytest.fixture(scope="module")
def pods(cellflight, data_file, s3):
    """The Deployment's replicas, ready, over datasets in the test's
    S3-compatible server; stopped as the kubelet stops them, each cleanly."""
    missing = missing_flags(cellflight)
    assert not missing, f"{cellflight.exe} lacks flags the Deployment uses: {missing} (issue 16, parts 1 and 4)"
    secrets = {
        "cellflight-s3": s3_secret(s3),
        "cellflight-users": secret_data(manifest("Secret", "cellflight-users")),
    }
    server = configured(s3)
    publish_datasets(cellflight, data_file, flags(server)["--data"], secrets)
    peers, _ = host_port(expand(server_flags()["--peers-dns"], {"POD_NAMESPACE": NAMESPACE}))
    replicas = POD_IPS[: deployment()["spec"]["replicas"]]
    with headless_service(peers, replicas) as dns_server:
        started = []
        try:
            for ip in replicas:
                started.append(start_pod(cellflight.exe, server, ip, secrets, dns_server))
            for process in started:
                wait_ready(process)
            yield started
        finally:
            assert [terminate(process) for process in started] == [0] * len(started)


def advertised(process) -> str:
    return expand(server_flags()["--advertise"], {"POD_IP": process.pod.ip})


def bearer(token: str) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def test_each_replica_passes_its_readiness_and_liveness_probes(pods):
    assert len(pods) == deployment()["spec"]["replicas"] == 3
    for process in pods:
        assert probe(process, "readinessProbe") and probe(process, "livenessProbe")


def test_each_replica_runs_as_the_pods_user_and_reads_the_users_secret_through_its_links(pods):
    security = pod_spec()["securityContext"]
    for process in pods:
        users = process.pod.mounts["/etc/cellflight/users"]
        assert os.readlink(users / "users.json") == "..data/users.json"
        assert (users / "..data").is_symlink()
        assert (users / "users.json").stat().st_mode & 0o777 == 0o440
        if os.geteuid() == 0:  # only root can become the pod's user
            status = dict(line.split(":", 1) for line in open(f"/proc/{process.pid}/status"))
            assert int(status["Uid"].split()[0]) == security["runAsUser"]
            assert security["fsGroup"] in map(int, status["Groups"].split())


def test_a_trainer_of_the_users_secret_reads_every_cell_once_across_the_replicas(pods):
    token = json.loads(secret_data(manifest("Secret", "cellflight-users"))["users.json"])["users"]["trainer"]["token"]
    client = flight.connect(advertised(pods[0]))
    request = {"dataset": "pbmc", "batch_size": 64, "partitions": len(pods), "seed": 1}
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request)), bearer(token))
    every_replica = sorted(advertised(process) for process in pods)
    cells = []
    for endpoint in info.endpoints:
        locations = [location.uri.decode() for location in endpoint.locations]
        assert sorted(locations) == every_replica
        reader = flight.connect(locations[0]).do_get(endpoint.ticket, bearer(token))
        table = reader.read_all()
        real = table.filter(pc.invert(table.column("is_padding")))
        cells.extend(real.column("cell_id").to_pylist())
    assert sorted(cells) == list(range(DATASETS["pbmc"][1]))
    firsts = {endpoint.locations[0].uri.decode() for endpoint in info.endpoints}
    assert len(firsts) == len(pods), "each partition first goes to a replica of its own"


def test_the_analyst_signs_in_with_its_password_and_sees_only_its_dataset(pods):
    for process in pods:
        client = flight.connect(advertised(process))
        signed_in = flight.FlightCallOptions(headers=[client.authenticate_basic_token("analyst", ANALYST_PASSWORD)])
        listed = [json.loads(info.descriptor.command)["dataset"] for info in client.list_flights(options=signed_in)]
        assert listed == ["pbmc"]
        with pytest.raises(flight.FlightUnauthenticatedError):
            list(client.list_flights())
