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
- waiting models are served oldest first, wakes (seconds) before cold starts (tens of seconds)
  until those have waited half the queue timeout, and capacity that is being freed for one is
  not given to another (no starvation); every queued request is admitted or times out;
- a unit idle for idleTimeout sleeps; sleeping drains in-flight requests for up to drainTimeout,
  then aborts the rest, or, when it sleeps for another model, pauses them until its next wake,
  once each has had a token since its wake (or it has run a least slice);
- an engine that died is restarted after a backoff (restarting), and one that died while serving
  is restored before anything starts on speculation (scheduler/restore.py has the order of claims
  on capacity); a crash loop, or a failure retrying cannot fix, is given up (failed).
"""

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from scheduler import restore
from scheduler.inventory import Device
from scheduler.messages import (
    AbortInFlight, Action, Admit, Boot, DeviceMemoryRead, Drain, EngineAsleep, EngineAwake, EngineFailed,
    EngineStopped, Event, FirstToken, GiveUp, HostMemoryRead, ModelRemoved, ModelUpserted, Reject, RequestArrived,
    RequestFinished, RequestLeft, SetTimer, Sleep, SleepRequested, Stop, TimerFired, Wake,
)
from scheduler.placement import claim_bytes, fits, never_placeable, windows
from scheduler.prewake import DEFAULT_WAKE_S, HISTORY, LIKELY, MIN_LEAD_S, forecast
from scheduler.snapshot import HostView, SchedulerSnapshot, UnitView
from scheduler.units import CLAIMING, TRANSITIONS, ModelQueue, Policy, Unit, UnitId, UnitState


MIN_SLICE_S = 1.0
"""The least a unit runs between its wake and a pause of its requests for another model, unless
every request it runs has had a token since its wake (rule 14); also how long paused requests
leave the engine to the model they paused for before they may take it back. A wake and a sleep cost
hundredths of a second on the CPU and tenths on a GPU, so a second keeps the turns' overhead small
whatever minRuntime and drainTimeout say."""
MAX_SHORT_SLICES = 3
"""A unit's least slice doubles after each wake that ended paused with a request still owing its
token, up to 2**3 slices (8 s): enough for a batch of resumed answers to recompute, and bounded
for answers that report no token until they end (not streamed), which the doubling cannot tell
from answers that made none."""


@dataclass(frozen=True)
class SchedulerConfig:
    queue_limit: int = 256
    queue_timeout: float = 300.0
    retry_base: float = 1.0
    retry_max: float = 60.0
    crash_loop: int = 5
    """This many engine deaths of a unit within `crash_window` seconds, and it is given up."""
    crash_window: float = 600.0
    prewake: bool = True
    """Wake the model most likely to be asked next into free capacity when nothing waits."""
    host_limit: int = 0
    """Host memory that engines, the host tier and the daemon may hold in all (the daemon's cgroup
    limit or the host's RAM, or a setting below either); 0: no host budget is kept."""
    max_sleeping: int = 0
    """At most this many engines asleep at once (maxSleepingEngines); 0: no limit."""


class Scheduler:
    def __init__(self, devices: Sequence[Device], config: SchedulerConfig = SchedulerConfig()):
        self.devices = {d.index: d for d in devices}
        self.config = config
        self.units: dict[UnitId, Unit] = {}
        self._by_model: dict[str, dict[UnitId, Unit]] = {}
        """The same units by model: `units_of` runs on every request and for every waiting model."""
        self.queues: dict[str, ModelQueue] = {}
        self.foreign: dict[int, int] = {i: 0 for i in self.devices}
        self.arrivals: dict[str, deque[float]] = {}
        """Each model's recent request times, what pre-wake forecasts from."""
        self.slept_by_operator: set[str] = set()
        """Models an operator put to sleep: not pre-woken until a request of their own comes."""
        self.host_other = 0
        """Host memory held by what is not an engine (the daemon, the host tier), as last measured."""
        self.host_peak: dict[str, int] = {}
        """Each model's measured boot peak of host memory: what its next boot reserves."""
        self.host_overhead = 0
        """The most host memory a boot was measured to take beyond its claim on a CPU device (the
        engine's runtime): with a model's claim, what a first boot reserves once any was measured."""
        self.host_short = False
        """The last pass found host memory short (a start waited on it, or sleepers were stopped for
        it): units then sleep at level 2, which keeps no weights in host memory."""

    # -- queries ---------------------------------------------------------------------------------
    def units_of(self, model: str) -> list[Unit]:
        return list(self._by_model.get(model, {}).values())

    def claimed(self, states: frozenset[UnitState] = CLAIMING) -> dict[int, int]:
        """Bytes claimed per device by units in `states`, plus what asleep units still hold."""
        used = {i: 0 for i in self.devices}
        for unit in self.units.values():
            if unit.state in states:
                for i in unit.devices:
                    used[i] += claim_bytes(unit.policy, self.devices[i])
            for i, held in unit.held.items():
                used[i] += held
        return used

    def snapshot(self) -> SchedulerSnapshot:
        units = tuple(UnitView(u.id, u.state, u.devices, u.in_flight, u.booted, u.reason,
                               {i: claim_bytes(u.policy, self.devices[i]) for i in u.devices}
                               if u.state in CLAIMING else dict(u.held), u.host_bytes, u.level,
                               u.retry_at if u.state == UnitState.restarting else 0.0, u.kept)
                      for u in self.units.values())
        host = HostView(self.config.host_limit, self.host_other + sum(u.host_bytes for u in units),
                        self.host_other, self.config.max_sleeping,
                        sum(u.state == UnitState.asleep for u in units))
        return SchedulerSnapshot(
            devices=dict(self.devices), units=units,
            queued={model: len(queue.waiting) for model, queue in self.queues.items()},
            free=self.free(), claimed=self.claimed(), foreign=dict(self.foreign), host=host)

    def free(self) -> dict[int, int]:
        used = self.claimed()
        return {i: d.capacity_bytes - used[i] - self.foreign[i] for i, d in self.devices.items()}

    # -- the decision ----------------------------------------------------------------------------
    def decide(self, event: Event, now: float) -> list[Action]:
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise TypeError(f"the scheduler has no rule for {event!r}")
        actions: list[Action] = handler(self, event, now)
        if self._cannot_unblock(event):
            return actions
        return actions + self._schedule(now)

    def _cannot_unblock(self, event: Event) -> bool:
        """A request that finished, or one admitted (or refused) at once, leaves free memory and the
        queues as they were and makes no unit a victim it was not already (it is just used), so no
        placement became possible: the pass is skipped. Time-made possibilities are the recheck
        timer's. This keeps the steady state (requests to awake models) O(1) per event."""
        if isinstance(event, (RequestFinished, FirstToken)):
            return True
        if isinstance(event, RequestArrived):
            queue = self.queues.get(event.model)
            return queue is None or event.request_id not in queue.waiting
        return False

    def _on_ModelUpserted(self, e: ModelUpserted, now: float) -> list[Action]:
        actions: list[Action] = []
        self.queues.setdefault(e.model, ModelQueue())
        reason = never_placeable(list(self.devices.values()), e.policy)
        for replica in range(max(e.replicas, 0)):
            unit = self.units.get(UnitId(e.model, replica))
            if unit is None:
                unit = self._put(Unit(UnitId(e.model, replica), e.policy, generation=e.generation))
            unit.policy = e.policy
            if unit.generation != e.generation:  # new engines: stop the old one, start over cold
                if unit.state not in (UnitState.cold, UnitState.unschedulable):
                    actions += self._retire(unit, f"model {e.model}'s spec changed and its engine restarts")
                unit = self._put(Unit(unit.id, e.policy, generation=e.generation))
            if reason and unit.state == UnitState.cold:
                unit.to(UnitState.unschedulable)
            elif not reason and unit.state == UnitState.unschedulable:
                unit.to(UnitState.cold)
            unit.reason = reason if unit.state == UnitState.unschedulable else unit.reason
        for unit in self.units_of(e.model):
            if unit.id.replica >= e.replicas:
                actions += self._retire(unit, f"model {e.model} was scaled to {e.replicas} replicas")
                self._remove(unit.id)
        return actions

    def _on_ModelRemoved(self, e: ModelRemoved, now: float) -> list[Action]:
        actions: list[Action] = []
        for unit in self.units_of(e.model):
            actions += self._retire(unit, f"model {e.model} was deleted")
            self._remove(unit.id)
        queue = self.queues.pop(e.model, ModelQueue())
        self.arrivals.pop(e.model, None)
        self.slept_by_operator.discard(e.model)
        actions += [Reject(rid, 404, f"model {e.model} was removed") for rid in queue.waiting]
        return actions

    def _on_RequestArrived(self, e: RequestArrived, now: float) -> list[Action]:
        units = self.units_of(e.model)
        if not units:
            return [Reject(e.request_id, 404, f"no Model named {e.model!r} on this host")]
        self.arrivals.setdefault(e.model, deque(maxlen=HISTORY)).append(now)
        self.slept_by_operator.discard(e.model)
        queue = self.queues[e.model]
        awake = [u for u in units if u.state == UnitState.awake]
        if not queue.waiting and (room := [u for u in awake if _has_room(u)]):
            return [self._admit(e.request_id, min(room, key=lambda u: u.in_flight), now)]
        if not awake and all(u.state == UnitState.unschedulable for u in units):
            return [Reject(e.request_id, 503, f"model {e.model} cannot run on this host: {units[0].reason}")]
        if len(queue.waiting) >= self.config.queue_limit:
            return [Reject(e.request_id, 429, f"model {e.model} has {len(queue.waiting)} requests waiting "
                                              f"(queue limit {self.config.queue_limit})", retry_after=5.0)]
        queue.add(e.request_id, e.key, now)
        actions = [SetTimer(now + self.config.queue_timeout, ("queue", e.model, e.request_id))]
        if len(queue.waiting) == 1:  # its first new request: units yielding to it may yield early now
            for unit in self.units.values():
                if unit.yields_to == e.model:
                    actions += self._pause_when_due(unit, now)
        return actions + self._fill(e.model, now)

    def _on_RequestLeft(self, e: RequestLeft, now: float) -> list[Action]:
        self.queues.get(e.model, ModelQueue()).waiting.pop(e.request_id, None)
        return []

    def _on_RequestFinished(self, e: RequestFinished, now: float) -> list[Action]:
        unit = self.units.get(e.unit)
        if unit is None:
            return []
        last = unit.ended(e.request_id)
        if unit.in_flight:
            unit.in_flight -= 1
        elif unit.kept:  # a paused request ended (its client left)
            self._release_kept(unit, unit.kept - 1)
        unit.last_used = now
        if unit.in_flight == unit.kept == 0:
            unit.short_slices = 0
        if unit.state == UnitState.draining and unit.in_flight == 0:
            unit.to(UnitState.sleeping)
            return [Sleep(unit.id, self._sleep_level(unit))]
        if last and (due := self._pause_when_due(unit, now)):
            return due
        if unit.state == UnitState.awake:
            if admitted := self._fill(unit.id.model, now):
                return admitted
            if unit.in_flight == 0:
                return [SetTimer(now + unit.policy.idle_timeout, ("idle", unit.id))]
        return []

    def _on_FirstToken(self, e: FirstToken, now: float) -> list[Action]:
        unit = self.units.get(e.unit)
        if unit is None:
            return []
        return self._pause_when_due(unit, now) if unit.had_token(e.request_id) else []

    def _on_EngineAwake(self, e: EngineAwake, now: float) -> list[Action]:
        unit = self.units.get(e.unit)
        if unit is None or unit.state not in (UnitState.booting, UnitState.waking):
            return []
        if unit.state == UnitState.waking:
            unit.wake_s = now - unit.started
        unit.host_bytes = unit.awake_host = e.host  # the measurement replaces the reservation
        if e.peak:
            self.host_peak[unit.id.model] = e.peak
            self.host_overhead = max(self.host_overhead, e.peak - self._cpu_claim(unit.policy))
        unit.to(UnitState.awake)
        unit.awake_since, unit.booted, unit.failures, unit.reason, unit.stopped = now, True, 0, "", ""
        unit.capacity, unit.yields_to = e.capacity, ""
        unit.in_flight += unit.kept  # its paused requests run again, and owe a token again
        unit.unanswered |= unit.begun
        unit.begun.clear()
        self._release_kept(unit, 0)
        actions = self._fill(unit.id.model, now)
        if not actions:
            actions.append(SetTimer(now + unit.policy.idle_timeout, ("idle", unit.id)))
        return actions

    def _on_EngineAsleep(self, e: EngineAsleep, now: float) -> list[Action]:
        unit = self.units.get(e.unit)
        if unit is None or not (unit.state == UnitState.sleeping or unit.deepening):
            return []
        if unit.state == UnitState.sleeping:
            unit.to(UnitState.asleep)
        unit.held = {i: held for i, held in e.held if held > 0}
        unit.devices, unit.in_flight, unit.deepening, unit.level = tuple(sorted(unit.held)), 0, False, e.level
        unit.host_bytes = unit.asleep_host = e.host
        return []

    def _on_EngineStopped(self, e: EngineStopped, now: float) -> list[Action]:
        unit = self.units.get(e.unit)
        if unit is not None and unit.state == UnitState.stopping:
            unit.to(UnitState.cold)
            unit.devices, unit.held, unit.level, unit.host_bytes = (), {}, 0, 0
        return []

    def _on_HostMemoryRead(self, e: HostMemoryRead, now: float) -> list[Action]:
        """Engines grow between the measurements their operations bring (an awake engine as it
        serves): what the total shows beyond the units' ledger counts as other, until they are
        measured again. Over-counting is the safe side: a booting unit counts its whole peak."""
        ledger = sum(u.host_bytes for u in self.units.values())
        self.host_other = max(e.other_bytes, e.total_bytes - ledger)
        return []

    def _on_EngineFailed(self, e: EngineFailed, now: float) -> list[Action]:
        """The engine is gone: the unit is restarting (tried again after a backoff) or, when
        retrying cannot help or its engine keeps dying, failed until an edit. One that died while
        serving is restored before anything speculative takes its room (scheduler/restore.py)."""
        unit = self.units.get(e.unit)
        if unit is None or UnitState.restarting not in TRANSITIONS[unit.state]:
            return []  # no engine to lose: already gone, or a late report about a replaced one
        serving = unit.state in (UnitState.awake, UnitState.draining)
        unit.devices, unit.in_flight, unit.reason, unit.yields_to = (), 0, e.reason, ""
        unit.unanswered.clear()
        unit.begun.clear()
        self._release_kept(unit, 0)  # its paused requests went with the engine
        unit.held, unit.deepening, unit.level, unit.host_bytes = {}, False, 0, 0
        unit.failures += 1
        unit.crashes = [t for t in unit.crashes if now - t < self.config.crash_window] + ([now] if e.crashed else [])
        actions: list[Action] = []
        if e.retry and e.crashed and len(unit.crashes) >= self.config.crash_loop:
            unit.reason = (f"crash loop: its engine died {len(unit.crashes)} times in "
                           f"{now - unit.crashes[0]:.0f}s, the last: {e.reason}")
            e = EngineFailed(e.unit, unit.reason, retry=False)
            actions.append(GiveUp(unit.id, unit.reason))
        if not e.retry:
            unit.to(UnitState.failed)
            unit.retry_at, unit.restore = float("inf"), False
            if all(u.state == UnitState.failed for u in self.units_of(unit.id.model)):
                queue = self.queues[unit.id.model]
                actions += [Reject(rid, 503, f"model {unit.id.model} failed: {e.reason}") for rid in queue.clear()]
            return actions
        unit.to(UnitState.restarting)
        unit.restore = unit.restore or (e.crashed and serving)  # a failed restart is still a restore
        unit.retry_at = now + min(self.config.retry_max, self.config.retry_base * 2 ** (unit.failures - 1))
        return [SetTimer(unit.retry_at, ("retry", unit.id))]

    def _on_TimerFired(self, e: TimerFired, now: float) -> list[Action]:
        kind = e.key[0]
        if kind == "queue":
            _, model, rid = e.key
            if self.queues.get(model, ModelQueue()).waiting.pop(rid, None) is not None:
                busy = any(u.state == UnitState.awake for u in self.units_of(model))
                return [Reject(rid, 503, f"timed out after {self.config.queue_timeout:g}s waiting for model {model} "
                                         + ("to have room (its engines ran all they can at once)" if busy else "to wake"),
                               retry_after=5.0)]
        elif kind == "idle":
            unit = self.units.get(e.key[1])
            if (unit is not None and unit.state == UnitState.awake and not unit.policy.popular
                    and unit.in_flight == 0 and not self.queues[unit.id.model].wants
                    and now - unit.last_used >= unit.policy.idle_timeout):
                return self._drain(unit, f"idle for {unit.policy.idle_timeout:g}s", now)
        elif kind == "paused":  # paused as long as a request may wait: answered, as a queued one is
            unit = self.units.get(e.key[1])
            since = self.queues[unit.id.model].paused.get(unit.id) if unit is not None else None
            if since is not None and now - since >= self.config.queue_timeout and unit.state == UnitState.asleep:
                self._release_kept(unit, 0)
                return [AbortInFlight(unit.id, f"its answer was paused for {self.config.queue_timeout:g}s for other "
                                               f"models, and model {unit.id.model} could not resume it")]
        elif kind == "drain":
            unit = self.units.get(e.key[1])
            if unit is not None and unit.state == UnitState.draining and now >= self._pause_at(unit):
                return self._pause(unit, now)
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
        self.slept_by_operator.add(e.model)
        actions: list[Action] = []
        for unit in self.units_of(e.model):
            if unit.state == UnitState.awake and not unit.policy.popular:
                actions += self._drain(unit, "an operator asked it to sleep", now)
        return actions

    # -- helpers ---------------------------------------------------------------------------------
    def _put(self, unit: Unit) -> Unit:
        self.units[unit.id] = self._by_model.setdefault(unit.id.model, {})[unit.id] = unit
        return unit

    def _remove(self, unit_id: UnitId) -> None:
        del self.units[unit_id]
        del self._by_model[unit_id.model][unit_id]
        if not self._by_model[unit_id.model]:
            del self._by_model[unit_id.model]

    def _retire(self, unit: Unit, why: str) -> list[Action]:
        """Stop an engine that is no longer wanted (its Model deleted, edited into new engines, or
        scaled down): its requests in flight are answered first, with the reason, rather than
        meeting an engine that stops under them."""
        busy = unit.in_flight or unit.kept
        self._release_kept(unit, 0)
        return ([AbortInFlight(unit.id, why)] if busy else []) + [Stop(unit.id)]

    def _fill(self, model: str, now: float) -> list[Action]:
        """Admit the model's waiting requests, each in its key's turn, while an awake unit has room."""
        queue, actions = self.queues.get(model), []
        while queue is not None and queue.waiting:
            room = [u for u in self.units_of(model) if u.state == UnitState.awake and _has_room(u)]
            if not room:
                break
            actions.append(self._admit(queue.next(), min(room, key=lambda u: u.in_flight), now))
        return actions

    def _release_kept(self, unit: Unit, kept: int) -> None:
        """`kept` of the unit's paused requests are left; at 0 the model no longer waits for it."""
        unit.kept = kept
        if not kept:
            self.queues.get(unit.id.model, ModelQueue()).paused.pop(unit.id, None)

    def _admit(self, request_id: str, unit: Unit, now: float) -> Admit:
        unit.in_flight += 1
        unit.last_used = now
        unit.unanswered.add(request_id)
        return Admit(request_id, unit.id)

    def _drain(self, unit: Unit, reason: str, now: float, yields_to: str = "") -> list[Action]:
        """`yields_to`: the model it sleeps for, if any: what runs past drainTimeout is then paused,
        not aborted."""
        unit.to(UnitState.draining)
        unit.yields_to = yields_to
        if unit.in_flight == 0:
            unit.to(UnitState.sleeping)
            return [Drain(unit.id, reason), Sleep(unit.id, self._sleep_level(unit))]
        unit.drain_until = now + unit.policy.drain_timeout
        return [Drain(unit.id, reason), SetTimer(self._pause_at(unit), ("drain", unit.id))]

    def _pause_at(self, unit: Unit) -> float:
        """When a draining unit stops waiting for its requests to end: at its drainTimeout; when
        yielding, also not before MIN_SLICE_S since its wake, or two models could take turns
        without a token out; but for new requests, as soon as each request it runs has had a token
        since its wake. A unit taken back just after its wake then yields once its answers have
        begun (or gone on); paused answers taking the engine back leave it its least slice, or
        two models with long answers would take turns a token (and a wake) at a time. The slice
        doubles after each wake that ended with a token owed (`Unit.short_slices`)."""
        early = unit.yields_to in self.queues and self.queues[unit.yields_to].waiting
        if not unit.yields_to or (early and not unit.unanswered):
            return unit.drain_until
        return max(unit.drain_until, unit.awake_since + MIN_SLICE_S * 2 ** unit.short_slices)

    def _pause_when_due(self, unit: Unit, now: float) -> list[Action]:
        """A unit yielding to another model may pause earlier once its last answer has begun: now,
        or at its drainTimeout."""
        if unit.state != UnitState.draining or not unit.yields_to:
            return []
        at = self._pause_at(unit)
        return self._pause(unit, now) if now >= at else [SetTimer(at, ("drain", unit.id))]

    def _pause(self, unit: Unit, now: float) -> list[Action]:
        """The drain is over: a yielding unit pauses what still runs, to resume at its next wake;
        any other aborts it."""
        unit.to(UnitState.sleeping)
        if unit.yields_to:
            if unit.unanswered:
                unit.short_slices = min(unit.short_slices + 1, MAX_SHORT_SLICES)
            unit.kept, unit.in_flight = unit.in_flight, 0
            self.queues[unit.id.model].paused[unit.id] = now
            return [Sleep(unit.id, self._sleep_level(unit), keep=True),
                    SetTimer(now + self.config.queue_timeout, ("paused", unit.id))]
        return [AbortInFlight(unit.id, f"model {unit.id.model} is going to sleep and its "
                                       f"drainTimeout ({unit.policy.drain_timeout:g}s) ran out"),
                Sleep(unit.id, self._sleep_level(unit))]

    def _windows_for(self, unit: Unit, scan: "_Pass") -> list[tuple[int, ...]]:
        """Where the unit may start: a level-1 sleeper only where its weights are."""
        return [unit.devices] if unit.held else scan.windows(unit.policy)

    def _start(self, unit: Unit, window: tuple[int, ...], reason: str, scan: "_Pass") -> Action:
        claims = tuple(claim_bytes(unit.policy, self.devices[i]) for i in window)
        for i, claim in zip(window, claims):
            scan.free[i] -= claim - unit.held.get(i, 0)  # what it held becomes part of its claim
        need = self._host_need(unit)  # reserved until it is measured awake
        scan.host_free -= max(0, need - unit.host_bytes)
        unit.devices, unit.held, unit.level, unit.host_bytes = window, {}, 0, max(unit.host_bytes, need)
        unit.started, unit.making_room = scan.now, False
        if unit.state == UnitState.asleep:
            unit.to(UnitState.waking)
            return Wake(unit.id, window, reason, claims)
        if unit.stopped:
            unit.reason = f"starting cold, it was {unit.stopped}"
            reason = f"{reason}; {unit.reason}"
        unit.to(UnitState.booting)
        return Boot(unit.id, window, reason, claims)

    # -- host memory -----------------------------------------------------------------------------
    def _host_need(self, unit: Unit) -> int:
        """Host memory the unit is expected to hold once started: what it held when last awake (a
        wake), else its model's measured boot peak; a model never booted, its claim on a CPU device
        plus the largest runtime any boot here was measured to take, or, before any, the policy's
        first estimate."""
        peak = self.host_peak.get(unit.id.model) or (
            self._cpu_claim(unit.policy) + self.host_overhead if self.host_overhead else unit.policy.host_estimate)
        return (unit.awake_host or peak) if unit.state == UnitState.asleep else peak

    def _cpu_claim(self, policy: Policy) -> int:
        """A unit's claim on the CPU device, which is host memory (0 on a host of GPUs)."""
        return max((claim_bytes(policy, d) for d in self.devices.values() if d.is_cpu), default=0)

    def _sleep_level(self, unit: Unit) -> int:
        """The spec's level, or 2 while host memory is short: level 1 keeps the weights in host
        memory (the CPU's, or a GPU engine's own copy), level 2 frees them for a reload."""
        return 2 if self.host_short else unit.policy.sleep_level

    def _stoppable(self, unit: Unit) -> bool:
        """An asleep unit a budget may stop: never one whose model has requests waiting (popular
        units are never asleep)."""
        return (unit.state == UnitState.asleep and not unit.deepening and not unit.policy.popular
                and not self.queues[unit.id.model].wants)

    def _host_freed(self, victim: Unit) -> int:
        """Host memory that making room with `victim` frees: an asleep one is stopped (all of it,
        unless it is only deepened), an awake one goes to sleep (down to what it held asleep last
        time; never measured asleep: its claim on the CPU device, the KV cache it frees)."""
        if victim.state == UnitState.asleep:
            return 0 if self._deepens(victim) else victim.host_bytes
        if victim.asleep_host:
            return max(0, victim.host_bytes - victim.asleep_host)
        return sum(claim_bytes(victim.policy, self.devices[i]) for i in victim.devices if self.devices[i].is_cpu)

    def _deepens(self, victim: Unit) -> bool:
        """An asleep victim at level 1 is deepened (its weights freed, its process kept) while host
        memory is not short; otherwise it is stopped."""
        return victim.level == 1 and not self.host_short

    def _host_plan(self, unit: Unit, scan: "_Pass", freeing: list[Unit], may_preempt: bool = False,
                   now: float = 0.0) -> Optional[tuple[bool, list[Unit], list[Unit]]]:
        """Whether `unit` fits host memory now: (True, [], []). Otherwise what makes room for it,
        cheapest first and least recently used first within each kind: awake units to put to
        sleep (as device victims are chosen: idle ones, or busy ones the waiter may preempt) and
        asleep units to stop; (False, stops, sleeps), and it starts once they are done (a later
        pass stops a sleeper that freed too little). None: not even then."""
        if not self.config.host_limit:
            return True, [], []
        need = self._host_need(unit) - unit.host_bytes
        if scan.host_free >= need and not freeing:
            return True, [], []
        if need >= scan.host_failed and not freeing:  # what could be freed only shrinks within a pass
            return None
        avail = scan.host_free + scan.host_soon + sum(self._host_freed(v) for v in freeing)
        stops: list[Unit] = []
        sleeps: list[Unit] = []
        awake = [u for u in scan.awake if u not in freeing and u.state == UnitState.awake
                 and self._victim_ok(u, may_preempt, now)]
        cheap = [u for u in awake if u.in_flight == 0 and self._host_freed(u) > 0]
        sleepers = [u for u in scan.sleepers if u is not unit and u not in freeing and self._stoppable(u)]
        rest = [u for u in awake if u not in cheap]
        # Cheapest first: idle awake units whose sleep frees host memory (their next request costs a
        # wake), then sleepers (a cold start), then the other awake units (a wake, and a later pass
        # may stop them).
        for victim, freed in ([(u, self._host_freed(u)) for u in cheap] + [(u, u.host_bytes) for u in sleepers]
                              + [(u, u.host_bytes) for u in rest]):
            if avail >= need:
                break
            (stops if victim.state == UnitState.asleep else sleeps).append(victim)
            avail += freed
        if avail < need:
            if not freeing:
                scan.host_failed = min(scan.host_failed, need)
            return None
        return False, stops, sleeps

    def _stop(self, unit: Unit, why: str, scan: "_Pass") -> Stop:
        """Stop an asleep unit's engine for a budget: it goes cold (the stopped rung), and a request
        boots it again. What it holds is free once EngineStopped says so."""
        unit.to(UnitState.stopping)
        unit.reason = unit.stopped = f"stopped: {why}"
        scan.host_soon += unit.host_bytes
        for i, held in unit.held.items():
            scan.soon[i] += held
        return Stop(unit.id, unit.reason)

    def _enforce_budgets(self, scan: "_Pass") -> list[Action]:
        """Stop the least recently used sleepers while more are asleep than maxSleepingEngines, or
        host memory is over its budget (an engine grew, the daemon or the host tier did)."""
        over_count = scan.asleep - self.config.max_sleeping if self.config.max_sleeping else 0
        over_host = -(scan.host_free + scan.host_soon) if self.config.host_limit else 0
        actions: list[Action] = []
        for unit in scan.sleepers:
            if over_count <= 0 and over_host <= 0:
                break
            if not self._stoppable(unit):
                continue
            if over_count > 0:
                why = f"more than maxSleepingEngines ({self.config.max_sleeping}) were asleep"
            else:
                self.host_short = True
                why = f"host memory was over its budget ({self.config.host_limit / 2**30:.2f} GiB)"
            actions.append(self._stop(unit, why + ", and it was the least recently used", scan))
            over_count -= 1
            over_host -= unit.host_bytes
        return actions

    def _startable(self, unit: Unit, now: float) -> bool:
        return unit.state in (UnitState.asleep, UnitState.cold) or (
            unit.state == UnitState.restarting and now >= unit.retry_at)

    def _victim_ok(self, victim: Unit, may_preempt: bool, now: float) -> bool:
        """May `victim` be put to sleep to make room? Idle units always; busy ones only when the
        waiter may preempt (maxWaitTime reached, or a popular unit) and after their minRuntime.
        An asleep unit that still holds memory (level 1) may always be deepened."""
        if victim.policy.popular or self.queues[victim.id.model].wants:
            return False
        if victim.state == UnitState.asleep:
            return bool(victim.held) and not victim.deepening
        if victim.state != UnitState.awake:
            return False
        idle = victim.in_flight == 0 and (victim.last_used <= victim.awake_since
                                          or now - victim.last_used >= victim.policy.idle_timeout)
        return idle or (may_preempt and now - victim.awake_since >= victim.policy.min_runtime)

    def _plan_victims(self, unit: Unit, scan: "_Pass", may_preempt: bool,
                      now: float) -> Optional[tuple[tuple[int, ...], list[Unit]]]:
        """The window needing the fewest (then least recently used) victims, or None."""
        best: Optional[tuple[tuple[int, int, float], tuple[int, ...], list[Unit]]] = None
        for window in self._windows_for(unit, scan):
            avail = {i: scan.free[i] + scan.soon[i] + unit.held.get(i, 0) for i in window}
            candidates = [v for v in scan.victims_on(window) if v is not unit and self._victim_ok(v, may_preempt, now)]
            chosen: list[Unit] = []
            for victim in candidates:
                if fits(window, unit.policy, self.devices, avail):
                    break
                chosen.append(victim)
                self._yield(victim, avail, +1)
            if fits(window, unit.policy, self.devices, avail):
                # Least recently used first may have taken small victims a later, bigger one makes
                # needless: drop those, sleepers first (deepening one costs its next wake a reload).
                for victim in sorted(chosen, key=lambda v: v.state != UnitState.asleep):
                    self._yield(victim, avail, -1)
                    if fits(window, unit.policy, self.devices, avail):
                        chosen.remove(victim)
                    else:
                        self._yield(victim, avail, +1)
                score = (len(chosen), sum(v.in_flight for v in chosen), sum(v.last_used for v in chosen))
                if best is None or score < best[0]:
                    best = (score, window, chosen)
        return None if best is None else (best[1], best[2])

    def _yield(self, victim: Unit, avail: dict[int, int], sign: int) -> None:
        """Add (or take back) what putting `victim` to sleep frees in `avail`: its claim, or what an
        asleep one still holds."""
        for i in victim.devices:
            if i in avail:
                avail[i] += sign * (victim.held.get(i, 0) if victim.held else claim_bytes(victim.policy, self.devices[i]))

    def _place(self, unit: Unit, reason: str, scan: "_Pass", may_preempt: bool,
               now: float) -> tuple[list[Action], bool]:
        """Start `unit` now, or make room for it. Returns the actions and whether it is on its way.
        Within one pass free memory and victims only shrink, so a placement that failed fails
        again for any unit of the same shape: remembered, which keeps a pass over a thousand
        waiting models linear."""
        if not unit.held and scan.known_to_fail(unit.policy, may_preempt):
            return [], False
        for window in self._windows_for(unit, scan):
            if fits(window, unit.policy, self.devices, {i: scan.free[i] + unit.held.get(i, 0) for i in window}):
                host = self._host_plan(unit, scan, [], may_preempt, now)
                if host == (True, [], []):
                    return [self._start(unit, window, reason, scan)], True
                return self._make_room(unit, window, [], host, reason, scan, now)
        plan = self._plan_victims(unit, scan, may_preempt, now)
        if plan is None:
            if not unit.held:
                scan.failed.add(_shape(unit.policy, may_preempt))
            return [], False
        window, victims = plan
        host = self._host_plan(unit, scan, victims, may_preempt, now)
        return self._make_room(unit, window, victims, host, reason, scan, now)

    def _make_room(self, unit: Unit, window: tuple[int, ...], victims: list[Unit],
                   host: Optional[tuple[bool, list[Unit], list[Unit]]], reason: str, scan: "_Pass",
                   now: float) -> tuple[list[Action], bool]:
        """Put `victims` to sleep (or deepen or stop asleep ones), and stop the sleepers and put to
        sleep the awake units host memory needs, for `unit` to start in `window` once they are
        done. None for `host`: host memory cannot hold it even then, and it waits."""
        if host is None:
            self.host_short = True
            unit.reason = (f"waiting for host memory: it needs {self._host_need(unit) / 2**30:.2f} GiB, the "
                           f"budget is {self.config.host_limit / 2**30:.2f} GiB")
            return [], False
        _, stops, sleeps = host
        if stops or sleeps:
            self.host_short = True  # what goes to sleep now keeps no weights in host memory
        actions: list[Action] = []
        for victim in victims:
            if victim.state != UnitState.asleep:
                actions += self._drain(victim, f"preempted for {unit.id.model} ({reason})", now, unit.id.model)
            elif self._deepens(victim):
                victim.deepening = True
                actions.append(Sleep(victim.id, 2))
            else:
                actions.append(self._stop(victim, f"device memory for {unit.id.model}, the least recently used", scan))
        actions += [self._stop(s, f"host memory for {unit.id.model}, the least recently used", scan) for s in stops]
        for awake in sleeps:
            actions += self._drain(awake, f"host memory for {unit.id.model} ({reason})", now, unit.id.model)
        for i in window:  # what is being freed here is this unit's: nobody backfills it
            scan.free[i] = min(scan.free[i], 0)
            scan.soon[i] = 0
        scan.host_free, scan.host_soon = min(scan.host_free, 0), 0
        unit.making_room = True  # nor in a later pass: it keeps its place until it starts
        return actions, True

    def _schedule(self, now: float) -> list[Action]:
        scan = _Pass(self, now)
        self.host_short = scan.host_free < scan.largest_need

        # 0. Budgets: too many engines asleep, or host memory over its limit, stop sleepers.
        actions = self._enforce_budgets(scan)

        # 1. Popular units: always up.
        for unit in sorted((u for u in self.units.values() if u.policy.popular), key=lambda u: u.id):
            if self._startable(unit, now):
                placed, ok = self._place(unit, "popular", scan, True, now)
                actions += placed
                if not ok:
                    unit.reason = "waiting for capacity: " + self._capacity_note(unit)
                    scan.blocked()

        # 2. Waiting models, oldest request first; wakes before cold starts while those are young.
        # Room being made for a model stays its own: it goes before one that waits since the same moment.
        since = {m: _waits_since(q) for m, q in self.queues.items() if q.wants}
        waiting = sorted((self._yields_to_wakes(m, t, now), t, not any(u.making_room for u in self.units_of(m)), m)
                         for m, t in since.items())
        for _, oldest, _, model in waiting:
            replicas = self._by_model.get(model)
            if not replicas:  # scaled to zero replicas: its queue times out
                continue
            policy = next(iter(replicas.values())).policy
            may_preempt = now - oldest >= policy.max_wait
            if scan.known_to_fail(policy, may_preempt):
                scan.recheck_at(oldest + policy.max_wait)
                continue
            units = list(replicas.values())
            if any(u.state in (UnitState.booting, UnitState.waking) for u in units):
                continue
            paused = self.queues[model].paused  # paused requests resume only in their own engine
            startable = sorted((u for u in units if self._startable(u, now)),
                               key=lambda u: (u.id not in paused, u.state != UnitState.asleep, u.id))
            if not startable:
                scan.recheck_at(*(u.retry_at for u in units if u.state == UnitState.restarting))
                continue
            unit = startable[0]
            why = (f"a request has waited {now - oldest:g}s" if self.queues[model].waiting
                   else "its paused requests resume")
            placed, ok = self._place(unit, why, scan, may_preempt, now)
            actions += placed
            if not ok:
                scan.blocked(oldest + unit.policy.max_wait)

        # 3. Restores (scheduler/restore.py): a unit whose engine died while serving comes back
        #    before anything starts on speculation, into free memory or an idle unit's room; in
        #    its backoff it holds free memory against 4 and 5. A model with requests waiting had
        #    its turn at 2.
        due, holding = restore.claims(self.units.values(), now)
        for unit in due:
            if self.queues[unit.id.model].wants:
                continue
            placed, ok = self._place(unit, restore.REASON, scan, False, now)
            actions += placed
            if not ok:
                unit.reason = "restart due, waiting for capacity: " + self._capacity_note(unit)
                scan.blocked()
        for unit in holding:
            self._hold(unit, scan)

        # 4. Units never booted, and ones whose boot failed, once their backoff is over: boot into
        #    free capacity, so requests find them ready, unprompted. Not a first boot while host
        #    memory is short: a budget would only stop it again.
        most_free = max(scan.free.values(), default=0)
        unprompted = [u for u in self.units.values() if ((u.state == UnitState.cold and not u.booted
                                                          and not self.host_short)
                      or (u.state == UnitState.restarting and not u.restore and self._startable(u, now)))
                      and u.policy.memory_fraction * scan.smallest_device <= most_free]
        for unit in sorted(unprompted, key=lambda u: (u.id.model, u.id.replica)):
            if _shape(unit.policy, False) in scan.no_room:
                continue
            if self._host_plan(unit, scan, []) != (True, [], []):
                continue
            for window in scan.windows(unit.policy):
                if fits(window, unit.policy, self.devices, scan.free):
                    why = "restart after a failure" if unit.state == UnitState.restarting and unit.booted else "first boot"
                    actions.append(self._start(unit, window, why, scan))
                    break
            else:
                scan.no_room.add(_shape(unit.policy, False))

        # 5. Nothing waits: wake the model most likely to be asked next, into free memory only.
        if self.config.prewake and not waiting:
            actions += self._prewake(scan, now)

        if scan.recheck < float("inf"):
            actions.append(SetTimer(scan.recheck, ("recheck",)))
        return actions

    def _yields_to_wakes(self, model: str, oldest: float, now: float) -> bool:
        """A model whose start is a cold start (no replica asleep: a boot, tens of seconds) lets
        the models whose start is a wake (seconds) go first, so a request for a model used lately
        is not queued behind boots of models nobody asked for in a while: shortest start first.
        Until its oldest request has waited half the queue timeout: then oldest first again, and
        it still starts in time (no starvation). Not once room is being made for it: that room
        stays its own."""
        units = self._by_model.get(model, {}).values()
        if any(u.state == UnitState.asleep or u.making_room for u in units):
            return False
        return now - oldest < self.config.queue_timeout / 2

    def _prewake(self, scan: "_Pass", now: float) -> list[Action]:
        """A guess costs no request anything: only free memory is used (never a victim, never a
        popular unit's space: step 1 placed those), and a pre-woken unit, never used since its
        wake, is an idle victim like any other. A periodic model is woken a wake's time (1.5x its
        last one, MIN_LEAD_S at least) before it is due; a timer brings the pass back then. Other
        traffic only brings back a model that was put to sleep while it was still being asked (a
        victim), not one that idled out. A model an operator put to sleep stays asleep until it is
        asked."""
        best: Optional[tuple[tuple, Unit, str]] = None
        next_due = float("inf")
        for model, replicas in self._by_model.items():
            units = list(replicas.values())
            if any(u.state not in (UnitState.asleep, UnitState.cold, UnitState.failed, UnitState.unschedulable)
                   or u.policy.popular for u in units):
                continue  # up, or on its way, or never asleep
            sleeping = [u for u in units if u.state == UnitState.asleep and not u.deepening]
            if not sleeping or model not in self.arrivals or model in self.slept_by_operator:
                continue
            unit = sleeping[0]
            lead = max(MIN_LEAD_S, 1.5 * (unit.wake_s or DEFAULT_WAKE_S))
            seen = forecast(self.arrivals[model], now, lead)
            if seen.due is not None:
                if seen.likelihood:
                    score, why = (1.0, -seen.due), f"pre-wake: due at {seen.due:g}s (periodic)"
                else:
                    next_due = min(next_due, seen.due - lead)
                    continue
            else:
                if now - self.arrivals[model][-1] >= unit.policy.idle_timeout:
                    continue  # it went to sleep for want of requests: that is its forecast
                seen = forecast(self.arrivals[model], now, unit.policy.idle_timeout)
                if seen.likelihood < LIKELY:
                    continue
                score, why = (seen.likelihood, 0.0), (f"pre-wake: a request within {unit.policy.idle_timeout:g}s "
                                                      f"is {seen.likelihood:.0%} likely")
            if best is None or score > best[0]:
                best = (score, unit, why)
        scan.recheck_at(next_due)
        if best is None:
            return []
        _, unit, why = best
        if self._host_plan(unit, scan, []) != (True, [], []):
            return []
        for window in self._windows_for(unit, scan):
            if fits(window, unit.policy, self.devices, {i: scan.free[i] + unit.held.get(i, 0) for i in window}):
                return [self._start(unit, window, why, scan)]
        return []

    def _hold(self, unit: Unit, scan: "_Pass") -> None:
        """Keep room for a restore in its backoff: its claim on the first window it fits in free
        memory (and its host memory) is taken out of what this pass has left to give."""
        for window in scan.windows(unit.policy):
            if fits(window, unit.policy, self.devices, scan.free):
                for i in window:
                    scan.free[i] -= claim_bytes(unit.policy, self.devices[i])
                scan.host_free -= self._host_need(unit)
                return

    def _capacity_note(self, unit: Unit) -> str:
        popular = [u for u in self.units.values() if u.policy.popular and u.state in CLAIMING]
        if popular:
            return "popular models hold " + ", ".join(str(u.id) for u in popular)
        return "other models hold the memory"


def _shape(policy: Policy, may_preempt: bool) -> tuple:
    """What decides whether a placement can succeed, besides the state the pass shares."""
    return policy.tensor_parallel, policy.memory_fraction, policy.product, may_preempt


class _Pass:
    """What one scheduling pass computes once and every placement in it reads: free and soon-free
    memory per device, the possible victims (awake units, and asleep ones holding memory) least
    recently used first, each policy's windows, and the placement shapes that already failed."""

    def __init__(self, scheduler: Scheduler, now: float):
        self._scheduler, self.now = scheduler, now
        self.recheck = float("inf")
        """The earliest future moment a blocked placement may become possible with no other event."""
        self._victims_noted = False
        devices = scheduler.devices
        used = {i: 0 for i in devices}
        self.soon = {i: 0 for i in devices}
        self.awake: list[Unit] = []
        self.sleepers: list[Unit] = []
        """Asleep units, least recently used first: the ones a budget may stop."""
        host_used = scheduler.host_other
        self.host_soon = 0
        """Host memory being freed: engines stopping, and what units going to sleep will free."""
        self.largest_need = 0
        """What the hungriest unit needs to start: below this free, host memory is short."""
        self.host_failed = float("inf")
        """The smallest host need that found no room in this pass: any larger fails too."""
        keeps_host = bool(scheduler.config.host_limit)
        victims: list[Unit] = []
        for unit in scheduler.units.values():  # one walk over every unit, the pass's only one
            host_used += unit.host_bytes
            if keeps_host:
                self.largest_need = max(self.largest_need, scheduler._host_need(unit))
            if unit.state == UnitState.asleep:
                self.sleepers.append(unit)
            elif unit.state == UnitState.stopping:
                self.host_soon += unit.host_bytes
            elif unit.state in (UnitState.draining, UnitState.sleeping):
                self.host_soon += scheduler._host_freed(unit)
            if unit.held:
                if unit.state == UnitState.asleep:
                    victims.append(unit)
                for i, held in unit.held.items():
                    used[i] += held
                    if unit.deepening or unit.state == UnitState.stopping:
                        self.soon[i] += held
            if unit.state not in CLAIMING:
                continue
            if unit.state == UnitState.awake:
                self.awake.append(unit)
                victims.append(unit)
            for i in unit.devices:
                claim = claim_bytes(unit.policy, devices[i])
                used[i] += claim
                if unit.state in (UnitState.draining, UnitState.sleeping):
                    self.soon[i] += claim
        self.free = {i: d.capacity_bytes - used[i] - scheduler.foreign[i] for i, d in devices.items()}
        self.host_free = scheduler.config.host_limit - host_used if scheduler.config.host_limit else float("inf")
        self.asleep = len(self.sleepers)
        self.sleepers.sort(key=lambda u: u.last_used)
        self.smallest_device = min((d.total_bytes for d in devices.values()), default=0)
        """What the smallest claim of a policy is a fraction of: a quick bound on what may fit."""
        self.awake.sort(key=lambda u: u.last_used)
        victims.sort(key=lambda u: u.last_used)
        self._victims = victims
        self._victims_on: dict[int, list[Unit]] = {}
        for unit in victims:
            for i in unit.devices:
                self._victims_on.setdefault(i, []).append(unit)
        self.failed: set[tuple] = set()
        """Shapes whose placement (victims allowed) failed in this pass."""
        self.no_room: set[tuple] = set()
        """Shapes no window has free memory for, victims not considered."""
        self._windows: dict[tuple, list[tuple[int, ...]]] = {}

    def victims_on(self, window: tuple[int, ...]) -> list[Unit]:
        """The possible victims on any device of `window`, least recently used first: awake units,
        and asleep ones still holding memory there."""
        if len(window) == 1:
            return self._victims_on.get(window[0], [])
        return [u for u in self._victims if any(i in window for i in u.devices)]

    def windows(self, policy: Policy) -> list[tuple[int, ...]]:
        key = (policy.tensor_parallel, policy.product)
        if key not in self._windows:
            self._windows[key] = windows(list(self._scheduler.devices.values()), policy)
        return self._windows[key]

    def known_to_fail(self, policy: Policy, may_preempt: bool) -> bool:
        """A placement of this shape failed earlier in the pass (one that could preempt failing
        means one that could not fails too)."""
        return _shape(policy, True) in self.failed or _shape(policy, may_preempt) in self.failed

    def recheck_at(self, *times: float) -> None:
        for t in times:
            if self.now < t < self.recheck:
                self.recheck = t

    def blocked(self, *times: float) -> None:
        """A placement failed: look again when a victim's minRuntime or idleTimeout runs out (the
        same for every blocked unit, so noted once per pass) or at `times` (a maxWaitTime)."""
        if not self._victims_noted:
            self._victims_noted = True
            for u in self.awake:
                if u.state == UnitState.awake and not u.policy.popular:
                    self.recheck_at(u.awake_since + u.policy.min_runtime, u.last_used + u.policy.idle_timeout)
        self.recheck_at(*times)


_HANDLERS = {
    ModelUpserted: Scheduler._on_ModelUpserted,
    ModelRemoved: Scheduler._on_ModelRemoved,
    RequestArrived: Scheduler._on_RequestArrived,
    RequestLeft: Scheduler._on_RequestLeft,
    RequestFinished: Scheduler._on_RequestFinished,
    FirstToken: Scheduler._on_FirstToken,
    EngineAwake: Scheduler._on_EngineAwake,
    EngineAsleep: Scheduler._on_EngineAsleep,
    EngineStopped: Scheduler._on_EngineStopped,
    EngineFailed: Scheduler._on_EngineFailed,
    TimerFired: Scheduler._on_TimerFired,
    DeviceMemoryRead: Scheduler._on_DeviceMemoryRead,
    HostMemoryRead: Scheduler._on_HostMemoryRead,
    SleepRequested: Scheduler._on_SleepRequested,
}
"""Event type -> its rule: every event of scheduler/messages.py, and nothing found by name."""


def _waits_since(queue: ModelQueue) -> float:
    """When a model with requests waiting began to wait, for its place among the waiting and for
    maxWaitTime: its oldest queued request's arrival, or MIN_SLICE_S after its first pause. Paused
    answers have begun, so they are in no hurry: the model they paused for keeps the engine for
    its next requests' first tokens for that long, and new requests of others go first."""
    paused = min(queue.paused.values(), default=float("inf")) + MIN_SLICE_S
    return min(paused, queue.oldest if queue.oldest is not None else float("inf"))


def _has_room(unit: Unit) -> bool:
    return unit.capacity == 0 or unit.in_flight < unit.capacity
