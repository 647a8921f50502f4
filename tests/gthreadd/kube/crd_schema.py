"""The CRDs' openAPIV3Schema as JSON Schema validators: what an API server would accept."""

import jsonschema

from gthreadd.kube.crds import crds


def json_schema(node):
    """openAPIV3Schema -> JSON Schema, for validating examples here: `nullable` becomes a null type."""
    if isinstance(node, list):
        return [json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes") and k != "nullable"}
    if node.get("properties") is not None and "properties" in out:
        out["properties"] = {k: json_schema(v) for k, v in node["properties"].items()}
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def validator(file: str = "models.yaml") -> jsonschema.Draft7Validator:
    schema = crds()[file]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(json_schema(schema))


def model_validator() -> jsonschema.Draft7Validator:
    return validator("models.yaml")
