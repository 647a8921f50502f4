"""The budgets that decide a unit's rung (awake, asleep, stopped): host memory, device memory with
sleepers' residue, and the count of sleeping engines. Driven with a fake clock through
SimulatedHost (tests/scheduler_sim.py), which reports the memory each engine is measured to hold."""

from scheduler.messages import Boot, EngineFailed, HostMemoryRead, ModelUpserted, RequestArrived, Sleep, Stop
from scheduler.units import UnitId, UnitState
from tests.scheduler.test_fairness import GIB, host, policy, state


def models(h, names, **kw) -> None:
    for name in names:
        h.feed(ModelUpserted(name, policy(idle_timeout=5, **kw), 1))


def ask_in_turn(h, names, start: float, gap: float = 20.0, check=None) -> float:
    """One request to each model, `gap` seconds apart (each is idle and asleep before the next)."""
    t = start
    for i, name in enumerate(names):
        h.run_until(t, check)
        h.feed(RequestArrived(name, f"{name}-{t:g}"), check)
        t += gap
    h.run_until(t, check)
    return t


def rung(h, name) -> str:
    return next(u.rung for u in h.scheduler.snapshot().units if u.id.model == name)


def stops(h, since=0.0) -> list[tuple[str, str]]:
    return [(a.unit.model, a.reason) for t, a in h.actions if isinstance(a, Stop) and t >= since]


def test_more_sleepers_than_max_sleeping_engines_stops_the_least_recently_used():
    h = host(max_sleeping=2)
    names = ["a", "b", "c", "d"]
    models(h, names)

    def at_most_two_asleep(h, before, actions):
        assert sum(u.state == UnitState.asleep for u in h.scheduler.units.values()) <= 2

    t = ask_in_turn(h, names, start=10, check=at_most_two_asleep)
    assert [rung(h, n) for n in names] == ["stopped", "stopped", "asleep", "asleep"], "the least recently used"
    assert {m for m, _ in stops(h)} >= {"a", "b"}
    assert all("more than maxSleepingEngines (2) were asleep, and it was the least recently used" in why
               for _, why in stops(h))

    h.feed(RequestArrived("a", "again"))
    boot = [a for t2, a in h.actions if isinstance(a, Boot) and a.unit.model == "a" and t2 >= t]
    assert boot and "starting cold, it was stopped: more than maxSleepingEngines" in boot[0].reason
    (replica,) = [u for u in h.scheduler.snapshot().units if u.id.model == "a"]
    assert replica.reason.startswith("starting cold, it was stopped: more than maxSleepingEngines"), "status says so"
    h.run_until(t + 10, at_most_two_asleep)
    assert "again" in h.admitted, "a stopped model is started again on demand"


def host_limited(limit_gib: float, **config):
    h = host(host_limit=int(limit_gib * GIB), **config)
    h.host_awake, h.host_asleep = 3 * GIB, {1: 2 * GIB, 2: 1 * GIB}
    return h


def within_host_budget(h, before, actions):
    view = h.scheduler.snapshot().host
    assert view.used <= view.limit, f"host ledger {view.used / GIB:.2f} GiB over its {view.limit / GIB:.2f} GiB"


def test_sleepers_are_stopped_least_recently_used_first_so_host_memory_stays_within_its_budget():
    h = host_limited(6)
    names = ["a", "b", "c", "d", "e"]
    models(h, names, host_estimate=3 * GIB)
    t = ask_in_turn(h, names, start=10, check=within_host_budget)
    t = ask_in_turn(h, names, start=t, check=within_host_budget)
    assert len(h.admitted) == 10 and not h.rejected, "every request answered"
    stopped = stops(h)
    assert stopped and all("host memory" in why and "least recently used" in why for _, why in stopped)
    levels = [a.level for _, a in h.actions if isinstance(a, Sleep)]
    assert 1 in levels and 2 in levels, "level 1 while host memory lasts, level 2 once it is short"
    assert any(u.rung == "stopped" for u in h.scheduler.snapshot().units)


def test_a_first_boot_reserves_the_estimate_and_later_ones_the_measured_peak():
    h = host_limited(10)
    h.host_awake = 2 * GIB
    models(h, ["a"], host_estimate=4 * GIB)
    assert h.scheduler.units[UnitId("a", 0)].host_bytes == 4 * GIB, "booting: the policy's estimate reserved"
    h.run_until(3)
    assert h.scheduler.units[UnitId("a", 0)].host_bytes == 2 * GIB, "awake: what it was measured to hold"
    assert h.scheduler.host_peak["a"] == 2 * GIB


