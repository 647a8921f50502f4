"""The CustomResourceDefinitions of `models.greenthread.ai` and `gpus.greenthread.ai`, generated:
the Model's openAPIV3Schema is the daemon's own pydantic spec (spec/resource.py) made structural,
so what the API server accepts and what the daemon validates cannot drift.

    python -m gthreadd.kube.crds deploy/crds      # rewrites deploy/crds/*.yaml

tests/gthreadd/kube/test_crds.py fails when the committed files differ from what this generates.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from gthreadd.spec.resource import API_VERSION, ModelResource

GROUP, VERSION = API_VERSION.split("/")

# kubectl get models: seed 000's columns (NAMESPACE and NAME are kubectl's own).
MODEL_COLUMNS = [
    ("Phase", "string", ".status.phase"),
    ("Replicas", "integer", ".spec.replicas"),
    ("Serving", "integer", ".status.servingReplicas"),
    ("Sleeping", "integer", ".status.sleepingReplicas"),
    ("Node", "string", ".status.node"),
    ("GPUs", "string", ".status.gpus"),
    ("VRAM/GPU", "string", ".status.memory.servingHuman"),
    ("URL", "string", ".status.url"),
]
# kubectl get gpus: seed 002's columns.
GPU_COLUMNS = [
    ("Node", "string", ".spec.node"),
    ("Index", "integer", ".spec.index"),
    ("Product", "string", ".spec.product"),
    ("Mode", "string", ".status.mode"),
    ("Health", "string", ".status.health"),
    ("Available", "integer", ".status.available"),
]
GPU_SCHEMA = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
        "spec": {"type": "object", "required": ["node", "index", "product"], "properties": {
            "node": {"type": "string"}, "index": {"type": "integer", "minimum": 0}, "uuid": {"type": "string"},
            "product": {"type": "string"}, "totalBytes": {"type": "integer", "minimum": 0}}},
        "status": {"type": "object", "properties": {
            "mode": {"type": "string", "enum": ["idle", "inference", "mig"]},
            "health": {"type": "string", "enum": ["Healthy", "Unhealthy"]},
            "available": {"type": "integer", "minimum": 0}}},
    },
}


def structural(schema: dict, defs: dict) -> dict:
    """A pydantic JSON schema node as a structural openAPIV3Schema node: $refs inlined, `X or
    null` as `nullable`, string-or-number as int-or-string, `const` as a one-value enum; titles,
    defaults (the daemon applies its own) and `additionalProperties: false` (the API server prunes
    unknown fields instead) dropped."""
    if "$ref" in schema:
        return structural({**defs[schema["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in schema.items()
                                                                         if k != "$ref"}}, defs)
    variants = schema.get("anyOf")
    if variants is not None:
        kept = [v for v in variants if v.get("type") != "null"]
        if {v.get("type") for v in kept} <= {"string", "integer", "number"} and len(kept) > 1:
            # A quantity (`8Gi` or 8): Kubernetes' own int-or-string, as its resource limits are.
            node = {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
            return {**node, "nullable": True} if len(kept) < len(variants) else node
        if len(kept) != 1:
            raise ValueError(f"no structural form for anyOf {variants}")
        node = structural({**kept[0], **{k: v for k, v in schema.items() if k != "anyOf"}}, defs)
        return {**node, "nullable": True} if len(kept) < len(variants) else node
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("title", "default", "$defs") or (key == "additionalProperties" and value is False):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value, defs)
        else:
            out[key] = value
    if "properties" in out:
        out.setdefault("type", "object")
    elif "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def model_schema() -> dict:
    source = ModelResource.model_json_schema(by_alias=True, mode="validation")
    schema = structural(source, source.get("$defs", {}))
    # Kubernetes owns metadata's schema; a CRD may not describe it beyond "an object".
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def _crd(plural: str, kind: str, scope: str, schema: dict, columns: list, short: list[str]) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "shortNames": short,
                      "categories": ["greenthread"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": schema},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": n, "type": t, "jsonPath": p} for n, t, p in columns],
            }],
        },
    }


def crds() -> dict[str, dict]:
    """File name -> CRD."""
    return {
        "models.yaml": _crd("models", "Model", "Namespaced", model_schema(), MODEL_COLUMNS, ["mdl"]),
        "gpus.yaml": _crd("gpus", "GPU", "Cluster", GPU_SCHEMA, GPU_COLUMNS, ["gpu"]),
    }


def render(crd: dict) -> str:
    header = "# Generated by `python -m gthreadd.kube.crds deploy/crds` from gthreadd's own spec: do not edit.\n"
    return header + yaml.safe_dump(crd, sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    for name, crd in crds().items():
        (args.directory / name).write_text(render(crd))
        print(args.directory / name, file=sys.stderr)


if __name__ == "__main__":
    main()
