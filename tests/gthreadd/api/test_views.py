"""The views: a model's state from its units' states (the one vocabulary, ModelState), the
`/<name>/status` JSON, and the rows of `gthread get gpus`."""

import pytest

from gthreadd.api.views import engine_state, gpu_objects, model_object, sidecar_status
from gthreadd.runtime.served_model import ServedModel
from gthreadd.spec.resource import ModelState
from scheduler.fairness import Scheduler, SchedulerConfig
from scheduler.inventory import Device
from scheduler.snapshot import SchedulerSnapshot
from scheduler.units import Policy, Unit, UnitId, UnitState
from tests.fake_engine import FakeEngine
from tests.gthreadd.runtime.test_served_model import desired

GIB = 2**30


def host(*states: UnitState, devices=None) -> SchedulerSnapshot:
    scheduler = Scheduler(devices or [Device(0, "GPU-0", "NVIDIA-TEST", 80 * GIB, 80 * GIB)], SchedulerConfig())
    for replica, state in enumerate(states):
        unit = scheduler.units[UnitId("m", replica)] = Unit(UnitId("m", replica), Policy(memory_fraction=0.25))
        unit.state, unit.devices = state, (0,) if state != UnitState.asleep else ()
    return scheduler.snapshot()


@pytest.mark.parametrize("states, expected", [
    ((), ModelState.pending),
    ((UnitState.cold,), ModelState.pending),
    ((UnitState.booting,), ModelState.starting),
    ((UnitState.awake,), ModelState.serving),
    ((UnitState.draining,), ModelState.draining),
    ((UnitState.sleeping,), ModelState.draining),
    ((UnitState.asleep,), ModelState.sleeping),
    ((UnitState.waking,), ModelState.waking),
    ((UnitState.restarting,), ModelState.restarting),
    ((UnitState.failed,), ModelState.failed),
    ((UnitState.asleep, UnitState.awake), ModelState.serving),
    ((UnitState.failed, UnitState.booting), ModelState.starting),
    ((UnitState.restarting, UnitState.failed), ModelState.restarting),
])
def test_a_models_state_comes_from_its_units(tmp_path, states, expected):
    assert engine_state(ServedModel(desired(tmp_path), FakeEngine), host(*states)) == expected


def test_every_state_a_model_can_be_in_is_in_the_vocabulary():
    assert {s.value for s in ModelState} == {"pending", "starting", "serving", "waking", "draining", "sleeping",
                                             "restarting", "failed"}


def test_the_status_json_is_seed_002s_sidecar_shape(tmp_path):
    body = sidecar_status(ServedModel(desired(tmp_path), FakeEngine), host(UnitState.awake, UnitState.asleep))
    replicas, host_memory = body.pop("replicas"), body.pop("hostMemory")
    assert body == {"model": "m", "state": "serving", "bootReady": False, "phase": "Pending",
                    "queue": {"inFlight": 0, "queued": 0, "paused": 0, "barriered": False},
                    "reason": "Pending", "message": "waiting for a device"}
    assert replicas == [
        {"replica": 0, "rung": "awake", "state": "awake", "hostBytes": 0, "deviceBytes": {"0": 20 * GIB}, "reason": ""},
        {"replica": 1, "rung": "asleep", "state": "asleep", "hostBytes": 0, "deviceBytes": {}, "reason": ""},
    ], "each replica's rung and what it holds"
    assert host_memory == {"limitBytes": 0, "usedBytes": 0, "otherBytes": 0, "sleepingEngines": 1,
                           "maxSleepingEngines": 0}


def test_gpu_rows_say_which_devices_hold_a_model_and_what_is_free():
    devices = [Device(0, "GPU-0", "NVIDIA-A100", 80 * GIB, 80 * GIB), Device(1, "GPU-1", "NVIDIA-A100", 80 * GIB,
               80 * GIB), Device(2, "GPU-2", "NVIDIA-A100", 80 * GIB, 80 * GIB, mig=True)]
    rows = gpu_objects(host(UnitState.awake, devices=devices))
    assert [(r["index"], r["mode"], r["health"]) for r in rows] == [
        (0, "inference", "Healthy"), (1, "idle", "Healthy"), (2, "mig", "Healthy")]
    assert [r["available"] for r in rows[:2]] == [60 * GIB, 80 * GIB]
    assert rows[0]["name"].startswith("gpu-") and rows[0]["name"].endswith("-0")


def test_a_model_whose_engine_a_budget_stopped_is_sleeping_and_its_replica_says_stopped(tmp_path):
    scheduler = Scheduler([Device(0, "GPU-0", "NVIDIA-TEST", 80 * GIB, 80 * GIB)], SchedulerConfig())
    unit = scheduler.units[UnitId("m", 0)] = Unit(UnitId("m", 0), Policy(memory_fraction=0.25), booted=True)
    unit.reason = "stopped: host memory for n, the least recently used"
    snapshot = scheduler.snapshot()
    assert engine_state(ServedModel(desired(tmp_path), FakeEngine), snapshot) == ModelState.sleeping
    (replica,) = sidecar_status(ServedModel(desired(tmp_path), FakeEngine), snapshot)["replicas"]
    assert (replica["rung"], replica["state"], replica["reason"]) == ("stopped", "cold", unit.reason)


def test_a_restarting_model_says_why_and_when_it_is_tried_again(tmp_path):
    """Waiting out a backoff is not `failed` (what alerts fire on): the cause and the next try."""
    from dataclasses import replace
    from datetime import datetime, timezone

    scheduler = Scheduler([Device(0, "GPU-0", "NVIDIA-TEST", 80 * GIB, 80 * GIB)], SchedulerConfig())
    unit = scheduler.units[UnitId("m", 0)] = Unit(UnitId("m", 0), Policy(), booted=True)
    unit.state, unit.retry_at = UnitState.restarting, 101.0
    unit.reason = "the vLLM engine process EngineCore (pid 9810) was killed by SIGKILL"
    wall = datetime(2026, 12, 6, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    snapshot = replace(scheduler.snapshot(), now=100.0, wall_offset=wall - 100.0)  # the loop's clock: 100.0 at `wall`
    model = ServedModel(desired(tmp_path), FakeEngine)
    body = sidecar_status(model, snapshot)
    assert (body["state"], body["reason"]) == ("restarting", "Restarting")
    assert body["message"] == f"replica 0: {unit.reason}; next try at 12:00:01"
    (replica,) = body["replicas"]
    assert (replica["state"], replica["retryAt"]) == ("restarting", "2026-12-06T12:00:01Z")
    assert model_object(model, snapshot, "http://h")["status"]["readyReplicas"] == 0
    unit.reason = "restart due, waiting for capacity: other models hold the memory"
    due = sidecar_status(model, replace(scheduler.snapshot(), now=102.0, wall_offset=wall - 100.0))
    assert due["message"] == f"replica 0: {unit.reason}", "a try in the past is not announced"
