"""The Kubernetes manifests (deploy/), checked offline: every overlay renders with
``kubectl kustomize``, validates against the schemas of a current Kubernetes release
(``kubernetes-validate``, strict: an unknown field is an error), passes the project's policy,
and names only the ports, settings and Secrets that the code reads.

The policy (``policy_violations``), over every pod template an overlay renders: non-root,
read-only root filesystem with /tmp on an emptyDir, no privilege escalation, every capability
dropped, the RuntimeDefault seccomp profile, no host namespaces or host paths, requests and
limits for CPU and memory, startup, readiness and liveness probes on every long-running
container, images with a pinned tag (never ``latest``, never untagged), no service account
token, and a PodDisruptionBudget that leaves a pod serving for every workload that runs more
than one. It is tested on a bad Deployment too, so a rule that stopped firing would show.

The names: the settings each service's ConfigMap and env set are declared by that service's
settings record (``shared.settings.ALL``), every setting that defaults to a loopback address
(each ``*_TARGET``, ``SHOPSENSE_TRITON_URL``) is set to the Service that answers, listen
addresses and container and Service ports are the agreed ones (``PORTS``; operator port +100,
health 8086, metrics 9090), every Secret key referenced exists in the overlay or is one the
operator provides (``OPERATOR_SECRETS``, each named in deploy/README.md), and the network
policies allow exactly the calls the settings describe.

``kubectl`` missing: the tests skip on a developer's machine and fail under CI=true
(.ci/ensure-kubectl installs it; ``make test`` calls it).
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import ALL, PORTS, SERVICES

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("local", "production", "production-milvus")
# The Kubernetes release whose schemas the manifests must satisfy (bundled by the
# kubernetes-validate package; no network).
KUBERNETES_VERSION = "1.37.0"
# Kinds validated without a bundled schema (custom resources): only the Milvus operator's
# cluster (components/milvus; its shape is checked by test_the_milvus_overlay_...). The
# manifests use scrape annotations and ConfigMaps instead of ServiceMonitor/PrometheusRule
# resources.
SCHEMALESS_KINDS: frozenset[str] = frozenset({"Milvus"})

# The agreed ports (the common names of issue 13).
HEALTH_PORT, METRICS_PORT, OPERATOR_OFFSET = 8086, 9090, 100
TRITON_PORTS = {"grpc": 8001, "http": 8000, "metrics": 8002}
# Services with operator RPCs (served on their own port in production).
OPERATOR_SERVICES = frozenset({"gateway", "retrieval", "feedback", "trainer", "recommend"})
# Secrets no overlay generates: the operator creates them (deploy/README.md says how), by
# name and the keys the manifests read.
OPERATOR_SECRETS: dict[str, set[str]] = {
    "shopsense-tls": {"tls.crt", "tls.key", "ca.crt"},
    "shopsense-api-keys": {"keys.json"},
    "shopsense-token-keys": {"token-keys"},
    "shopsense-database": {"url"},
    "shopsense-log-key": {"log-key"},
    "shopsense-milvus": {"token"},
}
# Variables a container may set that are not shopsense settings (Triton's, torch's, the
# hub's offline switch, the PostgreSQL image's own).
FOREIGN_ENV = frozenset(
    {"HOME", "HF_HUB_OFFLINE", "TRITON_MODEL_REPOSITORY", "JOB_NAME", "MODEL", "DATASET"}
    | {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD", "PGDATA"}
)
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
LONG_RUNNING = ("Deployment", "StatefulSet", "DaemonSet")
LOOPBACK = ("127.0.0.1:", "localhost:")


# -- rendering ----------------------------------------------------------------------------


def _kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        message = "kubectl is not installed (bash .ci/ensure-kubectl installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {message}", pytrace=False)
        pytest.skip(message)
    return found


@functools.cache
def _render_cached(overlay: str) -> tuple[dict[str, Any], ...]:
    done = subprocess.run(
        [_kubectl(), "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"kubectl kustomize {overlay} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def render(overlay: str) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize deploy/overlays/<overlay>`` prints."""
    return list(_render_cached(overlay))


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return request.param


