"""Each scheduling rule, driven with a fake clock through SimulatedHost (tests/scheduler_sim.py)."""

import pytest

from scheduler.fairness import Scheduler, SchedulerConfig
from scheduler.inventory import Device
from scheduler.messages import (
    AbortInFlight, Boot, DeviceMemoryRead, Drain, EngineFailed, GiveUp, ModelRemoved, ModelUpserted, RequestArrived,
    RequestFinished, RequestLeft, Sleep, SleepRequested, Wake,
)
from scheduler.units import Policy, UnitId, UnitState
from tests.scheduler_sim import SimulatedHost

GIB = 2**30


def gpus(n=1, total=80 * GIB, product="NVIDIA-H100"):
    return [Device(i, f"GPU-{i}", product, total, total) for i in range(n)]


def host(devices=None, request_s=1.0, **config) -> SimulatedHost:
    return SimulatedHost(Scheduler(devices or gpus(), SchedulerConfig(**config)), request_s=request_s)


def policy(**kw) -> Policy:
    base = dict(memory_fraction=0.6, min_runtime=10, max_wait=5, idle_timeout=300, drain_timeout=30)
    return Policy(**{**base, **kw})


def add(h: SimulatedHost, model: str, replicas=1, **kw) -> None:
    h.feed(ModelUpserted(model, policy(**kw), replicas))


def state(h, model, replica=0) -> UnitState:
    return h.scheduler.units[UnitId(model, replica)].state


def kinds(h, since=0.0):
    return [(type(a).__name__, str(getattr(a, "unit", "")) or getattr(a, "request_id", "")) for t, a in h.actions
            if t >= since]


def test_first_model_boots_into_free_capacity_and_serves():
    h = host()
    add(h, "a")
    assert kinds(h) == [("Boot", "a/0")]
    h.run_until(5)
    assert state(h, "a") == UnitState.awake
    h.feed(RequestArrived("a", "r1"))
    assert h.admitted == {"r1": 5}


def test_a_second_model_that_does_not_fit_waits_asleep_until_asked():
    h = host()
    add(h, "a")
    add(h, "b")
    h.run_until(5)
    assert (state(h, "a"), state(h, "b")) == (UnitState.awake, UnitState.cold)


def test_request_for_a_sleeping_model_queues_and_uses_an_idle_one():
    h = host()
    add(h, "a")
    add(h, "b")
    h.run_until(5)
    h.feed(RequestArrived("b", "r1"))
    # a was booted but never used: idle, so it is slept for b at once, without waiting maxWaitTime
    assert ("Drain", "a/0") in kinds(h) and ("Sleep", "a/0") in kinds(h)
    h.run_until(10)
    assert state(h, "b") == UnitState.awake and "r1" in h.admitted


def test_busy_model_is_preempted_only_after_max_wait_and_min_runtime():
    h = host(request_s=100)
    add(h, "a")
    add(h, "b")
    h.run_until(2)
    h.feed(RequestArrived("a", "ra"))      # a is busy from t=2, awake since t=2
    h.run_until(3)
    h.feed(RequestArrived("b", "rb"))      # t=3: b waits
    h.run_until(7.9)
    assert state(h, "a") == UnitState.awake, "before maxWaitTime (5s) b may not preempt"
    h.run_until(11.9)
    assert state(h, "a") == UnitState.awake, "before a's minRuntime (10s from t=2) it is not preempted"
    h.run_until(12.1)
    assert state(h, "a") == UnitState.draining
    drain = next(a for t, a in h.actions if isinstance(a, Drain))
    assert drain.reason.startswith("preempted for b")


def a_busy_when_b_asks(drain_timeout: float) -> SimulatedHost:
    """a runs a long request from t=2 (awake since then) and b asks at the same moment."""
    h = host(request_s=1000)
    add(h, "a", drain_timeout=drain_timeout)
    add(h, "b")
    h.run_until(2)
    h.feed(RequestArrived("a", "ra"))
    h.feed(RequestArrived("b", "rb"))
    return h


