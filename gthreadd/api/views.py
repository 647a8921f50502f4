"""Views of a served model: the Model object with its status, the `/<name>/status` JSON, and the
GPU objects of `gthread get gpus`."""

import socket
from datetime import datetime, timezone

from gthreadd.spec.resource import (DistributionStatus, MemoryStatus, ModelResource, ModelState, ModelStatus, Phase,
                                   ReplicaStatus)
from gthreadd.runtime.served_model import ServedModel
from gthreadd.spec.byte_size import human_bytes
from scheduler.inventory import device_object_name
from scheduler.snapshot import HostView, SchedulerSnapshot, UnitView
from scheduler.units import UnitState

# A model's state from the states of its units (the first that applies).
_STATES = [
    ({UnitState.awake}, ModelState.serving),
    ({UnitState.waking}, ModelState.waking),
    ({UnitState.draining, UnitState.sleeping}, ModelState.draining),
    ({UnitState.asleep}, ModelState.sleeping),
    ({UnitState.booting}, ModelState.starting),
    ({UnitState.restarting}, ModelState.restarting),
    ({UnitState.failed}, ModelState.failed),
]


_NOT_READY = (UnitState.cold, UnitState.restarting, UnitState.failed)
"""A replica that has booted but has no engine now."""


def engine_state(model: ServedModel, scheduler: SchedulerSnapshot) -> ModelState:
    """A stopped unit (a budget stopped its engine) counts as asleep: a request wakes it, colder."""
    states = {UnitState.asleep if u.rung == "stopped" else u.state for u in scheduler.units_of(model.name)}
    for group, state in _STATES:
        if states & group:
            return state
    return ModelState.failed if model.phase == Phase.failed else ModelState.pending


def model_object(model: ServedModel, scheduler: SchedulerSnapshot, base_url: str) -> dict:
    units = scheduler.units_of(model.name)
    claiming = [u for u in units if u.claiming]
    claimed = max((claim for u in claiming for claim in u.claims.values()), default=None)
    per_gpu = max(model.measured_memory.values(), default=None) or claimed
    node = socket.gethostname()
    distribution = None
    if model.weights_on_host:
        distribution = DistributionStatus(available_on_nodes=[node], staging_tier={node: model.staging_tier})
    status = ModelStatus(
        phase=model.phase,
        url=f"{base_url}/{model.name}/v1",
        serving_memory_per_gpu=per_gpu,
        memory=MemoryStatus(serving_human=human_bytes(per_gpu)) if per_gpu else None,
        replicas=model.resource.spec.replicas,
        ready_replicas=sum(u.booted and u.state not in _NOT_READY for u in units),
        serving_replicas=sum(u.state == UnitState.awake for u in units),
        sleeping_replicas=sum(u.state == UnitState.asleep for u in units),
        node=node,
        gpus=",".join(str(i) for u in claiming for i in u.devices if not scheduler.devices[i].is_cpu),
        conversion=model.conversion_status,
        distribution=distribution,
        conditions=list(model.conditions.values()),
        lora_adapters=sorted(model.adapters),
        kv_cache_bytes=sum(model.kv_cache_grants.values()) if model.resource.spec.kv_cache.enabled else None,
        replica_status=[replica_status(model, u, scheduler) for u in sorted(units, key=lambda u: u.id)],
        source_file=model.source,
    )
    resource = ModelResource(
        api_version=model.resource.api_version, kind=model.resource.kind,
        metadata=model.resource.metadata, spec=model.resource.spec, status=status,
    )
    return resource.model_dump(mode="json", by_alias=True, exclude_none=True)


def replica_status(model: ServedModel, unit: UnitView, scheduler: SchedulerSnapshot) -> ReplicaStatus:
    retry_at = None
    if unit.state == UnitState.restarting:
        retry_at = datetime.fromtimestamp(unit.retry_at + scheduler.wall_offset, timezone.utc)
    engine = model.engines.get(unit.id.replica)
    pids = engine.processes() if engine is not None else []
    return ReplicaStatus(replica=unit.id.replica, rung=unit.rung, state=unit.state.value,
                         sleep_level=unit.level or None, host_bytes=unit.host_bytes,
                         device_bytes={str(i): b for i, b in unit.claims.items()}, reason=unit.reason,
                         retry_at=retry_at, pid=pids[0] if pids else None)


