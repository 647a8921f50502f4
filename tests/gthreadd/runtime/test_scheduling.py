"""The scheduler's effects layer with a recording UnitOps double (RecordingOps) and a fake driver
reading: admission, and the free-memory check before a boot."""

import asyncio

import pytest

from gthreadd.runtime.scheduling import Rejected, SchedulerLoop
from scheduler.fairness import Scheduler, SchedulerConfig
from scheduler.inventory import Device
from scheduler.messages import ModelUpserted, SleepRequested
from scheduler.units import Policy, UnitId, UnitState

GIB = 2**30


class StubEngine:
    """Test double for an engine, as supervision sees one: running until it dies."""

    running = True
    exit_cause = ""
    max_concurrency = 0


class RecordingOps:
    """Test double for UnitOps: engine operations succeed at once and are recorded."""

    def __init__(self):
        self.calls: list[tuple[str, UnitId]] = []
        self.engines: dict[UnitId, StubEngine] = {}
        self.wake_gate: asyncio.Event | None = None
        """Set: a wake waits for it (a wake under way)."""

    def engine(self, unit):
        return self.engines.get(unit)

    async def boot(self, unit, devices, reason):
        self.calls.append(("boot", unit))
        self.engines[unit] = StubEngine()

    async def wake(self, unit, reason):
        self.calls.append(("wake", unit))
        if self.wake_gate is not None:
            await self.wake_gate.wait()

    async def sleep(self, unit, level, keep=False):
        self.calls.append(("sleep", unit))

    async def stop(self, unit, reason=""):
        self.calls.append(("stop", unit))

    def died(self, unit, cause):
        self.calls.append(("died", unit))

    def give_up(self, unit, reason):
        self.calls.append(("give_up", unit))


def loop_with(free_gib: float | None, **config) -> tuple[SchedulerLoop, RecordingOps]:
    ops = RecordingOps()
    gpu = Device(0, "GPU-0", "NVIDIA-H100", 80 * GIB, 80 * GIB)
    free = (lambda index: None) if free_gib is None else (lambda index: int(free_gib * GIB))
    return SchedulerLoop(Scheduler([gpu], SchedulerConfig(**config)), ops, free_bytes=free), ops


async def until(predicate, timeout=5.0):
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_requests_wait_for_the_boot_and_are_admitted():
    loop, ops = loop_with(None)
    runner = asyncio.create_task(loop.run())
    loop.submit(ModelUpserted("a", Policy(memory_fraction=0.5), 1))
    ticket = await asyncio.wait_for(loop.admit("a"), 5)
    assert ticket.unit == UnitId("a", 0) and ("boot", UnitId("a", 0)) in ops.calls
    loop.finished(ticket)
    runner.cancel()


async def awake_model(loop: SchedulerLoop) -> UnitId:
    loop.submit(ModelUpserted("a", Policy(memory_fraction=0.5), 1))
    loop.finished(await asyncio.wait_for(loop.admit("a"), 5))
    await until(lambda: loop.events.empty())
    return UnitId("a", 0)


