"""Pre-wake: the forecast from a model's arrivals, and the core waking a model before its request
into free memory only, driven with a fake clock through SimulatedHost (tests/scheduler_sim.py)."""

import pytest

from scheduler.fairness import Scheduler, SchedulerConfig
from scheduler.messages import RequestArrived, Wake
from scheduler.prewake import forecast
from scheduler.units import UnitId, UnitState
from tests.scheduler.test_fairness import add, gpus, state
from tests.scheduler_sim import SimulatedHost


def test_regular_gaps_are_periodic_and_the_next_request_is_due_one_period_after_the_last():
    arrivals = [0.0, 60.0, 120.5, 179.8, 240.0]
    assert forecast(arrivals, 250.0, horizon=5).due == pytest.approx(300.0, abs=0.5)
    assert forecast(arrivals, 250.0, horizon=5).likelihood == 0.0, "not within 5 s yet"
    assert forecast(arrivals, 296.0, horizon=5).likelihood == 1.0
    assert forecast(arrivals, 365.0, horizon=5).due == pytest.approx(360.0, abs=0.5), "a missed beat: the next"
    stopped = forecast(arrivals, 240.0 + 4 * 60, horizon=5)
    assert stopped.due is None and stopped.likelihood < 0.1, "silent for 3 periods: a rate, and a low one"


def test_irregular_traffic_is_a_rate_and_a_likelihood():
    arrivals = [0.0, 1.0, 9.0, 10.0, 30.0, 31.0]
    seen = forecast(arrivals, 31.0, horizon=10)
    assert seen.due is None and 0.8 < seen.likelihood < 0.9, "5 requests in 31 s: 1 - exp(-50/31)"
    assert forecast([5.0], 6.0, horizon=10).likelihood == 0.0, "one arrival says nothing"


def periodic_host(prewake: bool) -> SimulatedHost:
    """One slot; `p` is asked every 60 s, and `busy` takes the slot between p's requests."""
    h = SimulatedHost(Scheduler(gpus(), SchedulerConfig(prewake=prewake)))
    add(h, "p", idle_timeout=10, min_runtime=0, max_wait=0)
    add(h, "busy", idle_timeout=10, min_runtime=0, max_wait=0)
    h.run_until(3)
    for minute in range(6):
        h.at(60.0 * minute + 20, RequestArrived("busy", f"b{minute}"))
        h.at(60.0 * minute + 50, RequestArrived("p", f"p{minute}"))
    h.run_until(60 * 6)
    return h


def test_a_periodic_model_is_woken_before_its_request_and_answers_at_once():
    h = periodic_host(prewake=True)
    waits = [h.admitted[f"p{m}"] - (60.0 * m + 50) for m in range(6)]
    assert waits[:4] != [0.0] * 4 and waits[4:] == [0.0, 0.0], waits
    prewakes = [a for _, a in h.actions if isinstance(a, Wake) and a.reason.startswith("pre-wake")]
    assert {a.unit for a in prewakes} == {UnitId("p", 0), UnitId("busy", 0)}, "busy is periodic too"
    assert "due at 350s (periodic)" in [a for a in prewakes if a.unit == UnitId("p", 0)][-1].reason


def test_without_prewake_every_periodic_request_waits_for_a_wake():
    h = periodic_host(prewake=False)
    assert all(h.admitted[f"p{m}"] > 60.0 * m + 50 for m in range(6))
    assert not [a for _, a in h.actions if isinstance(a, Wake) and a.reason.startswith("pre-wake")]


def test_a_prewoken_model_is_an_idle_victim_and_delays_nobody_past_its_wake():
    h = periodic_host(prewake=True)
    assert state(h, "p") in (UnitState.asleep, UnitState.awake)
    h.run_until(60 * 6 + 49.5)  # busy was pre-woken for 6:20 (and slept unused), p for 6:50
    assert state(h, "p") == UnitState.awake and h.scheduler.units[UnitId("p", 0)].last_used < 360
    h.feed(RequestArrived("busy", "now"))
    h.run_until(h.now + 5)
    assert h.admitted["now"] - (360 + 49.5) <= h.sleep_s + h.wake_s, "p was slept at once, no minRuntime"


def test_a_model_an_operator_slept_or_that_idled_out_is_not_woken_again_by_a_guess():
    from scheduler.messages import SleepRequested

    h = SimulatedHost(Scheduler(gpus(), SchedulerConfig()))
    add(h, "a", idle_timeout=30, min_runtime=0, max_wait=0)
    h.run_until(3)
    for i in range(5):  # a busy model: a request within 30 s is near certain by its rate
        h.at(4.0 + i, RequestArrived("a", f"r{i}"))
    h.run_until(12)
    h.feed(SleepRequested("a"))
    h.run_until(20)
    assert state(h, "a") == UnitState.asleep, "the operator's sleep stands"
    h.feed(RequestArrived("a", "again"))
    h.run_until(25)
    assert state(h, "a") == UnitState.awake
    h.run_until(120)
    assert state(h, "a") == UnitState.asleep, "idled out after 30 s: no request is its forecast"
    assert not [a for _, a in h.actions if isinstance(a, Wake) and a.reason.startswith("pre-wake")]


def test_a_busy_model_that_was_preempted_is_woken_again_when_the_memory_frees():
    h = SimulatedHost(Scheduler(gpus(), SchedulerConfig()))
    add(h, "a", idle_timeout=30, min_runtime=0, max_wait=0)
    add(h, "b", idle_timeout=5, min_runtime=0, max_wait=0)
    h.run_until(3)
    for i in range(5):
        h.at(4.0 + i, RequestArrived("a", f"a{i}"))
    h.at(9.5, RequestArrived("b", "b0"))
    h.run_until(40)
    guesses = [(t, a) for t, a in h.actions if isinstance(a, Wake) and a.reason.startswith("pre-wake")]
    assert [a.unit for _, a in guesses] == [UnitId("a", 0)], guesses
    assert "likely" in guesses[0][1].reason and state(h, "a") == UnitState.awake and state(h, "b") == UnitState.asleep
