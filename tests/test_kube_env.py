"""The real API server of tests/kube_env.py is faithful before any verdict of it is trusted: a
custom resource's empty strings, zeros, false and empty lists and maps are stored as sent (Debian's
1.20.2 tree under Go 1.19 judged every zero value null until tests/kube_env.py fixed it), and the
project's CRDs are established on it."""

import json
from pathlib import Path

import yaml

DEPLOY = Path(__file__).parents[1] / "deploy"


def test_zero_values_in_a_custom_resource_are_stored_as_sent(control_plane):
    applied = control_plane.apply_crds(DEPLOY / "crds" / "models.yaml")
    assert applied.returncode == 0, applied.stderr
    control_plane.kubectl("wait", "--for=condition=Established", "crd/models.greenthread.ai", "--timeout=60s")
    model = yaml.safe_load((Path(__file__).parent / "fixtures/seeds/000_full_spec.yaml").read_text())
    model["metadata"]["namespace"] = "default"
    model["spec"] |= {"extraArgs": [], "nodeSelector": {}, "lora": {**model["spec"]["lora"], "cacheDir": ""}}
    created = control_plane.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(model))
    assert created.returncode == 0, created.stderr
    stored = json.loads(control_plane.kubectl("get", "model", model["metadata"]["name"], "-o", "json").stdout)
    for field in ("quantization", "extraArgs", "nodeSelector", "resources"):
        assert stored["spec"][field] == model["spec"][field], field
    assert stored["spec"]["kvCache"] == {"enabled": False, "maxSize": ""}
    assert stored["spec"]["fairness"]["popular"] is False and stored["spec"]["lora"]["cacheDir"] == ""
