"""bench/trace_gen.py and bench/trace_sim.py: the trace has the shape asked for, the same seed
gives the same trace, and the simulator serves a small trace to the end under gthreadd's real
core and under the peers' policies. No engines: a few seconds."""

import dataclasses
import importlib.util
import math
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))  # last: bench/trace.py must not shadow the stdlib

from trace_gen import Periodic, Request, TraceParams, coefficient_of_variation, generate, popularity  # noqa: E402
from trace_sim import (  # noqa: E402
    Costs, EngineTimeModel, LlamaSwapPolicy, OllamaPolicy, Simulation, gthreadd_core, models_that_fit,
)

from gthreadd.spec.resource import model_yaml  # noqa: E402
from scheduler.inventory import CPU_PRODUCT, Device  # noqa: E402
from scheduler.units import UnitState  # noqa: E402

GIB = 1 << 30
DEVICE = Device(0, "cpu-0", CPU_PRODUCT, 100 * GIB, 30 * GIB)
"""A CPU device as `--cpu-memory-share 0.3` makes one: room for one Model of 0.20 awake."""
COSTS = Costs(boot_s=20.0, wake_s=3.0, wake_deep_s=4.0, sleep_s=0.5, deepen_s=0.25, held_bytes=GIB, stop_s=2.0,
              prefill_s=0.2, token_s=0.03, batch_slowdown=0.3, prefill_slowdown=0.5)
SPEC = ('  gpuMemoryUtilization: "0.20"\n  sleep: {idleTimeout: 10s}\n'
        '  fairness: {minRuntime: 2s, maxWaitTime: 0s}\n')
FILES = {f"m{i}": model_yaml(f"m{i}", "/models/demo", SPEC) for i in range(4)}
WARMUP = ["m3", "m2", "m1", "m0"]


def test_the_same_seed_gives_the_same_trace():
    params = TraceParams(duration_s=600, seed=7)
    assert generate(params) == generate(params)
    assert generate(params) != generate(TraceParams(duration_s=600, seed=8))


def test_popularity_is_zipf_and_arrivals_are_as_bursty_as_asked():
    trace = generate(TraceParams(models=4, duration_s=20000, rate=1.0, zipf=1.0, cv=3.0, seed=1))
    shares = popularity(4, 1.0)
    assert shares == pytest.approx([0.48, 0.24, 0.16, 0.12])
    for i, share in enumerate(shares):
        times = [r.at for r in trace if r.model == f"m{i}"]
        assert len(times) / len(trace) == pytest.approx(share, rel=0.15)
        assert coefficient_of_variation(times) == pytest.approx(3.0, rel=0.15)
    poisson = generate(TraceParams(models=1, duration_s=5000, rate=1.0, cv=1.0, seed=1))
    assert coefficient_of_variation([r.at for r in poisson]) == pytest.approx(1.0, rel=0.1)
    assert all(16 <= r.max_tokens <= 32 for r in trace)


def test_a_periodic_model_gets_its_bursts_on_its_timer():
    trace = generate(TraceParams(models=2, duration_s=100, periodic=(Periodic(1, 20.0, 3),), seed=2))
    times = sorted(r.at for r in trace if r.model == "m1")
    assert len(times) == 15
    starts = times[::3]
    assert all(b - a == pytest.approx(20.0, abs=0.01) for a, b in zip(starts, starts[1:]))


def test_the_engine_time_model_shares_the_engine_between_streams():
    engine = EngineTimeModel(COSTS, 0.0)
    engine.add("a", 11, 0.0)
    assert engine.next_milestone() == (pytest.approx(0.2), "a", "first")
    engine.advance(0.2)
    engine.first_token("a")
    assert engine.next_milestone() == (pytest.approx(0.2 + 10 * 0.03), "a", "end")
    engine.add("b", 1, 0.2)  # two streams: a prefill at 1 / 1.5 of its speed alone, a decode at 1 / 1.3
    assert engine.next_milestone() == (pytest.approx(0.2 + 0.2 * 1.5), "b", "first")
    engine.remove("b", 0.3)
    assert engine.next_milestone()[0] == pytest.approx(0.3 + (10 * 0.03 - 0.1 / 1.3))


