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
import re
import tomllib

import kubernetes_validate
import pytest

from cli import REPO
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
    import yaml

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
    assert profile == {"inherits": "release", "strip": "symbols"}
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
