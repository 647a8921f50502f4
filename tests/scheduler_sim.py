"""SimulatedHost: a test double that plays the effects layer for the scheduler's decision core.

Engines wake, sleep and finish requests after fixed delays on a simulated clock; timers fire as
events. Used by the property tests to drive `Scheduler.decide` through long random histories.
"""

import heapq
import itertools
from dataclasses import dataclass, field

from scheduler.fairness import Scheduler
from scheduler.messages import (
    AbortInFlight, Admit, Boot, EngineAsleep, EngineAwake, EngineStopped, Event, FirstToken, Reject, RequestFinished,
    SetTimer, Sleep, Stop, TimerFired, Wake,
)


@dataclass
class SimulatedHost:
    scheduler: Scheduler
    wake_s: float = 2.0
    boot_s: float = 2.0
    sleep_s: float = 0.5
    request_s: float = 1.0
    stop_s: float = 0.5
    level1_held: int = 0
    """Bytes a level-1 sleep reports still held on each device (the weights on a CPU device)."""
    residue: int = 0
    """Bytes a level-2 sleep reports still held on each device (a CUDA context, allocator pools)."""
    host_awake: int = 0
    """Host memory an awake engine is measured to hold (and its boot's peak)."""
    capacity: int = 0
    """Requests an engine reports it runs at once (vLLM's max_num_seqs); 0: no limit."""
    first_token_s: float | None = None
    """A request has a token (FirstToken) this long after it starts running, and again this long
    after each resume; None: answers are not streamed, so only their finish is reported."""
    host_asleep: dict = field(default_factory=dict)
    """Sleep level -> host memory an engine asleep at that level is measured to hold."""
    now: float = 0.0
    admitted: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    in_flight: dict = field(default_factory=dict)
    paused: dict = field(default_factory=dict)
    """unit -> {request id: seconds it had left} for requests paused by a Sleep(keep=True)."""
    finished: dict[str, float] = field(default_factory=dict)
    """Request id -> when it ended (run to its end, or aborted)."""
    actions: list = field(default_factory=list)
    _queue: list = field(default_factory=list)
    _seq: itertools.count = field(default_factory=itertools.count)
    _timers: dict = field(default_factory=dict)
    _ends: dict = field(default_factory=dict)
    _unbegun: set = field(default_factory=set)
    """Requests running or paused whose next FirstToken is still to come."""

    def at(self, when: float, event: Event) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), event))

    def feed(self, event: Event, check=None) -> None:
        before = {uid: (u.state, u.in_flight, u.awake_since, u.last_used) for uid, u in self.scheduler.units.items()}
        actions = self.scheduler.decide(event, self.now)
        if check is not None:
            check(self, before, actions)
        self.actions.extend((self.now, a) for a in actions)
        for action in actions:
            self._perform(action)

    def _perform(self, action) -> None:
        if isinstance(action, (Boot, Wake)):
            took = self.boot_s if isinstance(action, Boot) else self.wake_s
            self.at(self.now + took, EngineAwake(action.unit, self.host_awake, self.host_awake, self.capacity))
            for rid, left in self.paused.pop(action.unit, {}).items():  # resumed once awake: a token is due again
                self._unbegun.add(rid)
                self._run(action.unit, rid, self.now + took + left, begins=self.now + took)
        elif isinstance(action, Sleep):
            if action.keep:
                self.paused[action.unit] = {rid: self._ends[rid] - self.now for rid in self.in_flight.pop(action.unit, ())}
            devices = self.scheduler.units[action.unit].devices
            held = self.level1_held if action.level == 1 else self.residue
            self.at(self.now + self.sleep_s, EngineAsleep(action.unit, tuple((i, held) for i in devices if held),
                                                          action.level, self.host_asleep.get(action.level, 0)))
        elif isinstance(action, Stop):
            self.at(self.now + self.stop_s, EngineStopped(action.unit))
        elif isinstance(action, Admit):
            self.admitted[action.request_id] = self.now
            self._unbegun.add(action.request_id)
            self._run(action.unit, action.request_id, self.now + self.request_s, begins=self.now)
        elif isinstance(action, AbortInFlight):  # they end now, and say so
            for rid in self.in_flight.get(action.unit, set()) | set(self.paused.pop(action.unit, {})):
                self._run(action.unit, rid, self.now, begins=self.now)
        elif isinstance(action, Reject):
            self.rejected[action.request_id] = action.status
        elif isinstance(action, SetTimer):
            self._timers[action.key] = action.at
            self.at(action.at, ("timer", action.key, action.at))

    def _run(self, unit, rid: str, end: float, begins: float) -> None:
        self.in_flight.setdefault(unit, set()).add(rid)
        self._ends[rid] = end
        self.at(end, ("finish", unit, rid))
        if self.first_token_s is not None and rid in self._unbegun and begins + self.first_token_s < end:
            self.at(begins + self.first_token_s, ("first", unit, rid, end))

    def run_until(self, until: float, check=None) -> None:
        while self._queue and self._queue[0][0] <= until:
            when, _, item = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            if isinstance(item, tuple) and item[0] == "finish":
                _, unit, rid = item
                if rid in self.in_flight.get(unit, set()) and self._ends[rid] == when:
                    self.in_flight[unit].discard(rid)
                    self._unbegun.discard(rid)
                    self.finished[rid] = self.now
                    self.feed(RequestFinished(unit, rid), check)
            elif isinstance(item, tuple) and item[0] == "first":
                _, unit, rid, end = item
                if rid in self._unbegun and rid in self.in_flight.get(unit, set()) and self._ends[rid] == end:
                    self._unbegun.discard(rid)
                    self.feed(FirstToken(unit, rid), check)
            elif isinstance(item, tuple) and item[0] == "timer":
                _, key, at = item
                if self._timers.get(key) == at:  # re-armed timers replace earlier ones
                    del self._timers[key]
                    self.feed(TimerFired(key), check)
            else:
                self.feed(item, check)
        self.now = max(self.now, until)
