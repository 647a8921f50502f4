"""A busy model's waiting requests take turns by key: an engine runs at most what it reported it
can at once (vLLM's max_num_seqs), the rest wait in the model's queue, and the queue serves keys
round-robin, oldest first within a key. On SimulatedHost's fake clock."""

from scheduler.messages import Boot, RequestArrived, RequestLeft, Wake
from tests.scheduler.test_fairness import add, host, state
from scheduler.units import UnitState


def busy_host(capacity=1, request_s=1.0, **config):
    h = host(request_s=request_s, **config)
    h.capacity = capacity
    add(h, "m")
    h.run_until(5)
    assert state(h, "m") == UnitState.awake
    return h


def order(h) -> list[str]:
    return [rid for rid, _ in sorted(h.admitted.items(), key=lambda item: (item[1], int(item[0].split("-")[1])))]


def test_a_quiet_keys_request_is_served_next_not_behind_a_flood():
    h = busy_host()
    for i in range(10):
        h.feed(RequestArrived("m", f"flood-{i}", "flood"))
    h.feed(RequestArrived("m", "quiet-0", "quiet"))
    h.run_until(100)
    assert order(h)[:4] == ["flood-0", "flood-1", "quiet-0", "flood-2"]
    assert h.admitted["quiet-0"] == 7.0, "the third to run, 2 s after it came, not the eleventh"


def test_without_keys_it_is_first_come_first_served():
    h = busy_host()
    for i in range(5):
        h.feed(RequestArrived("m", f"r-{i}"))
    h.run_until(100)
    assert order(h) == [f"r-{i}" for i in range(5)]


def test_keys_alternate_and_each_keeps_its_own_order():
    h = busy_host()
    h.feed(RequestArrived("m", "a-0", "a"))  # runs at once
    for i in range(1, 4):
        h.feed(RequestArrived("m", f"a-{i}", "a"))
    for i in range(3):
        h.feed(RequestArrived("m", f"b-{i}", "b"))
    h.run_until(100)
    assert order(h) == ["a-0", "a-1", "b-0", "a-2", "b-1", "a-3", "b-2"]


def test_an_engine_runs_no_more_than_it_can_and_the_rest_wait_without_waking_anything():
    h = busy_host(capacity=2)
    add(h, "other")
    before = len(h.actions)
    for i in range(6):
        h.feed(RequestArrived("m", f"r-{i}", "k"))
    assert h.scheduler.units[next(u for u in h.scheduler.units if u.model == "m")].in_flight == 2
    assert len(h.scheduler.queues["m"].waiting) == 4
    assert not any(isinstance(a, (Boot, Wake)) for _, a in h.actions[before:]), "a busy model's queue starts nothing"
    h.run_until(100)
    assert len(h.admitted) == 6 and not h.scheduler.queues["m"].waiting


def test_a_request_that_left_loses_its_turn():
    h = busy_host()
    h.feed(RequestArrived("m", "a-0", "a"))
    h.feed(RequestArrived("m", "a-1", "a"))
    h.feed(RequestArrived("m", "b-0", "b"))
    h.feed(RequestLeft("m", "a-1"))
    h.run_until(100)
    assert order(h) == ["a-0", "b-0"] and "a-1" not in h.rejected


def test_at_a_wake_the_queue_is_let_in_by_turns_up_to_the_engines_capacity():
    h = host()
    h.capacity = 2
    add(h, "m", idle_timeout=1)
    h.run_until(5)
    h.run_until(10)  # idle: asleep
    assert state(h, "m") == UnitState.asleep
    for i in range(4):
        h.feed(RequestArrived("m", f"a-{i}", "a"))
    h.feed(RequestArrived("m", "b-0", "b"))
    h.run_until(h.now + 2)  # the wake
    woke = min(h.admitted.values())
    assert sorted(rid for rid, t in h.admitted.items() if t == woke) == ["a-0", "b-0"]


def test_a_request_that_waits_for_room_too_long_is_told_so():
    h = busy_host(request_s=1000, queue_timeout=30)
    h.feed(RequestArrived("m", "r-0", "k"))
    h.feed(RequestArrived("m", "r-1", "k"))
    h.run_until(h.now + 31)
    assert h.rejected == {"r-1": 503}
    reason = next(a.reason for _, a in h.actions if getattr(a, "request_id", "") == "r-1" and hasattr(a, "reason"))
    assert reason == "timed out after 30s waiting for model m to have room (its engines ran all they can at once)"