def run(policy, trace, files=FILES, costs=COSTS, warmup=WARMUP):
    _, upserts = gthreadd_core(files, DEVICE)
    return Simulation(policy, costs, upserts).run(trace, warmup, settle_s=1.0)


SMALL = generate(TraceParams(models=4, duration_s=60, rate=0.5, seed=3))


def test_gthreadds_core_serves_every_request_of_a_small_trace():
    assert models_that_fit(FILES, DEVICE) == 1
    core, upserts = gthreadd_core(FILES, DEVICE)
    outcomes = Simulation(core, COSTS, upserts).run(SMALL, WARMUP, settle_s=1.0)
    assert len(SMALL) > 10 and len({r.model for r in SMALL}) > 1
    assert all(o.status == 200 and o.ttft is not None and o.e2e >= o.ttft for o in outcomes)
    again = run(gthreadd_core(FILES, DEVICE)[0], SMALL)
    assert [(o.ttft, o.e2e) for o in outcomes] == [(o.ttft, o.e2e) for o in again]


@pytest.mark.parametrize("policy", [LlamaSwapPolicy, lambda: OllamaPolicy(fits=1)])
def test_the_peers_policies_serve_every_request_too(policy):
    outcomes = run(policy(), SMALL)
    assert all(o.status == 200 and o.ttft is not None for o in outcomes)


def test_a_swap_costs_a_stop_and_a_boot_where_gthreadd_pays_a_sleep_and_a_wake():
    trace = generate(TraceParams(models=2, duration_s=1, rate=0.01, periodic=(Periodic(1, 1.0, 1),), seed=0))
    assert [r.model for r in trace] == ["m1"]
    core, upserts = gthreadd_core({m: FILES[m] for m in ("m0", "m1")}, DEVICE)
    ours = Simulation(core, COSTS, upserts).run(trace, ["m1", "m0"], settle_s=5.0)[0]
    swap = run(LlamaSwapPolicy(), trace, {m: FILES[m] for m in ("m0", "m1")}, warmup=["m1", "m0"])[0]
    assert ours.ttft == pytest.approx(COSTS.sleep_s + COSTS.wake_s + COSTS.prefill_s)
    assert swap.ttft == pytest.approx(COSTS.stop_s + COSTS.boot_s + COSTS.prefill_s)


def test_a_level_1_sleeper_that_holds_too_much_is_deepened_and_wakes_from_level_2():
    trace = generate(TraceParams(models=2, duration_s=1, rate=0.01, periodic=(Periodic(1, 1.0, 1),), seed=0))
    heavy = dataclasses.replace(COSTS, held_bytes=15 * GIB)  # 20 GiB awake + 15 held > 30 GiB
    core, upserts = gthreadd_core({m: FILES[m] for m in ("m0", "m1")}, DEVICE)
    ours = Simulation(core, heavy, upserts).run(trace, ["m1", "m0"], settle_s=5.0)[0]
    assert ours.ttft == pytest.approx(heavy.sleep_s + heavy.deepen_s + heavy.wake_deep_s + heavy.prefill_s)


def test_a_level_2_sleepers_residue_counts_and_a_sleeper_it_does_not_leave_room_for_is_stopped():
    """20 GiB awake, each sleeper 4 GiB at level 1 and 3.5 GiB at level 2, of 30: three sleepers do
    not fit beside the awake model at either level (20 + 3 x 3.5), so the core stops one (the
    simulator carries out its Stop), and the trace is still served."""
    costs = dataclasses.replace(COSTS, held_bytes=4 * GIB, held_deep_bytes=int(3.5 * GIB))
    trace = generate(TraceParams(models=4, duration_s=1, rate=0.01, periodic=(Periodic(3, 1.0, 1),), seed=0))
    core, upserts = gthreadd_core(FILES, DEVICE)
    assert [o.status for o in Simulation(core, costs, upserts).run(trace, WARMUP, settle_s=5.0)] == [200]
    units = core.snapshot().units
    assert [u.state for u in units].count(UnitState.cold) == 1
    assert sum(u.claims.get(0, 0) for u in units) <= DEVICE.capacity_bytes


