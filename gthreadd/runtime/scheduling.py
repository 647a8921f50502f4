"""The scheduler's effects layer: one task owns the decision core, feeds it events, and carries
out its actions on engines, request waiters and timers. Outcomes come back as events.

Requests meet the scheduler here: `admit()` waits for an Admit (or a Reject) of its own request
id, `finished()` reports it done. Engine operations (boot, wake, sleep, stop) run as tasks,
chained per unit so that they never overlap, and report EngineAwake/EngineAsleep/EngineFailed.
"""

import asyncio
import contextvars
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Optional

from gthreadd.observe import logs
from gthreadd.observe.changes import Changes
from scheduler.fairness import Scheduler
from scheduler.messages import (
    AbortInFlight, Action, Admit, Boot, DeviceMemoryRead, Drain, EngineAsleep, EngineAwake, EngineFailed,
    EngineStopped, Event, FirstToken, GiveUp, HostMemoryRead, Reject, RequestArrived, RequestFinished, RequestLeft,
    SetTimer, Sleep, Stop, TimerFired, Wake,
)
from gthreadd.runtime.unit_ops import Footprint, PermanentFailure, UnitOps
from scheduler.snapshot import SchedulerSnapshot
from scheduler.units import ENGINE_RUNNING, UnitId

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rejected(Exception):
    status: int
    reason: str
    retry_after: float = 0.0


@dataclass(eq=False)
class Ticket:
    """One admitted request: which unit serves it, and whether the scheduler has aborted it."""

    request_id: str
    model: str
    unit: UnitId
    task: Optional[asyncio.Task]
    aborted: str = ""
    owes_token: bool = True
    """No chunk of its answer has been written since it was admitted, or since its unit's wake
    resumed it: the next one is reported (FirstToken)."""