def test_a_preempted_model_drains_then_pauses_what_still_runs_and_resumes_it_at_its_next_wake():
    h = a_busy_when_b_asks(drain_timeout=30)
    h.run_until(12.5)
    assert state(h, "a") == UnitState.draining
    h.feed(RequestArrived("a", "ra2"))
    assert "ra2" not in h.admitted, "the barrier holds new requests back"
    h.run_until(42.1)  # drainTimeout ran out: ra is paused in a's engine, not aborted
    sleep = next(a for _, a in h.actions if isinstance(a, Sleep))
    assert sleep.keep and not any(isinstance(a, AbortInFlight) for _, a in h.actions)
    a = h.scheduler.units[UnitId("a", 0)]
    assert (a.kept, a.in_flight) == (1, 0) and h.scheduler.queues["a"].paused == {a.id: 42}
    h.run_until(50)
    assert state(h, "b") == UnitState.awake and "rb" in h.admitted
    # a waits again (ra2 queued, ra paused): b is preempted back after its minRuntime (awake at
    # 44.5, so at 54.5), drains 30 s and pauses rb; a's wake resumes ra where it stopped
    h.run_until(88)
    assert state(h, "a") == UnitState.awake and (a.kept, a.in_flight) == (0, 2)
    assert "ra" not in h.finished and h.scheduler.queues["a"].paused == {}
    h.run_until(10_000)  # the two take turns until all is done: nothing is aborted, nothing lost
    assert {"ra", "ra2", "rb"} <= set(h.finished) and not any(isinstance(a, AbortInFlight) for _, a in h.actions)


def two_taking_turns(first_token_s, *names) -> SimulatedHost:
    """Models that fit one at a time, minRuntime, maxWaitTime and drainTimeout 0: a runs a long
    request from t=2, and its answer begins `first_token_s` later (None: answers not streamed)."""
    h = host(request_s=1000)
    h.first_token_s, h.boot_s, h.wake_s, h.sleep_s = first_token_s, 0.2, 0.05, 0.05
    for name in names or ("a", "b"):
        add(h, name, min_runtime=0, max_wait=0, drain_timeout=0)
    h.run_until(2)
    h.feed(RequestArrived("a", "ra"))
    return h


def pauses(h, model) -> list[float]:
    return [round(t, 3) for t, a in h.actions if isinstance(a, Sleep) and a.keep and a.unit.model == model]


@pytest.mark.parametrize("first_token_s, paused_at", [(0.1, 3.35), (None, 4.25)])
def test_a_model_taken_back_just_after_its_wake_yields_once_its_answers_have_begun(first_token_s, paused_at):
    """b woke at 3.25 for rb; a's next request at 3.3 takes the engine back as soon as rb's answer
    has begun (3.35), not a least slice later (4.25), which only answers that are not streamed,
    and so tell nothing before they end, still wait for."""
    h = two_taking_turns(first_token_s)
    h.run_until(3)
    h.feed(RequestArrived("b", "rb"))
    h.run_until(3)
    assert pauses(h, "a") == [3.0], "a has run more than MIN_SLICE_S: paused at once"
    h.run_until(3.3)
    assert state(h, "b") == UnitState.awake and h.admitted["rb"] == pytest.approx(3.25)
    h.feed(RequestArrived("a", "ra2"))
    h.run_until(5)
    assert pauses(h, "b") == [paused_at]
    assert h.admitted["ra2"] == pytest.approx(paused_at + 0.1), "b's sleep and a's wake, 0.05 s each"


