"""Which waiting model starts first: wakes (seconds) before cold starts (tens of seconds), until
those have waited half the queue timeout; room being made for a model stays its own. Driven with
a fake clock through SimulatedHost (tests/scheduler_sim.py), whose boots take 20 s and wakes 2 s."""

from scheduler.messages import Boot, RequestArrived, Wake
from scheduler.units import UnitId
from tests.scheduler.test_fairness import add, host


def one_slot(b_min_runtime: float = 10):
    """One GPU that holds one of a, b, c awake. a boots first and is put to sleep for b, which
    serves a request and is then awake and used lately (not idle): the only room, behind its
    minRuntime (`b_min_runtime`). c has never started (its start is a boot), a is asleep (its
    start is a wake)."""
    h = host()  # queueTimeout 300 s: a cold start yields to wakes for 150 s
    h.boot_s, h.wake_s = 20.0, 2.0
    for name in ("a", "b", "c"):
        add(h, name, min_runtime=b_min_runtime if name == "b" else 10, max_wait=1, idle_timeout=300)
    h.run_until(30)  # a booted in 20 s
    h.feed(RequestArrived("b", "b1"))
    h.run_until(52)
    assert "b1" in h.admitted and h.scheduler.units[UnitId("a", 0)].state.value == "asleep"
    return h


def starts(h, since: float) -> list[tuple[str, str]]:
    return [(type(a).__name__, a.unit.model) for t, a in h.actions if isinstance(a, (Boot, Wake)) and t >= since]


def test_a_wake_goes_before_a_cold_start_asked_for_earlier():
    h = one_slot()
    h.run_until(55)
    h.feed(RequestArrived("c", "c1"))  # a boot
    h.run_until(57)
    h.feed(RequestArrived("a", "a1"))  # a wake, asked for 2 s later
    h.run_until(200)
    assert starts(h, 55) == [("Wake", "a"), ("Boot", "c")], "the wake first: b's room went to a"
    assert h.admitted["a1"] < h.admitted["c1"], "both served, a's in seconds"
    assert h.admitted["a1"] - 57 < 10


def test_a_cold_start_that_has_waited_half_the_queue_timeout_goes_first():
    h = one_slot(b_min_runtime=160)  # b's room opens at 210.5: c has waited 155.5 s, more than 150
    h.run_until(55)
    h.feed(RequestArrived("c", "c1"))
    h.run_until(57)
    h.feed(RequestArrived("a", "a1"))
    h.run_until(400)
    assert starts(h, 55) == [("Boot", "c"), ("Wake", "a")], "oldest first again: no request starves"
    assert {"a1", "c1"} <= set(h.admitted)


def test_room_being_made_for_a_cold_start_is_not_taken_by_a_later_wake():
    h = one_slot()
    h.run_until(55)
    h.feed(RequestArrived("c", "c1"))
    h.run_until(60.6)  # b's minRuntime ran out at 60.5: b is being put to sleep for c
    assert h.scheduler.units[UnitId("b", 0)].state.value in ("draining", "sleeping")
    h.feed(RequestArrived("a", "a1"))  # a wake, while c's room is being made
    h.run_until(300)
    assert starts(h, 55) == [("Boot", "c"), ("Wake", "a")], "c's room stayed c's"
    assert {"a1", "c1"} <= set(h.admitted)
