"""The CRDs in deploy/crds: generated from the daemon's own spec (no drift), structural as the API
server requires, accepting every seed example and rejecting what the daemon rejects."""

from pathlib import Path

import pytest
import yaml

from gthreadd.kube.crds import crds, render
from tests.gthreadd.kube.crd_schema import model_validator

ROOT = Path(__file__).resolve().parents[3]
SEEDS = sorted((ROOT / "tests" / "fixtures" / "seeds").glob("*.yaml"))
FORBIDDEN = {"$ref", "allOf", "oneOf", "not", "title", "definitions", "$defs"}


def seed_models() -> list[dict]:
    return [doc for path in SEEDS for doc in yaml.safe_load_all(path.read_text())
            if isinstance(doc, dict) and doc.get("kind") == "Model"]


@pytest.mark.parametrize("name", ["models.yaml", "gpus.yaml"])
def test_the_committed_crds_are_what_the_spec_generates(name):
    assert (ROOT / "deploy" / "crds" / name).read_text() == render(crds()[name]), \
        "run: python -m gthreadd.kube.crds deploy/crds"


@pytest.mark.parametrize("name", ["models.yaml", "gpus.yaml"])
def test_the_schemas_are_structural(name):
    def walk(node, path):
        assert not FORBIDDEN & set(node), f"{path}: {FORBIDDEN & set(node)}"
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}[{key}]")

    version = crds()[name]["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    walk(schema, "")
    assert schema["properties"]["metadata"] == {"type": "object"}, "metadata's schema is Kubernetes'"
    assert version["subresources"] == {"status": {}}


def test_every_seed_example_is_accepted():
    validator = model_validator()
    examples = seed_models()
    assert len(examples) >= 5
    for example in examples:
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(example)]
        assert not errors, (example["metadata"]["name"], errors)


@pytest.mark.parametrize("spec, field", [
    ({"dtype": "int3"}, "dtype"),
    ({"replicas": -1}, "replicas"),
    ({"tensorParallelSize": "two"}, "tensorParallelSize"),
    ({"loadFormat": "pickle"}, "loadFormat"),
    ({"endpoints": ["telepathy"]}, "endpoints"),
    ({"fairness": {"popular": "very"}}, "popular"),
    ({"sleep": {"idleTimeout": "-5s"}}, "idleTimeout"),
    ({"sleep": {"drainTimeout": "ten minutes"}}, "drainTimeout"),
    ({"tensorParallelSize": 3}, "tensorParallelSize"),
    ({"parallelism": {"tensor": 16}}, "parallelism"),
    ({"gpuMemoryUtilization": "1.5"}, "gpuMemoryUtilization"),
    ({"gpuMemoryUtilization": "high"}, "gpuMemoryUtilization"),
    ({"gpuMemoryUtilization": "0"}, "gpuMemoryUtilization"),
    ({"kvCache": {"maxSize": "150%"}}, "maxSize"),
])
def test_what_the_daemon_rejects_the_api_server_rejects_too(spec, field):
    model = {"apiVersion": "greenthread.ai/v1alpha1", "kind": "Model", "metadata": {"name": "m"},
             "spec": {"modelName": "org/model", **spec}}
    errors = list(model_validator().iter_errors(model))
    assert errors and any(field in ".".join(map(str, e.path)) for e in errors), [e.message for e in errors]


@pytest.mark.parametrize("spec", [
    {"gpuMemoryUtilization": "0.90"}, {"gpuMemoryUtilization": ".5"}, {"gpuMemoryUtilization": "1"},
    {"gpuMemoryUtilization": "1.0"}, {"sleep": {"idleTimeout": "1h30m", "drainTimeout": "500ms"}},
    {"sleep": {"idleTimeout": "1.5s"}}, {"kvCache": {"maxSize": "16Gi"}}, {"kvCache": {"maxSize": "20%"}},
    {"kvCache": {"maxSize": ""}}, {"tensorParallelSize": 8, "parallelism": {"tensor": 8}},
])
def test_what_the_daemon_accepts_the_api_server_accepts_too(spec):
    from gthreadd.spec.resource import ModelResource

    model = {"apiVersion": "greenthread.ai/v1alpha1", "kind": "Model", "metadata": {"name": "m"},
             "spec": {"modelName": "org/model", **spec}}
    ModelResource.model_validate(model)
    assert not [e.message for e in model_validator().iter_errors(model)]


def test_the_cross_field_rule_is_a_cel_rule_that_agrees_with_the_daemon():
    """1.20 cannot run CEL (1.25+ can): the rule is evaluated here with a CEL library instead."""
    import celpy
    from pydantic import ValidationError

    from gthreadd.spec.resource import ModelSpec

    spec_schema = crds()["models.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    (rule,) = spec_schema["x-kubernetes-validations"]
    env = celpy.Environment()
    program = env.program(env.compile(rule["rule"]))
    for spec in ({"tensorParallelSize": 2, "parallelism": {"tensor": 4}}, {"tensorParallelSize": 2},
                 {"parallelism": {"tensor": 2}}, {"tensorParallelSize": 4, "parallelism": {"tensor": 4, "pipeline": 2}},
                 {"parallelism": {"pipeline": 2}, "tensorParallelSize": 8}, {}):
        spec = {"modelName": "org/model", **spec}
        try:
            ModelSpec.model_validate(spec)
            daemon = True
        except ValidationError:
            daemon = False
        assert bool(program.evaluate({"self": celpy.json_to_cel(spec)})) == daemon, spec
    for example in seed_models():
        assert program.evaluate({"self": celpy.json_to_cel(example["spec"])}), example["metadata"]["name"]


def test_printer_columns_are_the_seeds_tables():
    models = crds()["models.yaml"]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"].upper() for c in models] == ["PHASE", "REPLICAS", "SERVING", "SLEEPING", "NODE", "GPUS",
                                                   "VRAM/GPU", "URL"]
    gpus = crds()["gpus.yaml"]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"].upper() for c in gpus] == ["NODE", "INDEX", "PRODUCT", "MODE", "HEALTH", "AVAILABLE"]
    assert crds()["gpus.yaml"]["spec"]["scope"] == "Cluster" and crds()["models.yaml"]["spec"]["scope"] == "Namespaced"


def test_every_manifest_in_deploy_validates_against_kubernetes_own_schemas():
    """kubernetes-validate carries the API server's OpenAPI schemas: strict, so a misspelt field
    fails here rather than on a cluster."""
    import kubernetes_validate

    kustomization = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())
    files = [ROOT / "deploy" / name for name in kustomization["resources"]]
    top = {p.name for p in (ROOT / "deploy").glob("*.yaml")}
    assert top == {p.name for p in files if p.parent.name == "deploy"} | {"kustomization.yaml"}, \
        "every manifest at deploy/'s top is one the kustomization applies"
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(doc, "1.33", strict=True)