def test_paused_answers_leave_the_engine_to_the_model_they_paused_for_then_take_turns():
    """a's answer, paused for b at 3, waits MIN_SLICE_S before it takes the engine back (b keeps it
    for its own next requests' first tokens); from then on the two take turns, each running its
    least slice (paused answers are not new requests: no early yield), until both end."""
    h = two_taking_turns(0.1)
    h.run_until(3)
    h.feed(RequestArrived("b", "rb"))
    h.run_until(3.6)
    h.feed(RequestArrived("b", "rb2"))
    assert h.admitted["rb2"] == pytest.approx(3.6), "b still has the engine"
    h.run_until(7.6)  # b awake at 3.25, 5.45; a at 4.35, 6.55; each paused a second after its wake
    assert pauses(h, "b") == [4.25, 6.45] and pauses(h, "a") == [3.0, 5.35, 7.55]
    h.run_until(10_000)
    assert {"ra", "rb", "rb2"} <= set(h.finished) and not any(isinstance(a, AbortInFlight) for _, a in h.actions)
    assert not any(q.wants for q in h.scheduler.queues.values())


def test_answers_whose_token_takes_longer_than_a_slice_double_the_slice_until_it_comes():
    """Each answer's token comes 1.5 s after its admission or resume, more than MIN_SLICE_S: paused
    at a slice, an answer loses its prefill and starts again at the next wake. a and b take turns;
    each wake that ends with a token still owed doubles the unit's next slices, so from the second
    (2 s) on they see the tokens, and both answers end (with a fixed slice neither ever did)."""
    h = two_taking_turns(1.5)
    h.run_until(3)
    h.feed(RequestArrived("b", "rb"))
    h.run_until(10_000)
    assert {"ra", "rb"} <= set(h.finished) and not any(isinstance(a, AbortInFlight) for _, a in h.actions)
    gaps = [round(p - w, 2) for w, p in zip(
        [t for t, x in h.actions if isinstance(x, (Boot, Wake)) and x.unit.model == "b"], pauses(h, "b"))]
    assert gaps[:4] == [1.2, 2.05, 2.05, 2.05], "b's boot (0.2 s) then its wakes (0.05 s) and its slices"


def test_a_new_request_of_another_model_goes_before_answers_paused_less_than_a_slice_ago():
    """a is paused for b at 3; c asks at 3.4, before a's paused answer may ask (4.0): c goes first."""
    h = two_taking_turns(0.1, "a", "b", "c")
    h.run_until(3)
    h.feed(RequestArrived("b", "rb"))
    h.run_until(3.4)
    h.feed(RequestArrived("c", "rc"))
    h.run_until(6)
    starts = [a.unit.model for t, a in h.actions if t > 3 and isinstance(a, (Boot, Wake))]
    assert starts[:3] == ["b", "c", "a"] and h.admitted["rc"] == pytest.approx(3.4 + 0.05 + 0.2)


def test_an_answer_paused_for_as_long_as_a_request_may_wait_is_answered():
    """A popular model takes a's room for good: a's paused answer cannot resume, and is aborted
    (a 503 in the daemon) once it has been paused for the queue timeout, as a queued one would be."""
    h = host(request_s=1000, queue_timeout=60)
    h.first_token_s = 0.1
    add(h, "a", min_runtime=0, max_wait=0, drain_timeout=0)
    h.run_until(2)
    h.feed(RequestArrived("a", "ra"))
    h.run_until(3)
    h.feed(ModelUpserted("p", policy(popular=True, memory_fraction=0.9), 1))
    h.run_until(62.9)
    assert "ra" not in h.finished and h.scheduler.queues["a"].wants
    h.run_until(63.1)
    abort = next(a for _, a in h.actions if isinstance(a, AbortInFlight))
    assert abort.unit.model == "a" and "paused for 60s" in abort.reason
    assert h.finished["ra"] == pytest.approx(63) and not h.scheduler.queues["a"].wants
    assert state(h, "a") == UnitState.asleep and state(h, "p") == UnitState.awake