def host_object(host: HostView) -> dict:
    """The host memory budget: what engines (awake and asleep), the host tier and the daemon hold
    against the limit, and the sleeping engines against maxSleepingEngines (0: no limit)."""
    return {"limitBytes": host.limit, "usedBytes": host.used, "otherBytes": host.other,
            "sleepingEngines": host.asleep, "maxSleepingEngines": host.max_sleeping}


def sidecar_status(model: ServedModel, scheduler: SchedulerSnapshot) -> dict:
    """The JSON of `GET /<name>/status` (seeds 002), plus phase and the reason when not ready."""
    units = scheduler.units_of(model.name)
    body = {
        "model": model.name,
        "state": engine_state(model, scheduler),
        "bootReady": any(u.booted for u in units),
        "phase": model.phase.value,
        "queue": {
            "inFlight": sum(u.in_flight for u in units),
            "queued": scheduler.queued.get(model.name, 0),
            "paused": sum(u.paused for u in units),
            "barriered": any(u.state in (UnitState.draining, UnitState.sleeping) for u in units),
        },
    }
    replicas = [replica_status(model, u, scheduler) for u in sorted(units, key=lambda u: u.id)]
    body["replicas"] = [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in replicas]
    body["hostMemory"] = host_object(scheduler.host)
    if model.read_path is not None:
        body["weights"] = {"readPath": model.read_path.value, "bytesRead": dict(model.bytes_read)}
    ready = model.ready_condition
    if ready.status != "True":
        body["reason"] = ready.reason
        body["message"] = ready.message
    unschedulable = [u.reason for u in units if u.state == UnitState.unschedulable and u.reason]
    if unschedulable and model.phase != Phase.failed:
        body["reason"], body["message"] = "Unschedulable", unschedulable[0]
    if body["state"] == ModelState.restarting:
        unit = next(u for u in units if u.state == UnitState.restarting)
        retry_at = next(r.retry_at for r in replicas if r.replica == unit.id.replica)
        due = unit.retry_at <= scheduler.now  # its reason then says what it waits for
        when = "" if due else f"; next try at {retry_at:%H:%M:%S}"
        body["reason"], body["message"] = "Restarting", f"replica {unit.id.replica}: {unit.reason}{when}"
    return body


def gpu_objects(scheduler: SchedulerSnapshot) -> list[dict]:
    """`kubectl get gpus` rows (seeds 002): MODE is inference while a model holds the device, mig
    for a MIG-enabled GPU, which gthreadd does not place on."""
    node = socket.gethostname()
    free = scheduler.free
    held = {i for u in scheduler.units if u.claiming for i in u.devices}
    sleeping = {i: sum(u.claims.get(i, 0) for u in scheduler.units if not u.claiming) for i in scheduler.devices}
    return [{
        "name": device_object_name(node, d.index, d.product),
        "node": node, "index": d.index, "uuid": d.uuid, "product": d.product,
        "mode": "mig" if d.mig else "inference" if d.index in held else "idle",
        "health": "Healthy" if d.healthy else "Unhealthy",
        "available": max(0, free[d.index]),
        "totalBytes": d.total_bytes, "capacityBytes": d.capacity_bytes,
        "claimedBytes": scheduler.claimed.get(d.index, 0) - sleeping[d.index], "sleepingBytes": sleeping[d.index],
    } for d in scheduler.devices.values()]


def summary_line(models: list[ServedModel], scheduler: SchedulerSnapshot) -> str:
    """One line for `systemctl status` (STATUS=): models by state, and requests waiting."""
    counts: dict[str, int] = {}
    for model in models:
        state = engine_state(model, scheduler)
        counts[state] = counts.get(state, 0) + 1
    queued = sum(scheduler.queued.values())
    states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return f"{len(models)} model{'s' if len(models) != 1 else ''}{': ' + states if states else ''}; {queued} queued"