@dataclass
class SchedulerLoop:
    scheduler: Scheduler
    ops: UnitOps
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    free_bytes: Callable[[int], Optional[int]] = lambda index: None
    """The driver's free memory of a device (NVML), None where there is none to ask."""
    host_memory: Callable[[], tuple[int, int]] = lambda: (0, 0)
    """Host memory held by what is not an engine (the daemon, the host tier), and by those and
    every engine process in all: polled on the event loop while the scheduler keeps a host budget,
    so it reads counters the kernel keeps (tens of microseconds), where a worker thread for it
    cost more in hand-offs than the reading."""
    memory_poll_s: float = 5.0
    supervise_s: float = 1.0
    """How often engines are checked for a death (an EngineCore process that exited)."""
    changes: Changes = field(default_factory=Changes)
    """Bumped after every event: the live views' cue to look again."""
    _waiters: dict[str, asyncio.Future] = field(default_factory=dict)
    _tickets: dict[UnitId, set[Ticket]] = field(default_factory=dict)
    _timers: dict[tuple, asyncio.TimerHandle] = field(default_factory=dict)
    _unit_ops: dict[UnitId, asyncio.Task] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=itertools.count)
    _context: Optional[contextvars.Context] = None
    """The loop's own context, which decisions taken on a request's task run in: what they start
    (a boot, a wake) is not tagged with that request. None while the loop is not running: every
    event waits in the queue then."""
    _deciding: bool = False
    """A decision's actions are being carried out: an event they cause is queued behind it."""

    @property
    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def snapshot(self) -> SchedulerSnapshot:
        """The core's snapshot, with what turns its times into the wall clock's: what views read."""
        now = self.now
        return replace(self.scheduler.snapshot(), now=now, wall_offset=time.time() - now)

    def submit(self, event: Event) -> None:
        self.events.put_nowait(event)

    async def run(self) -> None:
        helpers = [asyncio.create_task(self._supervise(), name="supervise-engines")]
        if self.free_bytes(0) is not None:
            helpers.append(asyncio.create_task(self._poll_memory(), name="poll-device-memory"))
        if self.scheduler.config.host_limit:
            helpers.append(asyncio.create_task(self._poll_host(), name="poll-host-memory"))
        self._context = contextvars.copy_context()
        try:
            while True:
                self._decide(await self.events.get())
        finally:
            self._context = None
            for helper in helpers:
                helper.cancel()

    def _decide(self, event: Event) -> None:
        self._deciding = True
        try:
            for action in self.scheduler.decide(event, self.now):
                self._perform(action)
        finally:
            self._deciding = False
        self.changes.bump()

    def _request_event(self, event: Event) -> None:
        """A request's own arrival and finish are decided at once when nothing is queued before
        them and no decision is under way: the order the loop would give them, without two trips
        through the event loop per request (a request to an awake model is admitted without
        waiting at all)."""
        if self._context is not None and not self._deciding and self.events.empty():
            self._context.run(self._decide, event)
        else:
            self.submit(event)

    async def settle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the engine operations under way (boots, conversions,
        sleeps, wakes); cancel what is still running then. True when all finished on their own."""
        running = [task for task in self._unit_ops.values() if not task.done()]
        if not running:
            return True
        _, pending = await asyncio.wait(running, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return not pending

    # -- requests --------------------------------------------------------------------------------
    async def admit(self, model: str, key: str = "") -> Ticket:
        """Wait until one of the model's units may serve a request; raises Rejected. `key`: whose
        request it is (its API key's name), for its turn among the waiting."""
        request_id = f"q{next(self._ids)}"
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        self._request_event(RequestArrived(model, request_id, key))
        try:
            unit = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.submit(RequestFinished(waiter.result(), request_id))  # admitted just as the client left
            else:
                self.submit(RequestLeft(model, request_id))
            raise
        finally:
            self._waiters.pop(request_id, None)
        ticket = Ticket(request_id, model, unit, asyncio.current_task())
        self._tickets.setdefault(unit, set()).add(ticket)
        return ticket

    def token(self, ticket: Ticket) -> None:
        """A chunk of the request's answer was written: the first since its admission or its resume
        tells the core that the answer has begun or gone on, so its unit may yield early."""
        if ticket.owes_token:
            ticket.owes_token = False
            self._request_event(FirstToken(ticket.unit, ticket.request_id))

    def finished(self, ticket: Ticket) -> None:
        self._tickets.get(ticket.unit, set()).discard(ticket)
        self._request_event(RequestFinished(ticket.unit, ticket.request_id))

    # -- actions ---------------------------------------------------------------------------------
    def _perform(self, action: Action) -> None:
        """In the context of the action's model: its log lines, and those of the engine operation
        it starts (a task copies the context), are tagged with it."""
        unit: Optional[UnitId] = getattr(action, "unit", None)
        token = logs.MODEL.set(unit.model) if unit is not None else None
        try:
            self._carry_out(action)
        finally:
            if token is not None:
                logs.MODEL.reset(token)

    def _carry_out(self, action: Action) -> None:
        if isinstance(action, Admit):
            self._resolve(action.request_id, result=action.unit)
        elif isinstance(action, Reject):
            self._resolve(action.request_id, error=Rejected(action.status, action.reason, action.retry_after))
        elif isinstance(action, SetTimer):
            if (old := self._timers.pop(action.key, None)) is not None:
                old.cancel()
            delay = max(0.0, action.at - self.now)
            self._timers[action.key] = asyncio.get_running_loop().call_later(
                delay, self.submit, TimerFired(action.key))
        elif isinstance(action, Boot):
            log.info("scheduler: boot %s on devices %s (%s)", action.unit, action.devices, action.reason)
            booting = self.ops.boot(action.unit, action.devices, action.reason)
            self._chain(action.unit, self._when_free(action, booting), self._awake(action.unit))
        elif isinstance(action, Wake):
            log.info("scheduler: wake %s on devices %s (%s)", action.unit, action.devices, action.reason)
            waking = self.ops.wake(action.unit, action.reason)
            self._chain(action.unit, self._when_free(action, waking), self._awake(action.unit))
        elif isinstance(action, Drain):
            log.info("scheduler: sleep %s: %s", action.unit, action.reason)
        elif isinstance(action, Sleep):
            self._chain(action.unit, self._sleep(action), None)
        elif isinstance(action, AbortInFlight):
            log.warning("scheduler: aborting the requests of %s: %s", action.unit, action.reason)
            for ticket in self._tickets.get(action.unit, set()):
                ticket.aborted = action.reason
                if ticket.task is not None:
                    ticket.task.cancel()
        elif isinstance(action, GiveUp):
            log.error("scheduler: giving up on %s: %s", action.unit, action.reason)
            self.ops.give_up(action.unit, action.reason)
        elif isinstance(action, Stop):
            log.info("scheduler: stop %s%s", action.unit, f" ({action.reason})" if action.reason else "")
            self._chain(action.unit, self.ops.stop(action.unit, action.reason), lambda _: EngineStopped(action.unit))
        else:
            raise TypeError(f"the effects layer has no way to carry out {action!r}")

    def _awake(self, unit: UnitId) -> Callable[[Optional[Footprint]], EngineAwake]:
        """The event a successful boot or wake reports: what the engine was measured to hold, and
        how many requests it runs at once."""
        def event(footprint: Optional[Footprint]) -> EngineAwake:
            footprint = footprint or Footprint()
            for ticket in self._tickets.get(unit, ()):  # requests it resumed: each owes a token again
                ticket.owes_token = True
            engine = self.ops.engine(unit)
            return EngineAwake(unit, footprint.host, footprint.peak, engine.max_concurrency if engine else 0)
        return event

    async def _sleep(self, action: Sleep) -> None:
        if action.keep:
            paused = len(self._tickets.get(action.unit, ()))
            log.info("scheduler: pausing %d request(s) of %s until its next wake", paused, action.unit)
        footprint = await self.ops.sleep(action.unit, action.level, action.keep) or Footprint()
        self.submit(EngineAsleep(action.unit, footprint.held, action.level, footprint.host))

    def _resolve(self, request_id: str, result=None, error: Optional[Exception] = None) -> None:
        waiter = self._waiters.get(request_id)
        if waiter is None or waiter.done():
            if error is None and result is not None:  # admitted, but nobody waits: give it back
                self.submit(RequestFinished(result, request_id))
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(result)

    async def _when_free(self, action: Boot | Wake, operation) -> Optional[Footprint]:
        """Run a boot or wake only if the driver really has the memory free: what other processes
        took is not ours to take. Otherwise fail it (retried with backoff) and tell the core."""
        short = []
        for index, need in zip(action.devices, action.claims):
            free = self.free_bytes(index)
            if free is not None and free < need:
                self.submit(DeviceMemoryRead(index, free))
                short.append(f"GPU {index} has {free >> 20} MiB free, {action.unit} needs {need >> 20} MiB")
        if short:
            operation.close()
            raise RuntimeError("not enough free device memory (used by processes gthreadd does not own): "
                               + "; ".join(short))
        return await operation

    def _chain(self, unit: UnitId, operation, success: Optional[Callable[[object], Event]]) -> None:
        """Run `operation` after the unit's previous one, then report how it went: `success` makes
        the event from what the operation returned."""
        previous = self._unit_ops.get(unit)

        async def run() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                result = await operation
            except PermanentFailure as exc:
                self.submit(EngineFailed(unit, str(exc), retry=False))
                return
            except Exception as exc:
                log.exception("scheduler: %s failed", unit)
                self.submit(EngineFailed(unit, f"{type(exc).__name__}: {exc}"))
                return
            if success is not None:
                self.submit(success(result))

        self._unit_ops[unit] = asyncio.create_task(run(), name=f"unit:{unit}")

    async def _supervise(self) -> None:
        """Engine health is watched here, not where requests happen to notice it: a unit whose
        engine should be running (awake, asleep, or in a sleep, wake or drain) and has stopped (its
        EngineCore died) is reported, and the core restarts it with backoff. An operation under
        way on the dead engine is cancelled: vLLM's call into a dead EngineCore (a wake's reload)
        never returns, and the unit stayed `waking`, its queue timing out, until this did."""
        while True:
            await asyncio.sleep(self.supervise_s)
            for unit in self.scheduler.snapshot().units:
                if unit.state not in ENGINE_RUNNING:
                    continue
                engine = self.ops.engine(unit.id)
                if engine is not None and not engine.running:
                    cause = engine.exit_cause or "the vLLM engine stopped running"
                    log.error("scheduler: the engine of %s died: %s", unit.id, cause)
                    if (operation := self._unit_ops.get(unit.id)) is not None and not operation.done():
                        operation.cancel()
                    self.ops.died(unit.id, cause)
                    self.submit(EngineFailed(unit.id, cause, crashed=True))

    async def _poll_host(self) -> None:
        while True:
            self.submit(HostMemoryRead(*self.host_memory()))
            await asyncio.sleep(self.memory_poll_s)

    async def _poll_memory(self) -> None:
        while True:
            for index in self.scheduler.devices:
                free = self.free_bytes(index)
                if free is not None:
                    self.submit(DeviceMemoryRead(index, free))
            await asyncio.sleep(self.memory_poll_s)