def test_the_model_paused_for_another_does_not_take_back_the_room_made_for_it():
    """drainTimeout 0s: a is paused the instant b asks, so both wait since the same moment; the
    room a frees is b's."""
    h = host(request_s=1000)
    add(h, "a", drain_timeout=0, min_runtime=0, max_wait=0)
    add(h, "b", max_wait=0)
    h.run_until(2)
    h.feed(RequestArrived("a", "ra"))
    h.run_until(3)
    h.feed(RequestArrived("b", "rb"))
    h.run_until(8)
    starts = [str(a.unit) for t, a in h.actions if t >= 3 and isinstance(a, (Boot, Wake))]
    assert starts[0] == "b/0" and state(h, "b") == UnitState.awake and h.admitted["rb"] == pytest.approx(5.5)


def test_a_model_put_to_sleep_by_an_operator_aborts_what_runs_past_drain_timeout():
    h = host(request_s=1000)
    add(h, "a", drain_timeout=30)
    h.run_until(2)
    h.feed(RequestArrived("a", "ra"))
    h.feed(SleepRequested("a"))
    h.run_until(33)
    assert any(isinstance(a, AbortInFlight) for _, a in h.actions) and h.finished["ra"] == pytest.approx(32)
    assert not h.scheduler.queues["a"].wants and state(h, "a") == UnitState.asleep


def test_a_paused_request_whose_client_left_no_longer_wakes_its_model():
    h = a_busy_when_b_asks(drain_timeout=0)
    h.run_until(12.6)
    a = h.scheduler.units[UnitId("a", 0)]
    assert state(h, "a") == UnitState.asleep and a.kept == 1, "drainTimeout 0s: paused at once"
    h.feed(RequestFinished(a.id, "ra"))  # the daemon aborted it in the engine: its client went away
    assert a.kept == 0 and not h.scheduler.queues["a"].wants
    h.run_until(100)
    assert state(h, "a") == UnitState.asleep and state(h, "b") == UnitState.awake


def test_queued_requests_are_served_after_the_next_wake():
    h = host(request_s=1)
    add(h, "a", drain_timeout=30)
    add(h, "b")
    h.run_until(2)
    h.feed(RequestArrived("a", "ra"))
    h.feed(RequestArrived("b", "rb"))  # a is busy, but only for 1s
    h.run_until(200)
    assert {"ra", "rb"} <= set(h.admitted)


def test_idle_timeout_puts_a_model_to_sleep_by_itself():
    h = host()
    add(h, "a", idle_timeout=60)
    h.run_until(2)
    h.feed(RequestArrived("a", "r"))
    h.run_until(62)
    assert state(h, "a") == UnitState.awake
    h.run_until(64)
    assert state(h, "a") == UnitState.asleep
    h.feed(RequestArrived("a", "r2"))
    assert ("Wake", "a/0") in kinds(h, since=64)


def test_an_operator_sleep_drains_in_flight_then_sleeps_but_never_a_popular_model():
    h = host(gpus(2), request_s=3.0)
    add(h, "a")
    add(h, "p", popular=True)
    h.run_until(2)
    h.feed(RequestArrived("a", "r"))
    h.feed(SleepRequested("a"))
    h.feed(SleepRequested("p"))
    assert state(h, "a") == UnitState.draining and state(h, "p") == UnitState.awake
    h.run_until(10)
    assert state(h, "a") == UnitState.asleep and h.admitted == {"r": 2}, "the in-flight request finished first"
    assert ("AbortInFlight", "a/0") not in kinds(h)
    h.feed(SleepRequested("a"))
    assert kinds(h, since=10) == [], "asleep already: nothing to do"


def test_popular_models_boot_first_and_are_never_preempted():
    h = host()
    add(h, "p", popular=True, idle_timeout=1)
    add(h, "b")
    h.run_until(5)
    assert state(h, "p") == UnitState.awake
    h.feed(RequestArrived("b", "rb"))
    h.run_until(400)
    assert state(h, "p") == UnitState.awake
    assert h.rejected == {"rb": 503}, "b never fits beside p: it times out rather than preempting p"


