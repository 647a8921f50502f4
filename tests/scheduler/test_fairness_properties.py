"""Invariants of the decision core over random histories (hypothesis), on SimulatedHost:
capacity is never exceeded (a device's memory, an engine's requests at once), popular units are
never preempted, nothing busy is preempted before its minRuntime, and no request starves: each is
admitted or rejected once the host goes quiet (engines dying on the way, restores included,
requests of several keys taking turns behind engines that run a few at once, answers streamed or
not: a unit whose answers have all had a token yields early)."""

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scheduler.fairness import Scheduler, SchedulerConfig
from scheduler.inventory import Device
from scheduler.messages import Drain, EngineFailed, ModelUpserted, RequestArrived, Sleep
from scheduler.placement import fits, windows
from scheduler.units import Policy, UnitId, UnitState
from tests.scheduler_sim import SimulatedHost

GIB = 2**30

policies = st.builds(
    Policy,
    tensor_parallel=st.sampled_from([1, 1, 2]),
    memory_fraction=st.sampled_from([0.3, 0.45, 0.6, 0.9]),
    popular=st.sampled_from([False, False, False, True]),
    min_runtime=st.floats(0, 20),
    max_wait=st.floats(0, 10),
    idle_timeout=st.floats(1, 60),
    drain_timeout=st.floats(0, 10),
)
events = st.lists(
    st.tuples(st.floats(0, 5), st.integers(0, 3), st.sampled_from(["request", "request", "request", "fail"]),
              st.sampled_from(["", "key-a", "key-b"])),
    min_size=1, max_size=40,
)


def check_invariants(h: SimulatedHost, before, actions) -> None:
    s = h.scheduler
    for index, used in s.claimed().items():
        assert used <= s.devices[index].capacity_bytes, f"device {index} over capacity"
    for unit in s.units.values():
        assert not unit.capacity or unit.in_flight <= unit.capacity, f"{unit.id} runs more than its engine can"
    for action in actions:
        if not isinstance(action, Drain):
            continue
        unit = s.units[action.unit]
        assert not unit.policy.popular, f"popular {action.unit} drained"
        state, in_flight, awake_since, last_used = before[action.unit]
        idle = in_flight == 0 and (last_used <= awake_since or h.now - last_used >= unit.policy.idle_timeout)
        if state in (UnitState.booting, UnitState.waking):  # it came up in this very event, nothing to do
            idle, awake_since = unit.in_flight == 0, h.now
        assert idle or h.now - awake_since >= unit.policy.min_runtime, f"{action.unit} preempted before minRuntime"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models=st.lists(st.tuples(policies, st.integers(1, 2)), min_size=1, max_size=4), history=events,
       gpus=st.integers(1, 3), capacity=st.sampled_from([0, 0, 1, 2]), first_token_s=st.sampled_from([None, 0.1, 0.7]))
def test_invariants_hold_and_nothing_starves(models, history, gpus, capacity, first_token_s):
    devices = [Device(i, f"GPU-{i}", "NVIDIA-H100", 80 * GIB, 80 * GIB) for i in range(gpus)]
    h = SimulatedHost(Scheduler(devices, SchedulerConfig(queue_limit=8, queue_timeout=120)), capacity=capacity,
                      first_token_s=first_token_s)
    for index, (policy, replicas) in enumerate(models):
        h.feed(ModelUpserted(f"m{index}", policy, replicas), check_invariants)
    sent = []
    for n, (delay, which, kind, key) in enumerate(history):
        h.run_until(h.now + delay, check_invariants)
        model = f"m{which % len(models)}"
        if kind == "request":
            sent.append(f"r{n}")
            h.feed(RequestArrived(model, f"r{n}", key), check_invariants)
        else:
            # Every other one a death of a running engine: a serving unit's is a restore.
            h.feed(EngineFailed(UnitId(model, 0), "simulated crash", crashed=n % 2 == 0), check_invariants)
    h.run_until(h.now + 10_000, check_invariants)
    for rid in sent:
        assert rid in h.admitted or rid in h.rejected, f"{rid} starved"
    preempted = any(isinstance(a, Drain) and a.reason.startswith("preempted") for _, a in h.actions)
    event("some unit preempted" if preempted else "no preemption")
    event("some request rejected" if h.rejected else "all admitted")
    event("some request paused" if any(isinstance(a, Sleep) and a.keep for _, a in h.actions) else "none paused")
    assert not any(q.wants for q in h.scheduler.queues.values()), "requests still wait, queued or paused"
    free = h.scheduler.free()
    for unit in h.scheduler.units.values():  # quiet: only popular units hold memory
        if unit.state == UnitState.restarting:
            assert not any(fits(w, unit.policy, h.scheduler.devices, free) for w in windows(devices, unit.policy)), \
                f"{unit.id} was never restarted into the free memory"


def check_budgets(h: SimulatedHost, before, actions) -> None:
    check_invariants(h, before, actions)
    view = h.scheduler.snapshot().host
    assert view.used <= view.limit, f"host memory {view.used / GIB:.1f} GiB over its {view.limit / GIB:.1f} GiB"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models=st.lists(policies, min_size=1, max_size=6), history=events,
       max_sleeping=st.integers(0, 3), residue=st.sampled_from([0, 4 * GIB, 10 * GIB]))
def test_budgets_hold_and_nothing_starves(models, history, max_sleeping, residue):
    """With a host budget that holds one awake engine and a few sleepers, a cap on sleepers and a
    device residue per sleeper: host memory never goes over, and every request is still answered."""
    h = SimulatedHost(Scheduler([Device(0, "GPU-0", "NVIDIA-H100", 80 * GIB, 80 * GIB)],
                                SchedulerConfig(queue_limit=8, queue_timeout=120, host_limit=8 * GIB,
                                                max_sleeping=max_sleeping)))
    h.host_awake, h.host_asleep, h.residue = 3 * GIB, {1: 2 * GIB, 2: 1 * GIB}, residue
    for index, policy in enumerate(models):
        solo = Policy(**{**policy.__dict__, "tensor_parallel": 1, "host_estimate": 3 * GIB})
        h.feed(ModelUpserted(f"m{index}", solo, 1), check_budgets)
    sent = []
    for n, (delay, which, kind, key) in enumerate(history):
        h.run_until(h.now + delay, check_budgets)
        if kind == "request":
            sent.append(f"r{n}")
            h.feed(RequestArrived(f"m{which % len(models)}", f"r{n}"), check_budgets)
    h.run_until(h.now + 10_000, check_budgets)
    for rid in sent:
        assert rid in h.admitted or rid in h.rejected, f"{rid} starved"
    assert set(h.admitted) <= set(h.finished), "an admitted request never ended (paused and forgotten?)"
    asleep = sum(u.state == UnitState.asleep for u in h.scheduler.units.values())
    assert not max_sleeping or asleep <= max_sleeping
    event("some engine stopped" if any(u.rung == "stopped" for u in h.scheduler.snapshot().units) else "none stopped")
