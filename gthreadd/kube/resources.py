"""The Kubernetes objects the shim reads and writes: lightkube classes for the two CRDs, and the
names and labels that tie a Lease, an EndpointSlice or an Event to its Model."""

import hashlib

from lightkube.generic_resource import create_global_resource, create_namespaced_resource

from gthreadd.kube.crds import GROUP, VERSION

Model = create_namespaced_resource(GROUP, VERSION, "Model", "models")
Gpu = create_global_resource(GROUP, VERSION, "GPU", "gpus")

FIELD_MANAGER = "gthread-kube"
MANAGED_BY = {"app.kubernetes.io/managed-by": FIELD_MANAGER}
MODEL_NAMESPACE_LABEL = "greenthread.ai/model-namespace"
MODEL_NAME_LABEL = "greenthread.ai/model"
REPLICA_LABEL = "greenthread.ai/replica"
STATE_ANNOTATION = "greenthread.ai/state"
"""On a Lease: what its holder's replica is doing (serving, sleeping, ...), renewed with it."""
FILE_PREFIX = "kube."
"""models.d files the shim owns: kube.<namespace>.<name>.yaml; any other file is left alone."""


def model_labels(namespace: str, name: str) -> dict[str, str]:
    return {**MANAGED_BY, MODEL_NAMESPACE_LABEL: namespace, MODEL_NAME_LABEL: name}


def lease_name(namespace: str, name: str, replica: int) -> str:
    return f"model-{namespace}-{name}-{replica}"


def slice_name(name: str, node: str) -> str:
    return f"{name}-{node}"[:253]


def model_file(namespace: str, name: str) -> str:
    return f"{FILE_PREFIX}{namespace}.{name}.yaml"


def event_name(model: str, node: str, reason: str, first: str) -> str:
    digest = hashlib.sha256(f"{node}/{reason}/{first}".encode()).hexdigest()[:12]
    return f"{model}.{digest}"
