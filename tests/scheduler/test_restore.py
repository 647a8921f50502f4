"""Restoring a unit whose engine died while serving (scheduler/restore.py): its claim on capacity
against pre-wakes, first boots, waiting requests and busy units, with a fake clock through
SimulatedHost (tests/scheduler_sim.py)."""

from scheduler.messages import Boot, Drain, EngineFailed, RequestArrived, Wake
from scheduler.restore import REASON
from scheduler.units import UnitId, UnitState
from tests.scheduler.test_fairness import GIB, add, gpus, host, state

A = UnitId("a", 0)


def b_asleep_a_serving(**config):
    """Two models on a slot for one, both asked lately: `b` was put to sleep for `a` while it was
    still being asked (a pre-wake would bring it back), `a` serves."""
    h = host(**config)
    add(h, "a", idle_timeout=300, min_runtime=0, max_wait=0)
    add(h, "b", idle_timeout=300, min_runtime=0, max_wait=0)
    h.run_until(3)
    for i in range(6):
        h.at(4.0 + 2 * i, RequestArrived("b", f"b{i}"))
    h.at(20.0, RequestArrived("a", "a0"))
    h.run_until(40)
    assert (state(h, "a"), state(h, "b")) == (UnitState.awake, UnitState.asleep)
    return h


def crash_while_b_sleeps(**config):
    """b_asleep_a_serving, then a's engine is killed."""
    h = b_asleep_a_serving(**config)
    h.feed(EngineFailed(A, "the vLLM engine process EngineCore (pid 9810) was killed by SIGKILL", crashed=True))
    return h


def test_a_unit_that_died_serving_is_restored_before_a_prewake_takes_its_room():
    h = crash_while_b_sleeps()
    died = h.now
    assert state(h, "a") == UnitState.restarting, "waiting out its backoff, not failed"
    h.run_until(died + 10)
    assert state(h, "a") == UnitState.awake, "restored unprompted, no request pending"
    assert state(h, "b") == UnitState.asleep
    assert [a.reason for t, a in h.actions if isinstance(a, Boot) and t > died] == [REASON]
    assert not [a for t, a in h.actions if isinstance(a, Wake) and t > died], "no pre-wake of b"


def test_without_the_restore_claim_the_prewake_would_have_taken_the_room():
    """The same history, the death not of a serving engine (an operation that failed): b is pre-woken."""
    h = b_asleep_a_serving()
    h.feed(EngineFailed(A, "a wake that failed"))
    assert [a.unit for t, a in h.actions if isinstance(a, Wake) and t == h.now] == [UnitId("b", 0)]


def test_its_room_is_held_during_the_backoff_against_a_first_boot():
    h = crash_while_b_sleeps(retry_base=20)
    add(h, "c", idle_timeout=300, memory_fraction=0.5)
    assert state(h, "c") == UnitState.cold, "c fits the 80 GiB device alone, not beside a's held 0.6"
    assert "capacity" not in h.scheduler.units[A].reason
    h.run_until(h.now + 25)
    assert state(h, "a") == UnitState.awake


def test_a_waiting_request_comes_before_the_restore_and_the_restore_follows_when_it_idles():
    h = crash_while_b_sleeps(retry_base=5)
    died = h.now
    h.feed(RequestArrived("b", "waiting"))
    h.run_until(died + 3)
    assert "waiting" in h.admitted and state(h, "b") == UnitState.awake, "a user waits on b: b first"
    h.run_until(died + 30)
    assert state(h, "a") == UnitState.restarting, "b is busy-recent, not idle: never preempted for a restore"
    assert h.scheduler.units[A].reason.startswith("restart due, waiting for capacity")
    h.run_until(died + 3 + 300 + 10)  # b idles out (idleTimeout 300 s) and its room goes to a
    assert (state(h, "a"), state(h, "b")) == (UnitState.awake, UnitState.asleep)


def test_an_idle_unit_is_put_to_sleep_for_a_due_restore_and_a_busy_one_is_not():
    h = host(gpus(1, total=100 * GIB), retry_base=5)
    add(h, "a", memory_fraction=0.5, idle_timeout=300, min_runtime=0, max_wait=0)
    add(h, "idle", memory_fraction=0.5, idle_timeout=300)
    add(h, "b", memory_fraction=0.5, idle_timeout=300, min_runtime=0, max_wait=0)
    h.run_until(3)  # a and idle booted (idle is never used), b waits cold for room
    h.feed(RequestArrived("a", "a0"))
    h.run_until(10)
    h.feed(EngineFailed(A, "killed by SIGKILL", crashed=True))
    died = h.now
    h.feed(RequestArrived("b", "b0"))  # a user waits on b: it takes a's room during the backoff
    h.run_until(died + 20)
    assert "b0" in h.admitted
    assert (state(h, "a"), state(h, "b"), state(h, "idle")) == (UnitState.awake, UnitState.awake, UnitState.asleep)
    drained = [str(a.unit) for t, a in h.actions if isinstance(a, Drain) and t > died]
    assert drained == ["idle/0"], "the idle unit made room for the restore, the busy one did not"


def test_a_crash_loop_is_failed_and_holds_nothing():
    h = crash_while_b_sleeps(crash_loop=2, crash_window=600)
    h.run_until(h.now + 10)
    assert state(h, "a") == UnitState.awake
    h.feed(EngineFailed(A, "killed again", crashed=True))
    unit = h.scheduler.units[A]
    assert (unit.state, unit.restore) == (UnitState.failed, False)
    assert not [a for t, a in h.actions if isinstance(a, Drain) and t >= h.now]