def test_a_model_waits_for_host_memory_while_a_busy_engine_holds_it_then_starts():
    h = host_limited(5, request_s=100.0)
    models(h, ["a"], host_estimate=3 * GIB)
    h.run_until(3)
    h.feed(RequestArrived("a", "busy"))  # a is busy for 100 s, and big may not preempt it (maxWaitTime)
    h.feed(ModelUpserted("big", policy(memory_fraction=0.3, max_wait=1000, host_estimate=int(4.5 * GIB)), 1))
    assert h.scheduler.host_overhead == 3 * GIB, "a's boot was measured: first boots now reserve that, not a guess"
    h.feed(RequestArrived("big", "r"))
    h.run_until(60, within_host_budget)
    big = h.scheduler.units[UnitId("big", 0)]
    assert big.state == UnitState.cold and big.reason == ("waiting for host memory: it needs 3.00 GiB, the budget "
                                                          "is 5.00 GiB")
    assert "r" not in h.admitted, "the device has room, host memory has not"
    h.request_s = 1.0
    h.run_until(200, within_host_budget)  # a finishes, idles and sleeps at level 2: room enough
    assert "r" in h.admitted and state(h, "a") == UnitState.asleep and not stops(h)


def test_host_memory_growing_past_the_budget_stops_sleepers_but_never_one_with_requests_waiting():
    h = host_limited(8)
    models(h, ["a", "b", "c"], host_estimate=3 * GIB, max_wait=50)
    t = ask_in_turn(h, ["a", "b"], start=10)  # a, then b, asleep at level 1: 2 GiB each
    h.request_s = 100.0
    h.feed(RequestArrived("c", "long"))  # c boots and stays busy for 100 s
    h.run_until(t + 5)
    assert state(h, "c") == UnitState.awake and state(h, "a") == state(h, "b") == UnitState.asleep
    h.feed(RequestArrived("a", "waits"))  # a, least recently used, now has a request waiting
    h.feed(HostMemoryRead(4 * GIB))  # c's 3 GiB, a's and b's at least 1 GiB each, and 4: over 8
    assert stops(h, since=t) and [m for m, _ in stops(h, since=t)] == ["b"], "not a: it has a request waiting"
    assert "host memory was over its budget (8.00 GiB)" in stops(h, since=t)[0][1]


def test_sleepers_holding_device_memory_are_stopped_when_a_waiting_model_needs_it():
    h = host()
    h.residue = 12 * GIB  # a CUDA context and pools that a level-2 sleep keeps on the GPU
    names = ["a", "b", "c", "d"]
    models(h, names, sleep_level=2)
    ask_in_turn(h, names, start=10)
    device = [(m, why) for m, why in stops(h) if "device memory" in why]
    assert device and device[0][0] == "a", "the least recently used sleeper made room"
    assert len(h.admitted) == 4
    assert all(rung(h, n) in ("asleep", "stopped") for n in names)


def test_a_failed_engine_holds_no_host_memory():
    h = host_limited(10)
    models(h, ["a"], host_estimate=3 * GIB)
    h.run_until(3)
    h.feed(EngineFailed(UnitId("a", 0), "killed", crashed=True))
    assert h.scheduler.snapshot().host.used == 0


def test_an_idle_awake_engine_goes_to_sleep_at_level_2_when_host_memory_is_what_is_short():
    h = host_limited(5.5)
    models(h, ["a"], host_estimate=3 * GIB)
    h.run_until(3)  # a is awake, never used: idle
    h.feed(ModelUpserted("b", policy(memory_fraction=0.3, host_estimate=int(3.5 * GIB)), 1))
    h.feed(RequestArrived("b", "r"))
    drains = [a for _, a in h.actions if type(a).__name__ == "Drain"]
    assert drains and drains[0].unit.model == "a" and drains[0].reason.startswith("host memory for b")
    assert [a.level for _, a in h.actions if isinstance(a, Sleep)] == [2], "level 2: no weights kept in host memory"
    h.run_until(30, within_host_budget)
    assert "r" in h.admitted and state(h, "a") == UnitState.asleep, "the device had room; host memory now has too"


def test_models_never_asked_are_not_booted_unprompted_once_host_memory_is_short():
    h = host_limited(6)
    names = ["a", "b", "c", "d"]
    models(h, names, host_estimate=3 * GIB)
    h.run_until(60, within_host_budget)  # a (level 1, 2 GiB), then b and c (level 2 once short, 1 GiB)
    assert [state(h, n) for n in names] == [UnitState.asleep] * 3 + [UnitState.cold]
    assert [h.scheduler.units[UnitId(n, 0)].level for n in names[:3]] == [1, 2, 2]
    assert not stops(h), "nothing was booted only to be stopped again"
    h.feed(RequestArrived("c", "r"))
    h.run_until(90, within_host_budget)
    assert "r" in h.admitted, "asked, it boots: a sleeper makes room"


def test_engines_that_grew_since_they_were_measured_count_until_measured_again():
    h = host_limited(8)
    models(h, ["a", "b"], host_estimate=3 * GIB)
    t = ask_in_turn(h, ["a", "b"], start=10)  # both asleep at level 1: 2 GiB each, as measured
    h.feed(HostMemoryRead(GIB, total_bytes=8 * GIB))  # the daemon holds 1, the processes 3 more than measured
    assert h.scheduler.snapshot().host.used == 8 * GIB and h.scheduler.host_other == 4 * GIB
    assert [m for m, _ in stops(h, since=t)] == [], "at the limit, not over it"
    h.feed(HostMemoryRead(GIB, total_bytes=2 * GIB))  # less than the ledger: the daemon's own stays
    assert h.scheduler.host_other == GIB
