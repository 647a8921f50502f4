"""The project's CRDs on a real kube-apiserver (tests/kube_env.py): every seed example is accepted
and a varied corpus of Models the daemon refuses is refused at `kubectl apply --dry-run=server`,
each verdict checked against the daemon's own validation. The rule the schema language of this
server cannot say (a CEL rule: 1.25+) is named, and left to the daemon (ConfigValid=False)."""

import copy
import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from gthreadd.spec.resource import ModelResource
from tests.gthreadd.kube.test_crds import seed_models

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
VALID = {"apiVersion": "greenthread.ai/v1alpha1", "kind": "Model", "metadata": {"name": "m", "namespace": "default"},
         "spec": {"modelName": "org/model"}}
BAD = [
    ("dtype", {"dtype": "int3"}), ("replicas", {"replicas": -1}), ("tensorParallelSize", {"tensorParallelSize": "two"}),
    ("tensorParallelSize", {"tensorParallelSize": 3}), ("tensorParallelSize", {"tensorParallelSize": 16}),
    ("parallelism.tensor", {"parallelism": {"tensor": 6}}), ("loadFormat", {"loadFormat": "pickle"}),
    ("endpoints", {"endpoints": ["telepathy"]}), ("fairness.popular", {"fairness": {"popular": "very"}}),
    ("sleep.idleTimeout", {"sleep": {"idleTimeout": "-5s"}}),
    ("sleep.drainTimeout", {"sleep": {"drainTimeout": "ten minutes"}}), ("sleep.level", {"sleep": {"level": 3}}),
    ("gpuMemoryUtilization", {"gpuMemoryUtilization": "1.5"}), ("gpuMemoryUtilization", {"gpuMemoryUtilization": "high"}),
    ("gpuMemoryUtilization", {"gpuMemoryUtilization": "0"}), ("kvCache.maxSize", {"kvCache": {"maxSize": "150%"}}),
    ("lora.maxRank", {"lora": {"maxRank": 0}}), ("modelType", {"modelType": "video"}), ("modelName", {"modelName": ""}),
    ("quantization", {"quantization": "int2"}),
]
CEL_ONLY = ("tensorParallelSize vs parallelism.tensor", {"tensorParallelSize": 2, "parallelism": {"tensor": 4}})
"""Refused by the daemon, said by the CRD as a CEL rule only: accepted by a 1.20 server."""


@pytest.fixture(scope="module")
def cluster(control_plane):
    applied = control_plane.apply_crds(DEPLOY / "crds")
    assert applied.returncode == 0, applied.stderr
    waited = control_plane.kubectl("wait", "--for=condition=Established", "crd/models.greenthread.ai", "--timeout=60s")
    assert waited.returncode == 0, waited.stderr
    return control_plane


def dry_run(cluster, model: dict):
    return cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=json.dumps(model))


def with_spec(spec: dict) -> dict:
    model = copy.deepcopy(VALID)
    model["spec"] |= spec
    return model


def refused_by_daemon(model: dict) -> bool:
    try:
        ModelResource.model_validate(model)
    except ValidationError:
        return True
    return False


@pytest.mark.parametrize("example", seed_models(), ids=lambda m: m["metadata"]["name"])
def test_every_seed_example_is_accepted(cluster, example):
    example = {**example, "metadata": {**example["metadata"], "namespace": "default"}}
    result = dry_run(cluster, example)
    assert result.returncode == 0, result.stderr


def test_the_models_the_daemon_refuses_are_refused_at_apply(cluster):
    verdicts = {}
    for field, spec in BAD + [CEL_ONLY]:
        model = with_spec(spec)
        assert refused_by_daemon(model), f"{field}: the corpus holds only Models the daemon refuses"
        result = dry_run(cluster, model)
        verdicts[field + " " + json.dumps(spec)] = (result.returncode != 0, result.stderr.strip())
    refused = [k for k, (no, _) in verdicts.items() if no]
    print(f"refused at apply: {len(refused)} of {len(verdicts)}")
    for key, (no, why) in verdicts.items():
        print(f"  {'refused ' if no else 'ACCEPTED'} {key}: {why[:160]}")
    assert all(no for no, _ in list(verdicts.values())[:-1]), "every rule the schema says is enforced"
    assert not verdicts[CEL_ONLY[0] + " " + json.dumps(CEL_ONLY[1])][0], \
        "a 1.20 server runs no CEL: if it refuses now, it does, and this test should say so"
    assert len(refused) >= 17


def test_an_unknown_field_is_refused_with_strict_validation(cluster):
    result = dry_run(cluster, with_spec({"colour": "red"}))
    assert result.returncode != 0 and "colour" in result.stderr, result.stderr
