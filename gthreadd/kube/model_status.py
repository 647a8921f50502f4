"""A Model CR's status, from the daemon that writes it and the Leases of all its replicas.

Pure functions: the agent feeds in what it read and writes what comes out, only when it differs
from what the API server holds.
"""

from gthreadd.kube.leases import micro_time
from gthreadd.spec.resource import ModelState

SERVICE_PORT = 80
_BOOTED = {ModelState.serving, ModelState.sleeping, ModelState.waking, ModelState.draining}


def service_url(namespace: str, name: str) -> str:
    """The selector-less Service the shim publishes for every served Model."""
    return f"http://{name}.{namespace}.svc/{name}/v1"


def cluster_status(cr: dict, local: dict, holders: dict[str, str], states: dict[str, str]) -> dict:
    """`local` is the writing node's daemon object for the Model; `holders` maps each held Lease
    to its node and `states` to the replica state its holder last renewed it with."""
    meta, local_status = cr["metadata"], local.get("status") or {}
    counted = list(states.values())
    status = {
        "phase": local_status.get("phase", "Pending"),
        "url": service_url(meta["namespace"], meta["name"]),
        "replicas": (cr.get("spec") or {}).get("replicas", 1),
        "readyReplicas": sum(s in _BOOTED for s in counted),
        "servingReplicas": counted.count(ModelState.serving),
        "sleepingReplicas": counted.count(ModelState.sleeping),
        "node": ",".join(sorted(set(holders.values()))),
        "gpus": local_status.get("gpus", ""),
        "observedGeneration": meta.get("generation"),
        "conditions": [_config_valid(True, "Valid", "the spec passed the daemon's validation",
                                     (cr.get("status") or {}).get("conditions"))]
        + [c for c in local_status.get("conditions", []) if c.get("type") != "ConfigValid"],
    }
    for key in ("servingMemoryPerGPU", "memory", "conversion", "distribution"):
        if key in local_status:
            status[key] = local_status[key]
    return status


def invalid_status(cr: dict, message: str) -> dict:
    """A Model no daemon accepts: Failed, with the field at fault in ConfigValid's message."""
    previous = cr.get("status") or {}
    return {**previous, "phase": "Failed", "observedGeneration": cr["metadata"].get("generation"),
            "conditions": [_config_valid(False, "InvalidSpec", message, previous.get("conditions"))]}


def _config_valid(ok: bool, reason: str, message: str, previous: list | None) -> dict:
    status = "True" if ok else "False"
    old = next((c for c in previous or [] if c.get("type") == "ConfigValid"), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status else micro_time()[:19] + "Z"
    return {"type": "ConfigValid", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since}


def differs(current: dict | None, wanted: dict) -> bool:
    """Whether writing `wanted` would change anything (timestamps of unchanged conditions aside)."""
    return _comparable(current or {}) != _comparable(wanted)


def _comparable(status: dict) -> dict:
    return {**status, "conditions": sorted(
        ({k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions", [])),
        key=lambda c: c.get("type", ""))}