# -- reading rendered objects -------------------------------------------------------------


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template's spec of a workload, else None."""
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    if obj["kind"] in WORKLOADS:
        return spec.get("template", {}).get("spec")
    return None


def containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``("container"|"init", container)`` of a pod spec."""
    for kind, key in (("init", "initContainers"), ("container", "containers")):
        for container in spec.get(key) or []:
            yield kind, container


def replicas_of(objects: list[dict[str, Any]], obj: dict[str, Any]) -> int:
    """The most pods a workload runs at its lowest: its replicas, or its HPA's minReplicas."""
    count = obj.get("spec", {}).get("replicas", 1)
    for hpa in objects:
        target = hpa.get("spec", {}).get("scaleTargetRef", {})
        if (
            hpa["kind"] == "HorizontalPodAutoscaler"
            and target.get("name") == obj["metadata"]["name"]
        ):
            count = max(count, hpa["spec"].get("minReplicas", 1))
    return count


def _scaled_by_hpa(objects: list[dict[str, Any]], obj: dict[str, Any]) -> bool:
    return any(
        o["kind"] == "HorizontalPodAutoscaler"
        and o["spec"]["scaleTargetRef"]["name"] == obj["metadata"]["name"]
        for o in objects
    )


def name(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def service_of(obj: dict[str, Any]) -> str:
    """The shopsense service a Deployment runs (``shopsense-gateway`` -> ``gateway``)."""
    return obj["metadata"]["name"].removeprefix("shopsense-")


def container_env(
    objects: list[dict[str, Any]], container: dict[str, Any]
) -> dict[str, str | None]:
    """Every variable a container gets: its ConfigMaps (envFrom) and its env (None: from a
    Secret or a field)."""
    maps = by_kind(objects, "ConfigMap")
    env: dict[str, str | None] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        assert ref is not None, f"{container['name']}: envFrom other than a ConfigMap"
        assert ref["name"] in maps, f"{container['name']}: no ConfigMap {ref['name']}"
        env.update(maps[ref["name"]].get("data", {}))
    for var in container.get("env") or []:
        env[var["name"]] = var.get("value")
    return env


def service_deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``service name -> Deployment`` of the shopsense services (Triton not included)."""
    deployments = by_kind(objects, "Deployment")
    return {service_of(d): d for d in deployments.values() if service_of(d) in SERVICES}


def main_container(deployment: dict[str, Any]) -> dict[str, Any]:
    spec = pod_spec(deployment)
    assert spec is not None
    return spec["containers"][0]


# -- the policy ---------------------------------------------------------------------------


def _image_problem(image: str) -> str | None:
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image} has no tag"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {image} uses the latest tag"
    return None


def _container_violations(
    where: str, kind: str, container: dict[str, Any], pod: dict[str, Any], long_running: bool
) -> list[str]:
    found = []
    pod_security = pod.get("securityContext") or {}
    security = container.get("securityContext") or {}

    def effective(key: str) -> Any:
        return security.get(key, pod_security.get(key))

    at = f"{where} container {container['name']}"
    if effective("runAsNonRoot") is not True:
        found.append(f"{at}: runAsNonRoot is not true")
    if effective("runAsUser") in (None, 0):
        found.append(f"{at}: runAsUser is unset or 0 (root)")
    if security.get("readOnlyRootFilesystem") is not True:
        found.append(f"{at}: readOnlyRootFilesystem is not true")
    if security.get("allowPrivilegeEscalation") is not False:
        found.append(f"{at}: allowPrivilegeEscalation is not false")
    if security.get("privileged"):
        found.append(f"{at}: privileged")
    capabilities = security.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        found.append(f"{at}: capabilities do not drop ALL")
    if capabilities.get("add"):
        found.append(f"{at}: adds capabilities {capabilities['add']}")
    if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
        found.append(f"{at}: seccompProfile is not RuntimeDefault")
    resources = container.get("resources") or {}
    for part in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in (resources.get(part) or {}):
                found.append(f"{at}: no {resource} {part[:-1]}")
    problem = _image_problem(container.get("image", ""))
    if problem:
        found.append(f"{at}: {problem}")
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    if "emptyDir" not in volumes.get(mounts.get("/tmp", ""), {}):
        found.append(f"{at}: /tmp is not an emptyDir (the root filesystem is read-only)")
    if long_running and kind == "container":
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe not in container:
                found.append(f"{at}: no {probe}")
    return found


def policy_violations(objects: list[dict[str, Any]]) -> list[str]:
    """Every breach of the policy (module docstring) in rendered ``objects``, one line each."""
    found: list[str] = []
    pdbs = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        where = name(obj)
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                found.append(f"{where}: {flag}")
        for volume in spec.get("volumes") or []:
            if "hostPath" in volume:
                found.append(f"{where}: hostPath volume {volume['name']}")
        if spec.get("automountServiceAccountToken") is not False:
            found.append(f"{where}: automountServiceAccountToken is not false")
        long_running = obj["kind"] in LONG_RUNNING
        for kind, container in containers(spec):
            found += _container_violations(where, kind, container, spec, long_running)
        claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
        for volume in spec.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is not None and claim not in claims:
                found.append(f"{where}: volume {volume['name']} claims {claim}, not in the overlay")
        if (
            obj["kind"] == "Deployment"
            and "replicas" in obj["spec"]
            and _scaled_by_hpa(objects, obj)
        ):
            found.append(
                f"{where}: sets replicas and an HPA scales it (each apply would reset the count)"
            )
        if long_running and replicas_of(objects, obj) > 1:
            labels = obj["spec"]["template"]["metadata"].get("labels", {})
            covering = [
                p
                for p in pdbs
                if p["spec"]["selector"].get("matchLabels", {}).items() <= labels.items()
            ]
            if not covering:
                found.append(f"{where}: {replicas_of(objects, obj)} replicas and no PDB")
            for pdb in covering:
                if pdb["spec"].get("maxUnavailable") == 0 or pdb["spec"].get(
                    "minAvailable"
                ) == replicas_of(objects, obj):
                    found.append(f"{where}: {name(pdb)} lets no pod be evicted")
    found += _service_violations(objects)
    return found


def _service_violations(objects: list[dict[str, Any]]) -> list[str]:
    """A Service that selects no pod template, or forwards to a port its pods do not name."""
    found = []
    templates = [(o, o["spec"]["template"]) for o in objects if o["kind"] in LONG_RUNNING]
    for service in (o for o in objects if o["kind"] == "Service"):
        selector = service["spec"].get("selector") or {}
        selected = [
            (o, t)
            for o, t in templates
            if selector and selector.items() <= (t["metadata"].get("labels") or {}).items()
        ]
        if not selected:
            found.append(f"{name(service)}: selects no pod")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for obj, template in selected:
                named = {
                    (p.get("name"), p["containerPort"])
                    for c in template["spec"]["containers"]
                    for p in c.get("ports") or []
                }
                if not any(target in pair for pair in named):
                    found.append(
                        f"{name(service)} port {port['name']}: {name(obj)} has no port {target}"
                    )
    return found


# -- tests: render, validate, policy -------------------------------------------------------


def test_overlay_renders_every_service_and_triton(overlay: str) -> None:
    objects = render(overlay)
    deployments = by_kind(objects, "Deployment")
    assert set(deployments) == {f"shopsense-{s}" for s in (*SERVICES, "triton")}
    # Everything in shopsense's namespace, but the Milvus cluster (components/milvus).
    assert {
        o["metadata"].get("namespace")
        for o in objects
        if o["kind"] not in ("Namespace", *SCHEMALESS_KINDS)
    } == {"shopsense"}
    # Every service (and Triton) gets a Service and a PodDisruptionBudget of its own.
    for kind in ("Service", "PodDisruptionBudget"):
        assert set(deployments) <= set(by_kind(objects, kind)), kind


def schema_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Every object that breaks the schemas of ``KUBERNETES_VERSION`` (strict: unknown fields
    too), or whose kind has no schema, one line each: where and why."""
    import kubernetes_validate

    problems = []
    for obj in objects:
        if obj["kind"] in SCHEMALESS_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{name(obj)} at {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name(obj)}: no schema for {obj['apiVersion']} {obj['kind']}")
    return problems


def test_overlay_validates_against_kubernetes_schemas(overlay: str) -> None:
    problems = schema_problems(render(overlay))
    assert not problems, "\n".join(problems)


def test_schema_validation_rejects_a_misspelt_field_a_wrong_type_and_an_unknown_kind() -> None:
    deployment = copy.deepcopy(by_kind(render("local"), "Deployment")["shopsense-gateway"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbes"] = container.pop("readinessProbe")
    ports = copy.deepcopy(deployment)
    ports["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "grpc"
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "gateway"},
        "spec": {},
    }
    problems = schema_problems([deployment, ports, monitor])
    assert len(problems) == 3, problems
    assert "'readinessProbes' was unexpected" in problems[0]
    assert "containers/0/ports/0/containerPort" in problems[1]
    assert "no schema for monitoring.coreos.com/v1 ServiceMonitor" in problems[2]


def test_overlay_passes_the_policy(overlay: str) -> None:
    violations = policy_violations(render(overlay))
    assert not violations, "\n".join(violations)


def test_policy_finds_each_breach_in_a_bad_deployment() -> None:
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad"},
        "spec": {
            "replicas": 3,
            "template": {
                "metadata": {"labels": {"app": "bad"}},
                "spec": {
                    "hostNetwork": True,
                    "volumes": [
                        {"name": "host", "hostPath": {"path": "/"}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": "nowhere"}},
                    ],
                    "containers": [
                        {
                            "name": "app",
                            "image": "example/app:latest",
                            "securityContext": {"privileged": True, "runAsUser": 0},
                            "resources": {"requests": {"cpu": "1"}},
                        },
                        {"name": "sidecar", "image": "example/sidecar"},
                    ],
                },
            },
        },
    }
    service = {
        "kind": "Service",
        "metadata": {"name": "bad"},
        "spec": {
            "selector": {"app": "bad"},
            "ports": [{"name": "grpc", "port": 1, "targetPort": "grpc"}],
        },
    }
    orphan = {
        "kind": "Service",
        "metadata": {"name": "orphan"},
        "spec": {"selector": {"app": "gone"}, "ports": [{"name": "grpc", "port": 1}]},
    }
    hpa = {
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "bad"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "bad"}, "minReplicas": 2},
    }
    found = "\n".join(policy_violations([bad, service, orphan, hpa]))
    for expected in (
        "Deployment/bad: hostNetwork",
        "hostPath volume host",
        "automountServiceAccountToken is not false",
        "container app: runAsNonRoot is not true",
        "container app: runAsUser is unset or 0 (root)",
        "container app: readOnlyRootFilesystem is not true",
        "container app: allowPrivilegeEscalation is not false",
        "container app: privileged",
        "container app: capabilities do not drop ALL",
        "container app: seccompProfile is not RuntimeDefault",
        "container app: no memory request",
        "container app: no cpu limit",
        "container app: image example/app:latest uses the latest tag",
        "container sidecar: image example/sidecar has no tag",
        "container app: /tmp is not an emptyDir",
        "container app: no startupProbe",
        "container sidecar: no livenessProbe",
        "Deployment/bad: 3 replicas and no PDB",
        "Deployment/bad: volume data claims nowhere, not in the overlay",
        "Service/bad port grpc: Deployment/bad has no port grpc",
        "Service/orphan: selects no pod",
        "Deployment/bad: sets replicas and an HPA scales it",
    ):
        assert expected in found, f"{expected!r} not reported in:\n{found}"
    # The same Deployment with a PDB that keeps every pod: still a breach (drains hang).
    pdb = {
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "bad"},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "bad"}}},
    }
    assert "PodDisruptionBudget/bad lets no pod be evicted" in "\n".join(
        policy_violations([bad, pdb])
    )