def test_popular_models_beyond_capacity_stay_pending_with_a_reason():
    h = host()
    add(h, "p1", popular=True)
    add(h, "p2", popular=True)
    h.run_until(5)
    assert state(h, "p2") == UnitState.cold
    assert "popular models hold p1/0" in h.scheduler.units[UnitId("p2", 0)].reason


def test_unplaceable_models_are_refused_with_the_reason():
    h = host(gpus(2))
    add(h, "big", tensor_parallel=4)
    h.feed(RequestArrived("big", "r"))
    assert state(h, "big") == UnitState.unschedulable
    assert h.rejected == {"r": 503}
    assert "needs 4 contiguous" in h.scheduler.units[UnitId("big", 0)].reason


def test_product_must_match():
    h = host(gpus(1, product="NVIDIA-A40"))
    add(h, "a", product="NVIDIA-H100")
    assert state(h, "a") == UnitState.unschedulable


def test_tensor_parallel_takes_contiguous_devices_and_replicas_their_own():
    h = host(gpus(4))
    add(h, "tp2", tensor_parallel=2, replicas=2)
    boots = [a for _, a in h.actions if isinstance(a, Boot)]
    assert sorted(b.devices for b in boots) == [(0, 1), (2, 3)]


def test_queue_limit_gives_429_and_timeout_503():
    h = host(queue_limit=1, queue_timeout=20)
    add(h, "a", popular=True)
    add(h, "b")
    h.run_until(5)
    h.feed(RequestArrived("b", "r1"))
    h.feed(RequestArrived("b", "r2"))
    assert h.rejected == {"r2": 429}
    h.run_until(30)
    assert h.rejected["r1"] == 503
    retry_after = {a.request_id: a.retry_after for _, a in h.actions if type(a).__name__ == "Reject"}
    assert retry_after == {"r2": 5.0, "r1": 5.0}, "both are worth a retry: each says when"


def test_a_request_that_leaves_the_queue_is_forgotten():
    h = host()
    add(h, "a", popular=True)
    add(h, "b")
    h.run_until(5)
    h.feed(RequestArrived("b", "r1"))
    h.feed(RequestLeft("b", "r1"))
    assert not h.scheduler.queues["b"].waiting


def test_failed_wake_is_retried_with_backoff():
    h = host()
    add(h, "a")
    h.feed(EngineFailed(UnitId("a", 0), "CUDA out of memory"))
    assert state(h, "a") == UnitState.restarting
    h.feed(RequestArrived("a", "r"))
    h.run_until(0.5)
    assert not [a for t, a in h.actions if isinstance(a, Boot) and t > 0]
    h.run_until(5)
    assert state(h, "a") == UnitState.awake and "r" in h.admitted


def test_memory_used_by_others_is_not_ours_to_take():
    h = host()
    h.feed(DeviceMemoryRead(0, free_bytes=30 * GIB))  # someone else holds 50 GiB
    add(h, "a")  # needs 0.6 * 80 = 48 GiB
    assert state(h, "a") == UnitState.cold
    h.feed(DeviceMemoryRead(0, free_bytes=80 * GIB))
    assert state(h, "a") == UnitState.booting


def test_removing_a_model_stops_its_units_and_rejects_its_queue():
    h = host()
    add(h, "a", popular=True)
    add(h, "b")
    h.run_until(5)
    h.feed(RequestArrived("b", "r"))
    h.feed(ModelRemoved("b"))
    assert ("Stop", "b/0") in kinds(h) and h.rejected == {"r": 404}
    assert UnitId("b", 0) not in h.scheduler.units


def test_fewer_replicas_stop_the_extra_units():
    h = host(gpus(2))
    add(h, "a", replicas=2)
    add(h, "a", replicas=1)
    assert ("Stop", "a/1") in kinds(h)


