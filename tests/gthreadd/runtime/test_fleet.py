"""The fleet: each desired state becomes scheduler events (added and edited Models upserted, a new
generation when engines must restart, deleted ones removed), engine operations on units with
their metrics and events, and the one registry where requests and supervision find an engine."""

from gthreadd.observe.metrics import Metrics
from gthreadd.runtime.fleet import Fleet
from gthreadd.spec.desired import DesiredModel, DesiredState
from gthreadd.spec.resource import ModelResource
from scheduler.inventory import Device
from scheduler.messages import ModelRemoved, ModelUpserted
from scheduler.units import UnitId
from tests.fake_engine import FakeEngine
from tests.e2e.daemon_process import metric_samples

GPU = [Device(0, "GPU-0", "NVIDIA-TEST", 80 * 2**30, 80 * 2**30)]


def desired(tmp_path, **models: dict) -> DesiredState:
    (tmp_path / "config.json").touch()
    return DesiredState(models={name: DesiredModel(ModelResource.model_validate({
        "apiVersion": "greenthread.ai/v1alpha1", "kind": "Model", "metadata": {"name": name},
        "spec": {"modelName": str(tmp_path), **spec}}), f"{name}.yaml") for name, spec in models.items()})


def fleet_with_events(tmp_path) -> tuple[Fleet, list]:
    events: list = []
    return Fleet(FakeEngine, GPU, events.append, tmp_path / "store"), events


def test_adds_edits_and_deletes_become_scheduler_events(tmp_path):
    fleet, events = fleet_with_events(tmp_path)
    fleet.apply(desired(tmp_path, a={}, b={"gpuMemoryUtilization": "0.5"}))
    assert [(type(e), e.model, e.generation) for e in events] == [(ModelUpserted, "a", 0), (ModelUpserted, "b", 0)]
    assert events[1].policy.memory_fraction == 0.5

    events.clear()
    fleet.apply(desired(tmp_path, a={"sleep": {"idleTimeout": "1m"}}, b={"gpuMemoryUtilization": "0.5"}))
    assert [(e.model, e.generation, e.policy.idle_timeout) for e in events] == [("a", 0, 60)], "a live edit"
    events.clear()
    fleet.apply(desired(tmp_path, a={"dtype": "float16"}, b={"gpuMemoryUtilization": "0.5"}))
    assert [(e.model, e.generation) for e in events] == [("a", 1)], "an engine edit: a new generation"

    events.clear()
    fleet.apply(desired(tmp_path, a={"dtype": "float16"}))
    assert events == [ModelRemoved("b")] and set(fleet.models) == {"a"}


async def test_engine_operations_are_timed_recorded_and_findable(tmp_path):
    metrics = Metrics()
    fleet = Fleet(FakeEngine, GPU, lambda event: None, tmp_path / "store", metrics=metrics)
    fleet.apply(desired(tmp_path, a={}))
    unit = UnitId("a", 0)
    assert fleet.engine(unit) is None, "no engine before a boot"
    await fleet.boot(unit, (0,))
    engine = fleet.engine(unit)
    assert engine is not None and engine.running and engine.config.devices == (0,)
    assert (await fleet.sleep(unit, 1)).held == (), "an engine with no processes holds nothing measurable"
    assert engine.asleep_level == 1
    await fleet.wake(unit, "pre-wake: due at 12s (periodic)")
    events = fleet.models["a"].events.to_json()
    assert [e["reason"] for e in events][-3:] == ["Started", "Slept", "Woke"]
    assert "awake (pre-wake: due at 12s (periodic)) in " in events[-1]["message"], "why it woke"
    from prometheus_client import generate_latest

    samples = metric_samples(generate_latest(metrics.registry).decode())
    for operation in ("boot", "sleep", "wake"):
        key = ("gthread_engine_operations_total", (("model", "a"), ("operation", operation), ("outcome", "ok")))
        assert samples[key] == 1


async def test_a_deleted_model_is_kept_until_its_engine_has_stopped(tmp_path):
    fleet, events = fleet_with_events(tmp_path)
    fleet.apply(desired(tmp_path, a={}))
    unit = UnitId("a", 0)
    await fleet.boot(unit, (0,))
    engine = fleet.engine(unit)
    fleet.apply(desired(tmp_path))
    assert "a" not in fleet.models and fleet.engine(unit) is engine, "still findable while it stops"
    await fleet.stop(unit)
    assert engine.stopped and fleet.engine(unit) is None


async def test_every_sleep_on_the_cpu_reports_the_memory_its_engine_still_holds(tmp_path):
    import os

    cpu = [Device(0, "cpu", "cpu", 16 * 2**30, 8 * 2**30)]
    fleet = Fleet(FakeEngine, cpu, lambda event: None, tmp_path / "store")
    fleet.apply(desired(tmp_path, a={}))
    unit = UnitId("a", 0)
    await fleet.boot(unit, (0,))
    fleet.engine(unit).pids = [os.getpid()]  # this process stands in for the engine's
    awake = await fleet.wake(unit)
    assert awake.host > 0 and awake.peak == 0, "awake: its host memory measured; a peak only after a boot"
    asleep = await fleet.sleep(unit, 1)
    ((device, held),) = asleep.held
    assert device == 0 and held > 0 and asleep.host > 0, "measured, as the OS counts it (USS)"
    assert "asleep at level 1 (KV cache freed, weights kept)" in fleet.models["a"].events.to_json()[-1]["message"]
    await fleet.wake(unit)
    ((_, residue),) = (await fleet.sleep(unit, 2)).held
    assert residue > 0, "level 2 frees the weights, and its process still holds its residue: counted too"
    await fleet.wake(unit)
    assert "awake, its weights read again in " in fleet.models["a"].events.to_json()[-1]["message"]