# -- tests: the names the code reads ---------------------------------------------------------


def test_every_setting_a_manifest_sets_is_declared_by_its_reader(overlay: str) -> None:
    objects = render(overlay)
    declared_anywhere = {cls.env_name(opt) for cls in ALL.values() for _, opt in cls.options()}
    unknown = []
    for service, deployment in service_deployments(objects).items():
        cls = ALL[service]
        declared = {cls.env_name(opt) for _, opt in cls.options()}
        for var in container_env(objects, main_container(deployment)):
            if var not in declared | FOREIGN_ENV:
                unknown.append(f"{service}: {var}")
    # Any other container (Triton, init containers, the training job) sets only variables
    # that some settings record declares, or foreign ones.
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None or service_of(obj) in SERVICES:
            continue
        for _, container in containers(spec):
            for var in container_env(objects, container):
                if var not in declared_anywhere | FOREIGN_ENV:
                    unknown.append(f"{name(obj)} {container['name']}: {var}")
    assert not unknown, "variables no settings record declares:\n" + "\n".join(sorted(unknown))


def test_addresses_and_ports_are_the_agreed_ones(overlay: str) -> None:
    objects = render(overlay)
    services = by_kind(objects, "Service")
    for service, deployment in service_deployments(objects).items():
        cls = ALL[service]
        container = main_container(deployment)
        env = container_env(objects, container)
        up = service.upper()
        port = PORTS[service]
        assert container["command"] == ["python", "-m", f"services.{service}"]
        assert env["SHOPSENSE_MODE"] == "production", service
        expected_ports = {"grpc": port, "health": HEALTH_PORT, "metrics": METRICS_PORT}
        assert env[f"SHOPSENSE_{up}_LISTEN"] == f"0.0.0.0:{port}"
        assert env[f"SHOPSENSE_{up}_HEALTH_LISTEN"] == f"0.0.0.0:{HEALTH_PORT}"
        assert env[f"SHOPSENSE_{up}_METRICS_LISTEN"] == f"0.0.0.0:{METRICS_PORT}"
        if service in OPERATOR_SERVICES:
            expected_ports["operator"] = port + OPERATOR_OFFSET
            assert env[f"SHOPSENSE_{up}_OPERATOR_LISTEN"] == f"0.0.0.0:{port + OPERATOR_OFFSET}"
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == expected_ports
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == HEALTH_PORT, (service, probe)
        # Every address that defaults to loopback is set to the Service that answers there.
        for _, opt in cls.options():
            var = cls.env_name(opt)
            default = opt.default if isinstance(opt.default, str) else ""
            if not default.startswith(LOOPBACK) or var.endswith("_LISTEN"):
                continue
            callee = "triton" if var == "SHOPSENSE_TRITON_URL" else _callee(var)
            callee_port = TRITON_PORTS["grpc"] if callee == "triton" else PORTS[callee]
            assert env.get(var) == f"shopsense-{callee}:{callee_port}", (service, var)
            assert callee_port in {
                p["port"] for p in services[f"shopsense-{callee}"]["spec"]["ports"]
            }
        service_ports = {
            p["name"]: p["port"] for p in services[f"shopsense-{service}"]["spec"]["ports"]
        }
        assert service_ports == {k: v for k, v in expected_ports.items() if k != "health"}
    triton = main_container(by_kind(objects, "Deployment")["shopsense-triton"])
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == TRITON_PORTS
    assert triton_flags(triton) >= {
        "--model-control-mode=explicit",
        "--model-repository=/models",
        *(f"--{key}-port={value}" for key, value in TRITON_PORTS.items()),
    }
    triton_service = services["shopsense-triton"]["spec"]["ports"]
    assert {p["name"]: p["port"] for p in triton_service} == TRITON_PORTS