def test_requests_in_flight_are_answered_before_an_unwanted_engine_stops():
    """A deletion, an edit into new engines: the requests the old engine serves get the reason
    (AbortInFlight, then Stop) instead of meeting an engine that stops under them."""
    h = host(request_s=100)
    add(h, "a")
    h.run_until(5)
    h.feed(RequestArrived("a", "r1"))
    h.feed(ModelUpserted("a", policy(), 1, generation=1))

    def retired():
        return [(type(x).__name__, x.reason) for t, x in h.actions
                if t == h.now and type(x).__name__ in ("AbortInFlight", "Stop")]
    assert retired() == [("AbortInFlight", "model a's spec changed and its engine restarts"), ("Stop", "")]
    h.run_until(10)
    h.feed(RequestArrived("a", "r2"))
    h.feed(ModelRemoved("a"))
    assert retired() == [("AbortInFlight", "model a was deleted"), ("Stop", "")]


def test_a_new_generation_restarts_the_units_and_keeps_the_queue():
    h = host()
    add(h, "a", popular=True)
    add(h, "b")
    h.run_until(5)
    h.feed(RequestArrived("b", "r"))
    h.feed(ModelUpserted("b", policy(), 1, generation=1))
    assert state(h, "b") == UnitState.cold and "r" in h.scheduler.queues["b"].waiting


def test_a_failure_that_retrying_cannot_fix_rejects_the_queue():
    h = host()
    add(h, "a")
    h.feed(RequestArrived("a", "r"))
    h.feed(EngineFailed(UnitId("a", 0), "unrecognized arguments: --x", retry=False))
    assert h.rejected == {"r": 503}
    h.run_until(1000)
    assert state(h, "a") == UnitState.failed


def test_a_failed_first_boot_is_retried_without_waiting_for_a_request():
    h = host()
    add(h, "a")
    h.feed(EngineFailed(UnitId("a", 0), "checksum mismatch"))
    h.run_until(5)
    assert state(h, "a") == UnitState.awake


def test_an_event_without_a_rule_is_an_error():
    """The core once found its rule by building a method name from the event's class name."""
    with pytest.raises(TypeError, match="no rule for"):
        Scheduler(gpus(), SchedulerConfig()).decide(object(), 0.0)


def test_an_engine_that_died_is_restarted_unprompted_after_its_backoff():
    h = host()
    add(h, "a")
    h.run_until(5)
    assert state(h, "a") == UnitState.awake
    h.feed(EngineFailed(UnitId("a", 0), "the vLLM engine process EngineCore_DP0 was killed by SIGKILL"))
    assert state(h, "a") == UnitState.restarting
    h.run_until(5.5)
    assert state(h, "a") == UnitState.restarting, "the backoff (retry_base, 1s) comes first"
    h.run_until(10)
    assert state(h, "a") == UnitState.awake, "restarted without any request"
    assert [a.reason for t, a in h.actions if isinstance(a, Boot) and t > 5] == ["restart after a failure"]


def test_a_crash_loop_is_given_up_and_its_queue_answered():
    h = host(crash_loop=3, crash_window=60)
    add(h, "a")
    for crash in range(3):
        h.run_until(h.now + 5)
        assert state(h, "a") == UnitState.awake
        if crash == 2:
            h.feed(RequestArrived("a", "r"))
        h.feed(EngineFailed(UnitId("a", 0), "killed by SIGKILL", crashed=True))
    gave_up = [a for _, a in h.actions if isinstance(a, GiveUp)]
    assert len(gave_up) == 1 and gave_up[0].reason.startswith("crash loop: its engine died 3 times in ")
    assert gave_up[0].reason.endswith("the last: killed by SIGKILL")
    h.run_until(h.now + 1000)
    assert state(h, "a") == UnitState.failed


def test_crashes_far_apart_are_not_a_loop():
    h = host(crash_loop=2, crash_window=60)
    add(h, "a")
    for _ in range(3):
        h.run_until(h.now + 100)
        h.feed(EngineFailed(UnitId("a", 0), "killed by SIGKILL", crashed=True))
    h.run_until(h.now + 100)
    assert state(h, "a") == UnitState.awake and not [a for _, a in h.actions if isinstance(a, GiveUp)]