def completed_without_waiting(coroutine):
    """The coroutine's result if it finished without suspending once; None if it suspended
    (it is closed then)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    return None


async def test_a_request_to_an_awake_model_is_admitted_without_waiting_for_the_loop():
    loop, _ = loop_with(None)
    runner = asyncio.create_task(loop.run())
    unit = await awake_model(loop)
    ticket = completed_without_waiting(loop.admit("a"))
    assert ticket is not None and ticket.unit == unit and loop.scheduler.units[unit].in_flight == 1
    loop.finished(ticket)
    assert loop.scheduler.units[unit].in_flight == 0
    runner.cancel()


async def test_a_request_behind_queued_events_is_decided_after_them():
    loop, _ = loop_with(None)
    runner = asyncio.create_task(loop.run())
    unit = await awake_model(loop)
    loop.submit(ModelUpserted("a", Policy(memory_fraction=0.5), 1))  # queued, not decided yet
    assert completed_without_waiting(loop.admit("a")) is None
    await until(lambda: loop.events.empty() and loop.scheduler.units[unit].in_flight == 0)
    assert completed_without_waiting(loop.admit("a")) is not None
    runner.cancel()


async def test_unknown_model_is_rejected():
    loop, _ = loop_with(None)
    runner = asyncio.create_task(loop.run())
    with pytest.raises(Rejected) as info:
        await asyncio.wait_for(loop.admit("nope"), 5)
    assert info.value.status == 404
    runner.cancel()


async def test_a_boot_waits_for_memory_that_others_hold():
    loop, ops = loop_with(free_gib=10)  # another process holds 70 GiB
    runner = asyncio.create_task(loop.run())
    loop.submit(ModelUpserted("a", Policy(memory_fraction=0.5), 1))
    unit = UnitId("a", 0)
    await until(lambda: loop.scheduler.units.get(unit) is not None
                and loop.scheduler.units[unit].state == UnitState.restarting)
    assert "GPU 0 has 10240 MiB free, a/0 needs 40960 MiB" in loop.scheduler.units[unit].reason
    assert ("boot", unit) not in ops.calls
    assert loop.scheduler.foreign[0] == 70 * GIB
    runner.cancel()


async def test_an_engine_that_dies_is_found_by_supervision_and_restarted_without_a_request():
    """Engine health once was diagnosed by the HTTP layer, on the next request's 500, and a new
    engine waited for a request after that."""
    loop, ops = loop_with(None, retry_base=0.01)
    loop.supervise_s = 0.01
    runner = asyncio.create_task(loop.run())
    try:
        loop.submit(ModelUpserted("a", Policy(memory_fraction=0.5), 1))
        unit = UnitId("a", 0)
        await until(lambda: unit in loop.scheduler.units and loop.scheduler.units[unit].state == UnitState.awake)
        dead = ops.engines[unit]
        dead.running, dead.exit_cause = False, "the vLLM engine process EngineCore_DP0 (pid 7) was killed by SIGKILL"
        await until(lambda: ("died", unit) in ops.calls)
        await until(lambda: ops.calls.count(("boot", unit)) == 2)  # restarted with no request
        await until(lambda: loop.scheduler.units[unit].state == UnitState.awake)
        ticket = await asyncio.wait_for(loop.admit("a"), 5)
        loop.finished(ticket)
    finally:
        runner.cancel()


async def test_an_engine_that_dies_during_a_wake_is_found_and_restarted_and_its_queue_served():
    """Found by the chaos soak: vLLM's wake call into a dead EngineCore never returned, supervision
    watched awake and asleep units only, and the unit stayed waking while its requests timed out."""
    loop, ops = loop_with(None, retry_base=0.01)
    loop.supervise_s = 0.01
    runner = asyncio.create_task(loop.run())
    try:
        unit = await awake_model(loop)
        loop.submit(SleepRequested("a"))  # as `gthread sleep a` does
        await until(lambda: loop.scheduler.units[unit].state == UnitState.asleep)
        ops.wake_gate = asyncio.Event()  # the wake will hang, as a call into a dead EngineCore does
        waiting = asyncio.create_task(loop.admit("a"))
        await until(lambda: loop.scheduler.units[unit].state == UnitState.waking)
        ops.engines[unit].running = False
        await until(lambda: ("died", unit) in ops.calls)
        await until(lambda: ops.calls.count(("boot", unit)) == 2)
        ticket = await asyncio.wait_for(waiting, 5)
        assert ticket.unit == unit, "the request that waited is served by the restarted engine"
        loop.finished(ticket)
    finally:
        runner.cancel()


def test_an_action_the_effects_layer_cannot_carry_out_is_an_error():
    loop, _ = loop_with(None)
    with pytest.raises(TypeError, match="no way to carry out"):
        loop._perform(object())
