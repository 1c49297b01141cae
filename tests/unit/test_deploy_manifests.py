"""deploy/kubernetes: every manifest is a valid Kubernetes object (strict schemas, offline), and
the things lhpipe relies on hold: the probes' paths, the pod name as static membership id, a
grace period longer than the drain, selectors that find the pods, a pipeline that lints."""

from __future__ import annotations

import copy
import io
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from lhpipe.commands.lint import run_lint
from lhpipe.settings import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The schemas `make check` validates against (its `kubernetes-validate` line says the same).
KUBERNETES_VERSION = "1.33.0"
PIPELINES_DIR = "/etc/lhpipe/pipelines"
PORT = 8080
# lhpipe's drain on SIGTERM (records in flight) plus the HTTP listener's close.
DRAIN_SECONDS = 30 + 10

Manifest = dict[str, Any]


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")


def load(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def objects() -> list[Manifest]:
    return [obj for path in manifest_files() for obj in load(path)]


def one(kind: str) -> Manifest:
    found = [obj for obj in objects() if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/kubernetes, found {len(found)}"
    return found[0]


def container() -> Manifest:
    containers = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Manifest = containers[0]
    return result


def env() -> dict[str, Manifest]:
    return {entry["name"]: entry for entry in container().get("env", [])}


def pod_labels() -> dict[str, str]:
    labels: dict[str, str] = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load(MANIFESTS / "kustomization.yaml")[0]
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    kinds = sorted(obj["kind"] for obj in objects())
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_is_valid_under_the_strict_schemas(path: Path) -> None:
    docs = load(path)
    assert docs, f"{path.name} holds no object"
    for obj in docs:
        # Raises for a field the schema does not know (strict) and for a kind or apiVersion
        # it has no schema for (the CLI only warns about those; `make check` fails on them).
        validated = kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        assert validated == "1.33"


def test_the_strict_validation_rejects_an_unknown_field() -> None:
    deployment = copy.deepcopy(one("Deployment"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError, match="terminationGracePeriod"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    renamed = copy.deepcopy(one("PodDisruptionBudget"))
    renamed["apiVersion"] = "policy/v1beta1"  # removed in Kubernetes 1.25
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(renamed, KUBERNETES_VERSION, strict=True)


def test_make_check_validates_the_manifests_the_same_way() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    check = re.search(r"^check:.*?(?=^\S+:)", makefile, re.MULTILINE | re.DOTALL)
    assert check is not None
    command = "$(BIN)/kubernetes-validate "
    line = next((ln for ln in check.group().splitlines() if command in ln), "")
    assert "--strict" in line
    assert f"--kubernetes-version {KUBERNETES_VERSION}" in line
    assert "deploy/kubernetes/" in line


def test_the_container_runs_the_mounted_pipelines_on_port_8080() -> None:
    c = container()
    assert c["command"] == ["lhpipe", "run", PIPELINES_DIR, "--port", str(PORT)]
    assert [p["containerPort"] for p in c["ports"]] == [PORT]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    pipelines = [n for n, m in mounts.items() if m["mountPath"] == PIPELINES_DIR]
    assert len(pipelines) == 1
    assert volumes[pipelines[0]]["configMap"]["name"] == one("ConfigMap")["metadata"]["name"]


def test_probes_ask_healthz_and_readyz() -> None:
    c = container()
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": PORT}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": PORT}


def test_the_pod_name_is_the_static_membership_id() -> None:
    instance = env()["LHPIPE_INSTANCE_ID"]
    assert "value" not in instance
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_the_session_timeout_is_one_the_broker_accepts() -> None:
    # group.min.session.timeout.ms and group.max.session.timeout.ms, Kafka's defaults (since
    # 2.3; some managed services allow less than 30 minutes).
    value = env()["LHPIPE_SESSION_TIMEOUT_MS"]["value"]
    assert isinstance(value, str)
    assert 6000 <= int(value) <= 1800000


def test_connection_settings_use_the_names_lhpipe_reads() -> None:
    names = env()
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "LHC_API_HOST", "LHC_API_PORT"):
        assert name in DEFAULTS
        assert name in names
    for name in names:
        assert name.startswith("LHPIPE_") or name in DEFAULTS, name


def test_secrets_come_from_a_secret() -> None:
    c = container()
    assert any("secretRef" in source for source in c.get("envFrom", []))
    for name, entry in env().items():
        if re.search("SECRET|PASSWORD|TOKEN", name):
            assert "secretKeyRef" in entry.get("valueFrom", {}), name


def test_the_grace_period_outlasts_the_drain() -> None:
    grace = one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > DRAIN_SECONDS


def test_the_container_is_locked_down_and_sized() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    c = container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    for bound in ("requests", "limits"):
        assert set(c["resources"][bound]) == {"cpu", "memory"}


def test_selectors_find_the_pods() -> None:
    labels = pod_labels()
    deployment = one("Deployment")["spec"]["selector"]
    assert set(deployment) == {"matchLabels"}
    assert selects(deployment["matchLabels"], labels)
    pdb = one("PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1
    assert set(pdb["selector"]) == {"matchLabels"}
    assert selects(pdb["selector"]["matchLabels"], labels)
    service = one("Service")["spec"]
    assert selects(service["selector"], labels)
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(PORT, PORT)]


def kubelet_layout(folder: Path, data: dict[str, str]) -> None:
    """The files of a ConfigMap volume as the kubelet writes them: the real files in a
    timestamped hidden folder, a ``..data`` link to it, and a link per key."""
    stamped = folder / "..2026_01_01_00_00_00.000000001"
    stamped.mkdir(parents=True)
    for key, text in data.items():
        (stamped / key).write_text(text, encoding="utf-8")
        (folder / key).symlink_to(Path("..data") / key)
    (folder / "..data").symlink_to(stamped.name)


def test_the_configmap_pipelines_pass_lint(tmp_path: Path) -> None:
    data: dict[str, str] = one("ConfigMap")["data"]
    pipelines = [key for key in data if key.endswith(".lhp")]
    assert pipelines
    mounted = tmp_path / "pipelines"
    kubelet_layout(mounted, data)
    out, err = io.StringIO(), io.StringIO()
    code = run_lint([str(mounted)], strict=True, stdout=out, stderr=err)
    # Each file once: the links and the timestamped folder name the same files.
    assert (code, out.getvalue(), err.getvalue()) == (
        0,
        f"no problems in {len(pipelines)} file{'s' * (len(pipelines) > 1)}\n",
        "",
    )