def test_boots_that_keep_failing_are_retried_not_given_up():
    """Memory held by another process can fail boot after boot; that is not a crash loop."""
    h = host(crash_loop=2, crash_window=600)
    add(h, "a")
    for _ in range(5):
        h.feed(EngineFailed(UnitId("a", 0), "CUDA out of memory"))
        h.run_until(h.now + 70)
    assert not [a for _, a in h.actions if isinstance(a, GiveUp)]
    assert state(h, "a") == UnitState.awake


def test_a_level_1_sleeper_keeps_its_weights_claimed_and_wakes_into_its_own_space():
    h = host(gpus(1, total=100 * GIB))
    h.level1_held = 20 * GIB
    add(h, "a", memory_fraction=0.5, idle_timeout=10)
    h.run_until(5)
    h.run_until(30)  # idle: asleep at level 1, its 20 GiB of weights kept
    a = h.scheduler.units[UnitId("a", 0)]
    assert (a.state, a.held) == (UnitState.asleep, {0: 20 * GIB})
    assert h.scheduler.free() == {0: 80 * GIB}
    assert ("Sleep", 1) in [(type(x).__name__, x.level) for _, x in h.actions if hasattr(x, "level")]
    h.feed(RequestArrived("a", "r1"))
    assert kinds(h, since=h.now)[-1] == ("Wake", "a/0")
    assert h.scheduler.free() == {0: 50 * GIB}, "its held 20 GiB became part of its 50 GiB claim"


def test_a_model_short_of_memory_has_a_level_1_sleeper_deepened_first():
    h = host(gpus(1, total=100 * GIB))
    h.level1_held = 30 * GIB
    add(h, "a", memory_fraction=0.5, idle_timeout=10)
    add(h, "b", memory_fraction=0.4, idle_timeout=10)
    h.run_until(5)
    h.run_until(30)  # both asleep at level 1: 60 GiB held
    add(h, "c", memory_fraction=0.6)
    h.run_until(31)
    assert state(h, "c") == UnitState.cold and h.scheduler.free()[0] == 40 * GIB
    h.feed(RequestArrived("c", "r1"))
    deepened = [x for t, x in h.actions if t == h.now and type(x).__name__ == "Sleep"]
    assert [(str(x.unit), x.level) for x in deepened] == [("a/0", 2)], "the least recently used, to level 2"
    h.run_until(h.now + 5)
    assert h.scheduler.units[UnitId("a", 0)].held == {} and state(h, "a") == UnitState.asleep
    assert state(h, "c") == UnitState.awake and "r1" in h.admitted
    assert h.scheduler.units[UnitId("b", 0)].held == {0: 30 * GIB}, "only as much as c needed"


def test_a_sleeper_is_not_deepened_when_the_awake_victim_alone_makes_room():
    h = host(gpus(1, total=100 * GIB))
    h.level1_held = 10 * GIB
    add(h, "old", memory_fraction=0.3, idle_timeout=5)
    h.run_until(3)
    h.run_until(20)  # old: asleep at level 1, 10 GiB held
    add(h, "idle", memory_fraction=0.5, idle_timeout=300)
    h.run_until(25)  # idle: awake, never used: the second least recently used victim
    add(h, "new", memory_fraction=0.55)  # 40 GiB free: old's 10 are not enough, idle's 50 are
    h.run_until(26)
    h.feed(RequestArrived("new", "r1"))
    h.run_until(h.now + 5)
    assert "r1" in h.admitted
    assert h.scheduler.units[UnitId("old", 0)].held == {0: 10 * GIB}, "not deepened: idle's 50 GiB sufficed"
    assert not [a for _, a in h.actions if type(a).__name__ == "Sleep" and a.level == 2]