def test_a_model_preempted_with_drain_timeout_0_pauses_its_request_and_finishes_it_after_its_next_wake():
    """m0 runs a long request (awake past its minRuntime); m1's request preempts it, and with
    drainTimeout 0s m0's request is paused at once rather than waited for: m1's first token comes
    a sleep and a wake later (not m0's request later), and m0's request ends after m1's."""
    spec = SPEC.replace("sleep: {idleTimeout: 10s}", "sleep: {idleTimeout: 10s, drainTimeout: 0s}")
    files = {m: model_yaml(m, "/models/demo", spec) for m in ("m0", "m1")}
    trace = [Request("a", 0.0, "m0", 301, "q"), Request("b", 1.0, "m1", 11, "q")]
    core, upserts = gthreadd_core(files, DEVICE)
    long, short = Simulation(core, COSTS, upserts).run(trace, ["m1", "m0"], settle_s=5.0)
    assert (long.status, short.status) == (200, 200)
    assert short.ttft == pytest.approx(COSTS.sleep_s + COSTS.wake_s + COSTS.prefill_s)
    alone = COSTS.prefill_s + 300 * COSTS.token_s
    assert long.at + long.e2e > short.at + short.e2e and long.e2e > alone + COSTS.prefill_s


def test_a_model_taken_back_just_after_its_wake_yields_at_its_first_token_in_the_simulator():
    """The simulator reports first tokens to the core (FirstToken): m1, woken at 4.5 s for its
    request (m0 paused for it at 1 s), is taken back by m0's next request at 4.6 s and yields at its
    first token (4.7 s), not a least slice after its wake (5.5 s). m0's new request shares its
    prefill with the recompute of m0's resumed answer."""
    spec = SPEC.replace("sleep: {idleTimeout: 10s}", "sleep: {idleTimeout: 10s, drainTimeout: 0s}").replace(
        "minRuntime: 2s", "minRuntime: 0s")
    files = {m: model_yaml(m, "/models/demo", spec) for m in ("m0", "m1")}
    trace = [Request("a", 0.0, "m0", 301, "q"), Request("b", 1.0, "m1", 301, "q"), Request("c", 4.6, "m0", 11, "q")]
    core, upserts = gthreadd_core(files, DEVICE)
    long, other, back = Simulation(core, COSTS, upserts).run(trace, ["m1", "m0"], settle_s=5.0)
    assert other.ttft == pytest.approx(COSTS.sleep_s + COSTS.wake_s + COSTS.prefill_s)
    yielded = other.at + other.ttft
    assert back.ttft == pytest.approx(yielded - back.at + COSTS.sleep_s + COSTS.wake_s
                                      + COSTS.prefill_s * (1 + COSTS.prefill_slowdown))
    assert all(o.status == 200 for o in (long, other, back))


def test_the_first_request_after_quiet_pays_the_idle_cost_and_one_beside_it_does_not():
    costs = dataclasses.replace(COSTS, idle_cost_s=0.5, idle_s=10.0)
    trace = [Request("a", 25.0, "m0", 11, "q"), Request("b", 28.8, "m0", 11, "q")]  # b while a decodes
    core, upserts = gthreadd_core({"m0": FILES["m0"]}, DEVICE)
    first, beside = Simulation(core, costs, upserts).run(trace, ["m0"], settle_s=5.0)
    # m0 idled to sleep; a wakes it, and is admitted 25 + 5 s of settle + the wake after the warm-up
    cold = 0.5 * -math.expm1(-(30.0 + costs.wake_s) / 10.0)
    assert first.ttft == pytest.approx(costs.wake_s + costs.prefill_s + cold)
    assert beside.ttft <= costs.prefill_s * (1 + costs.prefill_slowdown) + 1e-9, "a was in flight: no idle cost"


