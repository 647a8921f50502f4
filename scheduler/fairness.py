"""The decision core: `Scheduler.decide(event, now) -> [actions]`.

Pure: it reads no clock, does no I/O and logs nothing; time arrives as `now` and timers as
events, so every rule runs under a fake clock in tests. The effects layer (gthreadd/runtime/scheduling.py)
carries out the actions and feeds their outcomes back as events.

Rules (seeds 000, Sleep and Fairness):
- popular units are booted at once, never slept and never preempted;
- a request for a model with no awake unit queues and asks for a wake; free capacity is used
  first, then units that are idle (past their idleTimeout, or never used since boot);
- other units may be preempted for a waiting model only once its oldest request has waited
  maxWaitTime, and only after they have been awake minRuntime; victims are taken least recently
  used first, never from a model that has requests waiting itself (no ping-pong);
- waiting models are served oldest first, and capacity that is being freed for one is not given to
  another (no starvation); every queued request is admitted or times out;
- a unit idle for idleTimeout sleeps; sleeping drains in-flight requests for up to drainTimeout,
  then aborts the rest.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from scheduler.inventory import Device
from scheduler.messages import (
    AbortInFlight, Action, Admit, Boot, DeviceMemoryRead, Drain, EngineAsleep, EngineAwake, EngineFailed,
    Event, GiveUp, ModelRemoved, ModelUpserted, Reject, RequestArrived, RequestFinished, RequestLeft, SetTimer, Sleep,
    SleepRequested, Stop, TimerFired, Wake,
)
from scheduler.placement import claim_bytes, fits, never_placeable, windows
from scheduler.snapshot import SchedulerSnapshot, UnitView
from scheduler.units import CLAIMING, ModelQueue, Policy, Unit, UnitId, UnitState


@dataclass(frozen=True)
class SchedulerConfig:
    queue_limit: int = 256
    queue_timeout: float = 300.0
    retry_base: float = 1.0
    retry_max: float = 60.0
    crash_loop: int = 5
    """This many engine deaths of a unit within `crash_window` seconds, and it is given up."""
    crash_window: float = 600.0


class Scheduler:
    def __init__(self, devices: Sequence[Device], config: SchedulerConfig = SchedulerConfig()):
        self.devices = {d.index: d for d in devices}
        self.config = config
        self.units: dict[UnitId, Unit] = {}
        self.queues: dict[str, ModelQueue] = {}
        self.foreign: dict[int, int] = {i: 0 for i in self.devices}

    # -- queries ---------------------------------------------------------------------------------
    def units_of(self, model: str) -> list[Unit]:
        return [u for u in self.units.values() if u.id.model == model]

    def claimed(self, states: frozenset[UnitState] = CLAIMING) -> dict[int, int]:
        used = {i: 0 for i in self.devices}
        for unit in self.units.values():
            if unit.state in states:
                for i in unit.devices:
                    used[i] += claim_bytes(unit.policy, self.devices[i])
        return used

    def snapshot(self) -> SchedulerSnapshot:
        return SchedulerSnapshot(
            devices=dict(self.devices),
            units=tuple(UnitView(u.id, u.state, u.devices, u.in_flight, u.booted, u.reason,
                                 {i: claim_bytes(u.policy, self.devices[i]) for i in u.devices}
                                 if u.state in CLAIMING else {})
                        for u in self.units.values()),
            queued={model: len(queue.waiting) for model, queue in self.queues.items()},
            free=self.free(), claimed=self.claimed(), foreign=dict(self.foreign))

    def free(self) -> dict[int, int]:
        used = self.claimed()
        return {i: d.capacity_bytes - used[i] - self.foreign[i] for i, d in self.devices.items()}

    # -- the decision ----------------------------------------------------------------------------
    def decide(self, event: Event, now: float) -> list[Action]:
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise TypeError(f"the scheduler has no rule for {event!r}")
        actions: list[Action] = handler(self, event, now)
        return actions + self._schedule(now)

    def _on_ModelUpserted(self, e: ModelUpserted, now: float) -> list[Action]:
        actions: list[Action] = []
        self.queues.setdefault(e.model, ModelQueue())
        reason = never_placeable(list(self.devices.values()), e.policy)
        for replica in range(max(e.replicas, 0)):
            unit = self.units.setdefault(UnitId(e.model, replica),
                                         Unit(UnitId(e.model, replica), e.policy, generation=e.generation))
            unit.policy = e.policy
            if unit.generation != e.generation:  # new engines: stop the old one, start over cold
                if unit.state not in (UnitState.cold, UnitState.unschedulable):
                    actions.append(Stop(unit.id))
                self.units[unit.id] = unit = Unit(unit.id, e.policy, generation=e.generation)
            if reason and unit.state == UnitState.cold:
                unit.to(UnitState.unschedulable)
            elif not reason and unit.state == UnitState.unschedulable:
                unit.to(UnitState.cold)
            unit.reason = reason if unit.state == UnitState.unschedulable else unit.reason
        for unit in self.units_of(e.model):
            if unit.id.replica >= e.replicas:
                actions.append(Stop(unit.id))
                del self.units[unit.id]
        return actions

    def _on_ModelRemoved(self, e: ModelRemoved, now: float) -> list[Action]:
        actions: list[Action] = [Stop(u.id) for u in self.units_of(e.model)]
        for unit in self.units_of(e.model):
            del self.units[unit.id]
        queue = self.queues.pop(e.model, ModelQueue())
        actions += [Reject(rid, 404, f"model {e.model} was removed") for rid in queue.waiting]
        return actions

    def _on_RequestArrived(self, e: RequestArrived, now: float) -> list[Action]:
        units = self.units_of(e.model)
        if not units:
            return [Reject(e.request_id, 404, f"no Model named {e.model!r} on this host")]
        awake = [u for u in units if u.state == UnitState.awake]
        if awake:
            return [self._admit(e.request_id, min(awake, key=lambda u: u.in_flight), now)]
        if all(u.state == UnitState.unschedulable for u in units):
            return [Reject(e.request_id, 503, f"model {e.model} cannot run on this host: {units[0].reason}")]
        queue = self.queues[e.model]
        if len(queue.waiting) >= self.config.queue_limit:
            return [Reject(e.request_id, 429, f"model {e.model} has {len(queue.waiting)} requests waiting "
                                              f"(queue limit {self.config.queue_limit})", retry_after=5.0)]
        queue.waiting[e.request_id] = now
        return [SetTimer(now + self.config.queue_timeout, ("queue", e.model, e.request_id))]

    def _on_RequestLeft(self, e: RequestLeft, now: float) -> list[Action]:
        self.queues.get(e.model, ModelQueue()).waiting.pop(e.request_id, None)
        return []

    def _on_RequestFinished(self, e: RequestFinished, now: float) -> list[Action]:
        unit = self.units.get(e.unit)
        if unit is None:
            return []
        unit.in_flight = max(0, unit.in_flight - 1)
        unit.last_used = now
        if unit.state == UnitState.draining and unit.in_flight == 0:
            unit.to(UnitState.sleeping)
            return [Sleep(unit.id)]
        if unit.state == UnitState.awake and unit.in_flight == 0:
            return [SetTimer(now + unit.policy.idle_timeout, ("idle", unit.id))]
        return []

    def _on_EngineAwake(self, e: EngineAwake, now: float) -> list[Action]:
        unit = self.units.get(e.unit)
        if unit is None or unit.state not in (UnitState.booting, UnitState.waking):
            return []
        unit.to(UnitState.awake)
        unit.awake_since, unit.booted, unit.failures, unit.reason = now, True, 0, ""
        queue = self.queues[unit.id.model]
        actions: list[Action] = [self._admit(rid, unit, now) for rid in list(queue.waiting)]
        queue.waiting.clear()
        if not actions:
            actions.append(SetTimer(now + unit.policy.idle_timeout, ("idle", unit.id)))
        return actions

    def _on_EngineAsleep(self, e: EngineAsleep, now: float) -> list[Action]:
        unit = self.units.get(e.unit)
        if unit is not None and unit.state == UnitState.sleeping:
            unit.to(UnitState.asleep)
            unit.devices, unit.in_flight = (), 0
        return []

    def _on_EngineFailed(self, e: EngineFailed, now: float) -> list[Action]:
        unit = self.units.get(e.unit)
        if unit is None or unit.state == UnitState.failed:
            return []
        unit.state = UnitState.failed  # from any engine state: the engine is gone
        unit.devices, unit.in_flight, unit.reason = (), 0, e.reason
        unit.failures += 1
        unit.crashes = [t for t in unit.crashes if now - t < self.config.crash_window] + ([now] if e.crashed else [])
        actions: list[Action] = []
        if e.retry and e.crashed and len(unit.crashes) >= self.config.crash_loop:
            unit.reason = (f"crash loop: its engine died {len(unit.crashes)} times in "
                           f"{now - unit.crashes[0]:.0f}s, the last: {e.reason}")
            e = EngineFailed(e.unit, unit.reason, retry=False)
            actions.append(GiveUp(unit.id, unit.reason))
        if not e.retry:
            unit.retry_at = float("inf")
            if all(u.state == UnitState.failed and u.retry_at == float("inf") for u in self.units_of(unit.id.model)):
                queue = self.queues[unit.id.model]
                actions += [Reject(rid, 503, f"model {unit.id.model} failed: {e.reason}") for rid in queue.waiting]
                queue.waiting.clear()
            return actions
        unit.retry_at = now + min(self.config.retry_max, self.config.retry_base * 2 ** (unit.failures - 1))
        return [SetTimer(unit.retry_at, ("retry", unit.id))]

    def _on_TimerFired(self, e: TimerFired, now: float) -> list[Action]:
        kind = e.key[0]
        if kind == "queue":
            _, model, rid = e.key
            if self.queues.get(model, ModelQueue()).waiting.pop(rid, None) is not None:
                return [Reject(rid, 503, f"timed out after {self.config.queue_timeout:g}s waiting for "
                                         f"model {model} to wake")]
        elif kind == "idle":
            unit = self.units.get(e.key[1])
            if (unit is not None and unit.state == UnitState.awake and not unit.policy.popular
                    and unit.in_flight == 0 and not self.queues[unit.id.model].waiting
                    and now - unit.last_used >= unit.policy.idle_timeout):
                return self._drain(unit, f"idle for {unit.policy.idle_timeout:g}s", now)
        elif kind == "drain":
            unit = self.units.get(e.key[1])
            if unit is not None and unit.state == UnitState.draining:
                unit.to(UnitState.sleeping)
                return [AbortInFlight(unit.id, f"model {unit.id.model} is going to sleep and its "
                                               f"drainTimeout ({unit.policy.drain_timeout:g}s) ran out"),
                        Sleep(unit.id)]
        return []  # "retry" and "recheck" only need the scheduling pass that follows every event

    def _on_DeviceMemoryRead(self, e: DeviceMemoryRead, now: float) -> list[Action]:
        device = self.devices.get(e.device)
        if device is not None:
            # Booting and waking units may not have allocated yet: counting their claims as ours
            # would hide memory that others hold. Over-counting others' memory is the safe side.
            ours = self.claimed(CLAIMING - {UnitState.booting, UnitState.waking})[e.device]
            self.foreign[e.device] = max(0, device.total_bytes - e.free_bytes - ours)
        return []

    def _on_SleepRequested(self, e: SleepRequested, now: float) -> list[Action]:
        actions: list[Action] = []
        for unit in self.units_of(e.model):
            if unit.state == UnitState.awake and not unit.policy.popular:
                actions += self._drain(unit, "an operator asked it to sleep", now)
        return actions

    # -- helpers ---------------------------------------------------------------------------------
    def _admit(self, request_id: str, unit: Unit, now: float) -> Admit:
        unit.in_flight += 1
        unit.last_used = now
        return Admit(request_id, unit.id)

    def _drain(self, unit: Unit, reason: str, now: float) -> list[Action]:
        unit.to(UnitState.draining)
        if unit.in_flight == 0:
            unit.to(UnitState.sleeping)
            return [Drain(unit.id, reason), Sleep(unit.id)]
        return [Drain(unit.id, reason), SetTimer(now + unit.policy.drain_timeout, ("drain", unit.id))]

    def _start(self, unit: Unit, window: tuple[int, ...], reason: str, free: dict[int, int]) -> Action:
        claims = tuple(claim_bytes(unit.policy, self.devices[i]) for i in window)
        for i, claim in zip(window, claims):
            free[i] -= claim
        unit.devices = window
        if unit.state == UnitState.asleep:
            unit.to(UnitState.waking)
            return Wake(unit.id, window, reason, claims)
        unit.to(UnitState.booting)
        return Boot(unit.id, window, reason, claims)

    def _startable(self, unit: Unit, now: float) -> bool:
        return unit.state in (UnitState.asleep, UnitState.cold) or (
            unit.state == UnitState.failed and now >= unit.retry_at)

    def _victim_ok(self, victim: Unit, may_preempt: bool, now: float) -> bool:
        """May `victim` be put to sleep to make room? Idle units always; busy ones only when the
        waiter may preempt (maxWaitTime reached, or a popular unit) and after their minRuntime."""
        if victim.state != UnitState.awake or victim.policy.popular or self.queues[victim.id.model].waiting:
            return False
        idle = victim.in_flight == 0 and (victim.last_used <= victim.awake_since
                                          or now - victim.last_used >= victim.policy.idle_timeout)
        return idle or (may_preempt and now - victim.awake_since >= victim.policy.min_runtime)

    def _plan_victims(self, unit: Unit, free: dict[int, int], soon: dict[int, int],
                      may_preempt: bool, now: float) -> Optional[tuple[tuple[int, ...], list[Unit]]]:
        """The window needing the fewest (then least recently used) victims, or None."""
        best: Optional[tuple[tuple[int, int, float], tuple[int, ...], list[Unit]]] = None
        for window in windows(list(self.devices.values()), unit.policy):
            avail = {i: free[i] + soon[i] for i in window}
            candidates = sorted((v for v in self.units.values() if set(v.devices) & set(window)
                                 and self._victim_ok(v, may_preempt, now)), key=lambda v: v.last_used)
            chosen: list[Unit] = []
            for victim in candidates:
                if fits(window, unit.policy, self.devices, avail):
                    break
                chosen.append(victim)
                for i in victim.devices:
                    if i in avail:
                        avail[i] += claim_bytes(victim.policy, self.devices[i])
            if fits(window, unit.policy, self.devices, avail):
                score = (len(chosen), sum(v.in_flight for v in chosen), sum(v.last_used for v in chosen))
                if best is None or score < best[0]:
                    best = (score, window, chosen)
        return None if best is None else (best[1], best[2])

    def _place(self, unit: Unit, reason: str, free: dict[int, int], soon: dict[int, int],
               may_preempt: bool, now: float) -> tuple[list[Action], bool]:
        """Start `unit` now, or make room for it. Returns the actions and whether it is on its way."""
        for window in windows(list(self.devices.values()), unit.policy):
            if fits(window, unit.policy, self.devices, free):
                return [self._start(unit, window, reason, free)], True
        plan = self._plan_victims(unit, free, soon, may_preempt, now)
        if plan is None:
            return [], False
        window, victims = plan
        actions: list[Action] = []
        for victim in victims:
            actions += self._drain(victim, f"preempted for {unit.id.model} ({reason})", now)
        for i in window:  # what is being freed here is this unit's: nobody backfills it
            free[i] = min(free[i], 0)
        return actions, True

    def _schedule(self, now: float) -> list[Action]:
        actions: list[Action] = []
        free = self.free()
        soon = {i: 0 for i in self.devices}
        for unit in self.units.values():
            if unit.state in (UnitState.draining, UnitState.sleeping):
                for i in unit.devices:
                    soon[i] += claim_bytes(unit.policy, self.devices[i])
        recheck: list[float] = []

        # 1. Popular units: always up.
        for unit in sorted(self.units.values(), key=lambda u: u.id):
            if unit.policy.popular and self._startable(unit, now):
                placed, ok = self._place(unit, "popular", free, soon, True, now)
                actions += placed
                if not ok:
                    unit.reason = "waiting for capacity: " + self._capacity_note(unit)
                    recheck += self._recheck_times(unit.policy, None, now)

        # 2. Waiting models, oldest request first.
        waiting = sorted((q.oldest, m) for m, q in self.queues.items() if q.waiting)
        for oldest, model in waiting:
            units = self.units_of(model)
            if any(u.state in (UnitState.booting, UnitState.waking) for u in units):
                continue
            startable = sorted((u for u in units if self._startable(u, now)),
                               key=lambda u: (u.state != UnitState.asleep, u.id))
            if not startable:
                retry = [u.retry_at for u in units if u.state == UnitState.failed]
                recheck += retry
                continue
            unit = startable[0]
            waited = now - oldest
            placed, ok = self._place(unit, f"a request has waited {waited:g}s", free, soon,
                                     waited >= unit.policy.max_wait, now)
            actions += placed
            if not ok:
                recheck += self._recheck_times(unit.policy, oldest, now)

        # 3. Units never booted, and failed ones once their backoff is over (a boot that failed, an
        #    engine that died): boot into free capacity, so requests find them ready, unprompted.
        for unit in sorted(self.units.values(), key=lambda u: u.id):
            if (unit.state == UnitState.cold and not unit.booted) or (
                    unit.state == UnitState.failed and self._startable(unit, now)):
                for window in windows(list(self.devices.values()), unit.policy):
                    if fits(window, unit.policy, self.devices, free):
                        why = "restart after a failure" if unit.state == UnitState.failed and unit.booted else "first boot"
                        actions.append(self._start(unit, window, why, free))
                        break

        future = [t for t in recheck if t > now]
        if future:
            actions.append(SetTimer(min(future), ("recheck",)))
        return actions

    def _recheck_times(self, policy: Policy, oldest: Optional[float], now: float) -> list[float]:
        """When might a blocked placement become possible without any other event?"""
        times = [] if oldest is None else [oldest + policy.max_wait]
        for u in self.units.values():
            if u.state == UnitState.awake and not u.policy.popular:
                times.append(u.awake_since + u.policy.min_runtime)
                times.append(u.last_used + u.policy.idle_timeout)
        return times

    def _capacity_note(self, unit: Unit) -> str:
        popular = [u for u in self.units.values() if u.policy.popular and u.state in CLAIMING]
        if popular:
            return "popular models hold " + ", ".join(str(u.id) for u in popular)
        return "other models hold the memory"


_HANDLERS = {
    ModelUpserted: Scheduler._on_ModelUpserted,
    ModelRemoved: Scheduler._on_ModelRemoved,
    RequestArrived: Scheduler._on_RequestArrived,
    RequestLeft: Scheduler._on_RequestLeft,
    RequestFinished: Scheduler._on_RequestFinished,
    EngineAwake: Scheduler._on_EngineAwake,
    EngineAsleep: Scheduler._on_EngineAsleep,
    EngineFailed: Scheduler._on_EngineFailed,
    TimerFired: Scheduler._on_TimerFired,
    DeviceMemoryRead: Scheduler._on_DeviceMemoryRead,
    SleepRequested: Scheduler._on_SleepRequested,
}
"""Event type -> its rule: every event of scheduler/messages.py, and nothing found by name."""