# What the CPU image's entrypoint (deploy/images/triton-entrypoint.sh) passes tritonserver
# when the container gives no command: the model repository from TRITON_MODEL_REPOSITORY.
CPU_ENTRYPOINT_FLAGS = frozenset(
    {
        "--model-control-mode=explicit",
        *(f"--{key}-port={value}" for key, value in TRITON_PORTS.items()),
    }
)


def triton_flags(container: dict[str, Any]) -> set[str]:
    """The ``--flag=value`` words Triton starts with: the container's command and args, or the
    CPU image's entrypoint's when it gives no command."""
    words = " ".join([*(container.get("command") or []), *(container.get("args") or [])])
    flags = set(re.findall(r"--[a-z-]+=[^\s\"]+", words))
    if not container.get("command"):
        env = {v["name"]: v.get("value") for v in container.get("env") or []}
        assert container["image"].startswith("localhost/shopsense-triton-cpu:"), container["image"]
        flags |= CPU_ENTRYPOINT_FLAGS | {f"--model-repository={env['TRITON_MODEL_REPOSITORY']}"}
    return flags


def _callee(var: str) -> str:
    match = re.fullmatch(r"SHOPSENSE_([A-Z]+)_TARGET", var)
    assert match, var
    return match.group(1).lower()


def test_every_secret_key_referenced_exists_or_is_the_operators(overlay: str) -> None:
    objects = render(overlay)
    rendered = {
        # A generated Secret's name carries a hash suffix that kustomize also writes into
        # every reference, so references match it exactly.
        n: set((o.get("data") or {}) | (o.get("stringData") or {}))
        for n, o in by_kind(objects, "Secret").items()
    }
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    missing = []

    def check(secret: str, key: str | None, where: str) -> None:
        if secret in rendered:
            if key is not None and key not in rendered[secret]:
                missing.append(f"{where}: Secret {secret} has no key {key}")
            return
        if secret not in OPERATOR_SECRETS:
            missing.append(f"{where}: Secret {secret} neither rendered nor operator-provided")
        elif key is not None and key not in OPERATOR_SECRETS[secret]:
            missing.append(f"{where}: operator Secret {secret} has no documented key {key}")

    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for volume in spec.get("volumes") or []:
            if "secret" in volume:
                check(volume["secret"]["secretName"], None, name(obj))
        for _, container in containers(spec):
            for var in container.get("env") or []:
                ref = (var.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    check(ref["name"], ref["key"], f"{name(obj)} {var['name']}")
    assert not missing, "\n".join(missing)
    for secret, keys in OPERATOR_SECRETS.items():
        assert secret in readme, f"deploy/README.md does not say where {secret} comes from"
        for key in keys:
            assert key in readme, f"deploy/README.md does not name {secret}'s key {key}"


def test_mounted_files_are_where_the_settings_point(overlay: str) -> None:
    objects = render(overlay)
    for service, deployment in service_deployments(objects).items():
        spec = pod_spec(deployment)
        assert spec is not None
        container = main_container(deployment)
        env = container_env(objects, container)
        secret_of = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        mounted = {m["mountPath"]: secret_of.get(m["name"]) for m in container["volumeMounts"]}
        for var, secret in (
            ("SHOPSENSE_TLS_CERT", "shopsense-tls"),
            ("SHOPSENSE_TLS_KEY", "shopsense-tls"),
            ("SHOPSENSE_TLS_CA", "shopsense-tls"),
            ("SHOPSENSE_API_KEYS_FILE", "shopsense-api-keys"),
        ):
            path = Path(env[var] or "")
            assert mounted.get(str(path.parent)) == secret, (service, var)
            assert path.name in OPERATOR_SECRETS[secret], (service, var)


def test_triton_asks_every_grpc_client_for_the_suites_certificate(overlay: str) -> None:
    """Mutual TLS on Triton's gRPC port with the services' certificate files, as
    TritonServer(tls=...) runs it; HTTP (no TLS in Triton) answers health checks only."""
    from shared.models.triton_server import HTTP_API_CLOSED_WITH_TLS

    objects = render(overlay)
    triton = by_kind(objects, "Deployment")["shopsense-triton"]
    spec = pod_spec(triton)
    assert spec is not None
    container = main_container(triton)
    env = container_env(objects, container)
    secret_of = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    mounted = {m["mountPath"]: secret_of.get(m["name"]) for m in container["volumeMounts"]}
    for var in ("SHOPSENSE_TLS_CERT", "SHOPSENSE_TLS_KEY", "SHOPSENSE_TLS_CA"):
        path = Path(env[var] or "")
        assert mounted.get(str(path.parent)) == "shopsense-tls", var
        assert path.name in OPERATOR_SECRETS["shopsense-tls"], var
    # The flags: the GPU container's own command, else the CPU image's entrypoint.
    script = (
        " ".join(container["command"])
        if container.get("command")
        else (DEPLOY / "images" / "triton-entrypoint.sh").read_text(encoding="utf-8")
    )
    assert "--grpc-use-ssl-mutual=true" in script
    for flag, var in (
        ("--grpc-server-cert", "SHOPSENSE_TLS_CERT"),
        ("--grpc-server-key", "SHOPSENSE_TLS_KEY"),
        ("--grpc-root-cert", "SHOPSENSE_TLS_CA"),
    ):
        assert f'{flag}="${var}"' in script, flag
    assert f'--http-restricted-api="{HTTP_API_CLOSED_WITH_TLS}:shopsense-closed=$closed"' in script
    # The probes use what stays open.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert re.fullmatch(r"/v2/health/(live|ready)|/v2/models/\w+/ready", path), probe


def _allowed_calls(objects: list[dict[str, Any]]) -> tuple[set, set]:
    """``(caller, callee, port)`` the egress policies allow, and those the ingress ones do."""
    egress, ingress = set(), set()
    for policy in by_kind(objects, "NetworkPolicy").values():
        selected = (
            policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        )
        if selected is None:
            continue
        for rule in policy["spec"].get("egress") or []:
            for peer in rule.get("to") or []:
                callee = (peer.get("podSelector") or {}).get("matchLabels", {})
                if "app.kubernetes.io/name" in callee and "namespaceSelector" not in peer:
                    for port in rule.get("ports") or []:
                        egress.add((selected, callee["app.kubernetes.io/name"], port["port"]))
        for rule in policy["spec"].get("ingress") or []:
            for peer in rule.get("from") or []:
                caller = (peer.get("podSelector") or {}).get("matchLabels", {})
                if "app.kubernetes.io/name" in caller and "namespaceSelector" not in peer:
                    for port in rule.get("ports") or []:
                        ingress.add((caller["app.kubernetes.io/name"], selected, port["port"]))
    return egress, ingress


def test_network_policies_allow_exactly_the_calls_the_settings_describe(overlay: str) -> None:
    objects = render(overlay)
    policies = by_kind(objects, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    expected = set()
    for service in SERVICES:
        cls = ALL[service]
        for _, opt in cls.options():
            var = cls.env_name(opt)
            if var == "SHOPSENSE_TRITON_URL":
                expected.add((service, "triton", TRITON_PORTS["grpc"]))
            elif var.endswith("_TARGET"):
                callee = _callee(var)
                # The main port only: a service may call another's operator RPCs there
                # (its certificate names it, shared/rpc/auth.py); operator ports are for
                # operators' tools.
                expected.add((service, callee, PORTS[callee]))
            elif var.endswith("_DB_URL"):
                expected.add((service, "postgres", 5432))
    egress, ingress = _allowed_calls(objects)
    assert egress == expected, (
        f"egress allows but no setting calls: {sorted(egress - expected)}; "
        f"settings call but egress denies: {sorted(expected - egress)}"
    )
    assert ingress == expected, (
        f"ingress allows but no setting calls: {sorted(ingress - expected)}; "
        f"settings call but ingress denies: {sorted(expected - ingress)}"
    )


def test_deployments_in_the_rendered_overlays_differ_as_documented() -> None:
    local, production = render("local"), render("production")
    local_triton = main_container(by_kind(local, "Deployment")["shopsense-triton"])
    gpu_triton = by_kind(production, "Deployment")["shopsense-triton"]
    gpu_container = main_container(gpu_triton)
    assert local_triton["image"] == "localhost/shopsense-triton-cpu:0.1.0"
    assert gpu_container["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert "--model-config-name=gpu" in triton_flags(gpu_container)
    assert "--model-config-name=gpu" not in triton_flags(local_triton)
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == 1
    gpu_spec = pod_spec(gpu_triton)
    assert gpu_spec is not None
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu_spec["tolerations"])
    assert gpu_spec["nodeSelector"]
    # The GPU seeds the base text encoder in fp32 (its onnxruntime backend runs model.onnx);
    # the CPU seed serves what its export measured fastest.
    seeds = {
        name: next(c for c in pod_spec(d)["initContainers"] if c["name"] == "seed-models")
        for name, d in (
            ("local", by_kind(local, "Deployment")["shopsense-triton"]),
            ("gpu", gpu_triton),
        )
    }
    assert "--precision=fp32" in seeds["gpu"]["command"]
    assert "--precision=fp32" not in seeds["local"]["command"]
    assert seeds["gpu"]["image"] == seeds["local"]["image"]
    # Local: one of everything, an in-cluster PostgreSQL; production: autoscaled on CPU and,
    # for Triton, on its queue time through the Prometheus adapter's custom metric.
    assert {d["spec"].get("replicas", 1) for d in by_kind(local, "Deployment").values()} == {1}
    assert "shopsense-postgres" in by_kind(local, "StatefulSet")
    assert not by_kind(production, "StatefulSet")
    hpas = by_kind(production, "HorizontalPodAutoscaler")
    assert set(hpas) == {
        f"shopsense-{s}" for s in ("gateway", "retrieval", "ranking", "recommend", "triton")
    }
    metrics = defaultdict(list)
    for hpa_name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] in by_kind(production, "Deployment")
        metrics[hpa_name] = [m["type"] for m in hpa["spec"]["metrics"]]
    assert metrics.pop("shopsense-triton") == ["Pods"]
    assert set(map(tuple, metrics.values())) == {("Resource",)}
    triton_metric = hpas["shopsense-triton"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    adapter = by_kind(production, "ConfigMap")["shopsense-prometheus-adapter"]
    adapter_rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    assert triton_metric in {rule["name"]["as"] for rule in adapter_rules}
    assert "nv_inference_queue_duration_us" in adapter["data"]["config.yaml"]
    # The GPU training template never runs by itself.
    cronjob = by_kind(production, "CronJob")["shopsense-train-gpu"]
    assert cronjob["spec"]["suspend"] is True


def test_the_milvus_overlay_is_production_with_retrieval_on_a_milvus_cluster() -> None:
    production, milvus = render("production"), render("production-milvus")
    clusters = [o for o in milvus if o["kind"] == "Milvus"]
    assert len(clusters) == 1
    cluster = clusters[0]
    assert cluster["apiVersion"] == "milvus.io/v1beta1" and cluster["spec"]["mode"] == "cluster"
    namespace = cluster["metadata"]["namespace"]
    assert namespace != "shopsense"  # its parts talk outside shopsense's default-deny
    assert by_kind(milvus, "Namespace")[namespace]
    assert cluster["spec"]["config"]["common"]["security"]["authorizationEnabled"] is True
    for dependency in ("etcd", "storage"):
        assert (
            cluster["spec"]["dependencies"][dependency]["inCluster"]["deletionPolicy"] == "Retain"
        )

    # Retrieval: the milvus backend, at the operator's proxy Service, with the token.
    config = by_kind(milvus, "ConfigMap")["shopsense-retrieval"]["data"]
    assert config["SHOPSENSE_RETRIEVAL_BACKEND"] == "milvus"
    proxy = f"http://{cluster['metadata']['name']}-milvus.{namespace}.svc:19530"
    assert config["SHOPSENSE_MILVUS_URI"] == proxy
    env = main_container(by_kind(milvus, "Deployment")["shopsense-retrieval"])["env"]
    token = next(v for v in env if v["name"] == "SHOPSENSE_MILVUS_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "shopsense-milvus", "key": "token"}

    # Its egress: the proxy's port in that namespace, from retrieval pods only.
    policy = by_kind(milvus, "NetworkPolicy")["shopsense-retrieval-milvus-egress"]
    assert policy["metadata"]["namespace"] == "shopsense"
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "retrieval"}
    (rule,) = policy["spec"]["egress"]
    (peer,) = rule["to"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": namespace}
    assert (
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"]
        == (cluster["metadata"]["name"])
    )
    assert rule["ports"] == [{"protocol": "TCP", "port": 19530}]

    # Everything else is production's, object for object.
    def key(obj: dict[str, Any]) -> tuple[str, str]:
        return obj["kind"], obj["metadata"]["name"]

    added = {key(o) for o in milvus} - {key(o) for o in production}
    assert added == {
        ("Namespace", namespace),
        ("Milvus", cluster["metadata"]["name"]),
        ("NetworkPolicy", "shopsense-retrieval-milvus-egress"),
    }
    changed = {key(o) for o in milvus for p in production if key(o) == key(p) and o != p}
    assert changed == {("ConfigMap", "shopsense-retrieval"), ("Deployment", "shopsense-retrieval")}