def bench_trace():
    """bench/trace.py, loaded from its path: `import trace` is the standard library's."""
    path = Path(__file__).resolve().parents[2] / "bench" / "trace.py"
    spec = importlib.util.spec_from_file_location("bench_trace", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_idle_cost_is_fitted_to_what_the_simulation_misses_not_to_the_wakes_it_charges():
    """Requests that each wake a sleeping model after long quiet: measured exactly as simulated
    (their wake included), the idle cost is 0; measured 0.3 s later, it is 0.3 s. Fitted against
    the awake prefill instead, it took the wake in and the simulation charged it twice."""
    trace = [Request(f"r{i}", 40.0 * i, "m0", 4, "q") for i in range(1, 5)]
    core, upserts = gthreadd_core({"m0": FILES["m0"]}, DEVICE)
    simulated = Simulation(core, COSTS, upserts).run(trace, ["m0"], settle_s=5.0)
    expected = {o.id: o.ttft for o in simulated}
    sent = {r.id: r.at for r in trace}
    assert all(o.ttft >= COSTS.wake_s for o in simulated), "each request woke m0"
    fit = bench_trace().idle_costs
    assert fit(simulated, sent, expected, below=COSTS.boot_s / 2)[0] == 0.0
    later = [dataclasses.replace(o, ttft=o.ttft + 0.3, e2e=o.e2e + 0.3) for o in simulated]
    assert fit(later, sent, expected, below=COSTS.boot_s / 2)[0] == pytest.approx(0.3, rel=0.01)
    booted = [dataclasses.replace(o, ttft=o.ttft + COSTS.boot_s, e2e=o.e2e + COSTS.boot_s) if o.id == "r2" else o
              for o in later]
    assert fit(booted, sent, expected, below=COSTS.boot_s / 2)[0] == pytest.approx(0.3, rel=0.01), \
        "a boot on one side only is left out"


def test_the_level_costs_are_read_from_the_daemons_events_whatever_a_wake_says_besides():
    """The messages as gthreadd/runtime/fleet.py writes them: a wake from level 2 says its weights
    were read again, a pre-wake gives its reason; a stopped model sleeps at no level."""
    def event(reason: str, message: str, count: int = 1) -> dict:
        return {"reason": reason, "message": message, "count": count}
    events = {
        "m0": [event("Slept", "replica 0: asleep at level 1 (KV cache freed, weights kept) in 0.05s", 2),
               event("Woke", "replica 0: awake in 0.07s", 2),
               event("Slept", "replica 0: asleep at level 1 (KV cache freed, weights kept) in 0.05s"),
               event("Slept", "replica 0: asleep at level 2 (KV cache and weights freed) in 0.03s"),
               event("Woke", "replica 0: awake, its weights read again in 1.20s"),
               event("Slept", "replica 0: asleep at level 1 (KV cache freed, weights kept) in 0.05s"),
               event("Woke", "replica 0: awake (pre-wake: due in 2s) in 0.09s")],
        "m1": [event("Slept", "replica 0: asleep at level 2 (KV cache and weights freed) in 0.03s"),
               event("Stopped", "replica 0: engine stopped for device memory in 0.20s")],
        "m2": [event("Slept", "replica 0: asleep at level 1 (KV cache freed, weights kept) in 0.05s")]}
    seconds, final = bench_trace().level_costs(events)
    assert seconds["wake"] == pytest.approx((0.07 * 2 + 0.09) / 3)
    assert seconds["wake_deep"] == pytest.approx(1.20)
    assert seconds["deepen"] == pytest.approx(0.03)
    assert final == {"m2": 1}


def test_each_request_is_placed_by_the_one_before_it_in_the_trace():
    trace = [Request("c", 2.5, "m1", 8, "q"), Request("a", 0.0, "m0", 8, "q"), Request("b", 1.0, "m0", 8, "q"),
             Request("d", 9.0, "m1", 8, "q"), Request("e", 12.5, "m0", 8, "q")]
    assert bench_trace().situations(trace) == {
        "a": "the first", "b": "after its own model < 2 s", "c": "after another model < 2 s",
        "d": "after its own model >= 2 s", "e": "after another model >= 2 s"}
