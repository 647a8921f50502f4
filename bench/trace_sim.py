"""A discrete-event simulation of one accelerator serving a trace under a scheduling policy.

Every policy has the decision core's interface, `decide(event, now) -> actions` with the messages of
scheduler/messages.py, so gthreadd's policy is its real core (scheduler.fairness.Scheduler, built
from the same Model files and device as the daemon's), not a re-implementation, and the peers'
policies are small classes beside it. The simulator plays the daemon's effects layer
(gthreadd/runtime/scheduling.py) on a virtual clock: Boot and Wake report EngineAwake after the
boot and wake times (a wake from level 2 costs more than one from level 1), Sleep reports
EngineAsleep after the sleep time, with the bytes a sleeper holds at its level, Stop reports EngineStopped
after the stop time (operations on one unit run one after the other, as the daemon chains them),
Admit starts the request on the unit's EngineTimeModel, which reports FirstToken at its first token
(and again at its first after a resume) and RequestFinished when it ends, AbortInFlight ends the
unit's requests with a 503, and SetTimer fires TimerFired (a timer set again replaces the earlier one).

Engines are a model of time, not vLLM: see EngineTimeModel. All costs come in a `Costs`, measured
by the real run (bench/trace.py). Deterministic: no clock and no randomness.
"""

import heapq
import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional, Protocol

from gthreadd.spec.manifests import parse_text
from gthreadd.spec.policy import policy_for
from scheduler.fairness import Scheduler
from scheduler.inventory import Device
from scheduler.messages import (
    AbortInFlight, Action, Admit, Boot, Drain, EngineAsleep, EngineAwake, EngineStopped, Event, FirstToken,
    ModelUpserted, Reject, RequestArrived, RequestFinished, SetTimer, Sleep, Stop, TimerFired, Wake,
)
from scheduler.placement import claim_bytes
from scheduler.units import UnitId
from trace_gen import Request


class SchedulingPolicy(Protocol):
    def decide(self, event: Event, now: float) -> list[Action]: ...


@dataclass(frozen=True)
class Costs:
    boot_s: float
    """Starting an engine from nothing to its first answer."""
    wake_s: float
    """From sleep level 1 (the weights kept: on the CPU only the KV cache is re-created)."""
    wake_deep_s: float
    """From sleep level 2 (the weights reloaded too)."""
    sleep_s: float
    """Awake to level 1."""
    deepen_s: float
    """Level 1 to level 2, when the core wants a level-1 sleeper's memory."""
    held_bytes: int
    """What a level-1 sleeper still holds on the CPU device (the daemon measures it after each
    sleep and reports it in EngineAsleep.held)."""
    stop_s: float
    prefill_s: float
    """An engine alone, from admission to the first token."""
    token_s: float
    """An engine alone, each further token."""
    batch_slowdown: float
    """Each further stream on an engine slows a stream's decoding by this fraction of its speed alone."""
    prefill_slowdown: float
    """The same for a stream's prefill, which costs more per extra stream: prefills are computed,
    decodes of a small model mostly wait on memory."""
    held_deep_bytes: int = 0
    """What a level-2 sleeper still holds on the CPU device: its processes without the weights
    (runs before 2026-12-06 did not measure it: 0)."""
    idle_cost_s: float = 0.0
    idle_s: float = 1.0
    """A request that finds nothing in flight on the machine for t seconds reaches its first token
    `idle_cost_s x (1 - exp(-t / idle_s))` later than a warm one: on the 12-06 machine `vllm serve`
    answered the first request after 30 s of quiet in 0.5 s and one inside a burst in 0.13 s. It is
    the machine's quiet more than the engine's (bench/cold_engine.py: 0.26 s after 30 s of quiet,
    0.13 s after 30 s in which another engine served, 0.08 s warm). Fitted to each run (bench/trace.py)
    on what the simulation without it misses; runs before 2026-12-06 did not measure it: 0."""

    def idle_cost(self, quiet_s: float) -> float:
        return self.idle_cost_s * -math.expm1(-quiet_s / self.idle_s)


class EngineTimeModel:
    """One awake engine's requests as processor sharing: a request is `prefill_s` of prefill work
    to its first token, then `token_s` of decode work per further token; with n requests in flight
    its prefill advances at 1 / (1 + prefill_slowdown (n - 1)) of its speed alone and its decoding
    at 1 / (1 + batch_slowdown (n - 1)). That is vLLM's continuous batching reduced to two measured
    numbers: a batched step costs more than a lone one, and less than n of them."""

    def __init__(self, costs: Costs, now: float):
        self.costs = costs
        self.at = now
        self.work: dict[str, list[float]] = {}
        """request id -> [prefill work left, decode work left]"""
        self.decoding: set[str] = set()
        """Requests whose first token is out."""
        self.quiet_since = now
        """When its last request ended (Costs.idle_cost)."""

    def speeds(self) -> tuple[float, float]:
        """(prefill, decode) speed of each stream, with today's number of streams."""
        more = max(len(self.work) - 1, 0)
        return 1 / (1 + self.costs.prefill_slowdown * more), 1 / (1 + self.costs.batch_slowdown * more)

    def advance(self, now: float) -> None:
        prefill, decode = self.speeds()
        for rid, left in self.work.items():
            if rid in self.decoding:
                left[1] -= (now - self.at) * decode
            else:
                left[0] -= (now - self.at) * prefill
        self.at = now

    def add(self, request_id: str, tokens: int, now: float, cold_s: float = 0.0) -> None:
        """`cold_s`: prefill work beyond a warm engine's (Costs.idle_cost)."""
        self.advance(now)
        self.work[request_id] = [self.costs.prefill_s + cold_s, (max(tokens, 1) - 1) * self.costs.token_s]

    def remove(self, request_id: str, now: float) -> None:
        self.advance(now)
        self.work.pop(request_id, None)
        self.decoding.discard(request_id)
        if not self.work:
            self.quiet_since = now

    def first_token(self, request_id: str) -> None:
        self.decoding.add(request_id)

    def next_milestone(self) -> Optional[tuple[float, str, str]]:
        """(when, request id, 'first' or 'end') of the next first token or end, at today's speeds."""
        best: Optional[tuple[float, str, str]] = None
        prefill, decode = self.speeds()
        for rid, (first, rest) in self.work.items():
            when, kind = ((self.at + max(rest, 0.0) / decode, "end") if rid in self.decoding
                          else (self.at + max(first, 0.0) / prefill, "first"))
            if best is None or (when, rid) < best[:2]:
                best = (when, rid, kind)
        return best


@dataclass
class Outcome:
    """What became of one request; times are seconds from the trace's start."""

    id: str
    model: str
    at: float
    ttft: Optional[float] = None
    e2e: Optional[float] = None
    status: int = 0
    """200 answered, else the error's HTTP status; 0 while unanswered."""


# -- the peers' policies ---------------------------------------------------------------------------
def _intake(models: set[str], queue: deque, event) -> Optional[list[Action]]:
    """The peers' common bookkeeping: Models they know, requests queued in arrival order; the
    refusal of a request for an unknown model, else None."""
    if isinstance(event, ModelUpserted):
        models.add(event.model)
    elif isinstance(event, RequestArrived):
        if event.model not in models:
            return [Reject(event.request_id, 404, f"no model {event.model}")]
        queue.append((event.request_id, event.model))
    return None


class LlamaSwapPolicy:
    """llama-swap's way: one model's server runs at a time. A request for another model waits until
    the running server has no request in flight (nothing is preempted), then that server is stopped
    and the other started. Requests are taken in arrival order (llama-swap's swap lock), so one
    waiting for a swap holds up those behind it, even those for the model that runs."""

    def __init__(self) -> None:
        self.models: set[str] = set()
        self.queue: deque[tuple[str, str]] = deque()
        self.running: Optional[str] = None
        self.up = False
        self.in_flight = 0

    def decide(self, event: Event, now: float) -> list[Action]:
        if (refused := _intake(self.models, self.queue, event)) is not None:
            return refused
        if isinstance(event, RequestFinished):
            self.in_flight -= 1
        elif isinstance(event, EngineAwake):
            self.up = True
        elif isinstance(event, EngineStopped):
            self.running, self.up = None, False
        return self._pump()

    def _pump(self) -> list[Action]:
        actions: list[Action] = []
        while self.queue:
            rid, model = self.queue[0]
            if model == self.running and self.up:
                self.queue.popleft()
                self.in_flight += 1
                actions.append(Admit(rid, UnitId(model, 0)))
            elif self.running is None:
                self.running = model
                actions.append(Boot(UnitId(model, 0), (0,), "swap in"))
                break
            else:
                if model != self.running and self.up and self.in_flight == 0:
                    self.up = False
                    actions.append(Stop(UnitId(self.running, 0)))
                break
        return actions


class OllamaPolicy:
    """Ollama's scheduler: a model is loaded into free memory on its first request and stays for
    `keep_alive_s` after its last; when memory is short, the least recently used idle model is
    unloaded (stopped), and a busy one never: if all are busy the request waits. Requests are taken
    in arrival order, and one waiting for memory holds up those behind it (Ollama's pending loop
    waits for the unload). A load is an engine start, an unload a stop: Ollama has no sleep."""

    def __init__(self, fits: int, keep_alive_s: float = 300.0):
        self.fits = fits
        self.keep_alive_s = keep_alive_s
        self.models: set[str] = set()
        self.queue: deque[tuple[str, str]] = deque()
        self.loaded: dict[str, str] = {}
        """model -> loading, up or stopping"""
        self.in_flight: dict[str, int] = {}
        self.last_used: dict[str, float] = {}

    def decide(self, event: Event, now: float) -> list[Action]:
        actions: list[Action] = []
        if (refused := _intake(self.models, self.queue, event)) is not None:
            return refused
        if isinstance(event, RequestFinished):
            model = event.unit.model
            self.in_flight[model] -= 1
            self.last_used[model] = now
            if self.in_flight[model] == 0:
                actions.append(SetTimer(now + self.keep_alive_s, ("expire", model)))
        elif isinstance(event, EngineAwake):
            self.loaded[event.unit.model] = "up"
            self.last_used[event.unit.model] = now
            actions.append(SetTimer(now + self.keep_alive_s, ("expire", event.unit.model)))
        elif isinstance(event, EngineStopped):
            self.loaded.pop(event.unit.model, None)
        elif isinstance(event, TimerFired) and event.key[0] == "expire":
            model = event.key[1]
            if (self.loaded.get(model) == "up" and not self.in_flight.get(model)
                    and now - self.last_used[model] >= self.keep_alive_s):
                self.loaded[model] = "stopping"
                actions.append(Stop(UnitId(model, 0)))
        return actions + self._pump(now)

    def _pump(self, now: float) -> list[Action]:
        actions: list[Action] = []
        while self.queue:
            rid, model = self.queue[0]
            state = self.loaded.get(model)
            if state == "up":
                self.queue.popleft()
                self.in_flight[model] = self.in_flight.get(model, 0) + 1
                self.last_used[model] = now
                actions.append(Admit(rid, UnitId(model, 0)))
                continue
            if state is None and len(self.loaded) < self.fits:
                self.loaded[model] = "loading"
                actions.append(Boot(UnitId(model, 0), (0,), "load"))
            elif state is None:
                idle = [m for m, s in self.loaded.items() if s == "up" and not self.in_flight.get(m)]
                if idle:
                    victim = min(idle, key=lambda m: self.last_used[m])
                    self.loaded[victim] = "stopping"
                    actions.append(Stop(UnitId(victim, 0)))
            break
        return actions


# -- gthreadd's policy: the real core --------------------------------------------------------------
def gthreadd_core(model_files: dict[str, str], device: Device) -> tuple[Scheduler, list[ModelUpserted]]:
    """The daemon's scheduler for these Model files on this device (with the daemon's default queue
    limit and timeout), and the events that declare them, as the daemon derives them
    (gthreadd/spec/policy.py)."""
    upserts = []
    for name, text in model_files.items():
        parsed = parse_text(text, name)
        if parsed.errors:
            raise ValueError("; ".join(map(str, parsed.errors)))
        resource = parsed.models[0]
        upserts.append(ModelUpserted(resource.metadata.name, policy_for(resource, [device]), resource.spec.replicas))
    return Scheduler([device]), upserts


def models_that_fit(model_files: dict[str, str], device: Device) -> int:
    """How many of these (equal) Models the device holds awake at once: what the peers may load."""
    _, upserts = gthreadd_core(model_files, device)
    return int(device.capacity_bytes // claim_bytes(upserts[0].policy, device))


# -- the simulator ---------------------------------------------------------------------------------
@dataclass
class Simulation:
    policy: SchedulingPolicy
    costs: Costs
    models: Sequence[ModelUpserted]
    """What the policy is told at the start (the peers read only the names)."""
    now: float = 0.0
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    _heap: list = field(default_factory=list)
    _seq: itertools.count = field(default_factory=itertools.count)
    _timers: dict[tuple, float] = field(default_factory=dict)
    _engines: dict[UnitId, EngineTimeModel] = field(default_factory=dict)
    _engine_version: dict[UnitId, int] = field(default_factory=dict)
    _unit_free_at: dict[UnitId, float] = field(default_factory=dict)
    _asleep_at: dict[UnitId, int] = field(default_factory=dict)
    """The sleep level of each unit that is asleep or going to sleep."""
    _tokens: dict[str, int] = field(default_factory=dict)
    _arrived: dict[str, float] = field(default_factory=dict)
    _warmup: deque = field(default_factory=deque)
    _trace: list[Request] = field(default_factory=list)
    _start: float = 0.0
    _settle_s: float = 0.0
    _paused: dict[UnitId, dict[str, list[float]]] = field(default_factory=dict)
    """A unit's requests paused by a Sleep(keep=True), and their work left."""

    def run(self, trace: list[Request], warmup: Sequence[str] = (), settle_s: float = 0.0) -> list[Outcome]:
        """Declare the models, answer one request to each of `warmup` in turn (as the real run
        does, so that every engine has booted and the last one is awake), wait `settle_s`, then
        replay `trace`. Runs until nothing is left to happen."""
        for event in self.models:
            self._feed(event)
        self._trace, self._settle_s = trace, settle_s
        self._warmup = deque(f"warmup-{i}:{m}" for i, m in enumerate(warmup))
        self._next_warmup()
        while self._heap:
            when, _, kind, item = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            if kind == "event":
                self._feed(item)
            elif kind == "arrive":
                self._arrive(item)
            elif kind == "timer":
                key, at = item
                if self._timers.get(key) == at:
                    del self._timers[key]
                    self._feed(TimerFired(key))
            elif kind == "engine":
                self._engine_milestone(*item)
            elif kind == "resume":
                self._resume(item)
        return [self.outcomes[r.id] for r in trace]

    def _at(self, when: float, kind: str, item) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), kind, item))

    def _next_warmup(self) -> None:
        if self._warmup:
            rid = self._warmup.popleft()
            self._tokens[rid] = 1
            self._arrived[rid] = self.now
            self._feed(RequestArrived(rid.split(":")[1], rid))
        else:
            self._start = self.now + self._settle_s
            for request in self._trace:
                self._at(self._start + request.at, "arrive", request)

    def _arrive(self, request: Request) -> None:
        self.outcomes[request.id] = Outcome(request.id, request.model, request.at)
        self._tokens[request.id] = request.max_tokens
        self._arrived[request.id] = self.now
        self._feed(RequestArrived(request.model, request.id))

    def _feed(self, event) -> None:
        for action in self.policy.decide(event, self.now):
            self._perform(action)

    def _operation(self, unit: UnitId, seconds: float, outcome) -> float:
        """Run an engine operation after the unit's previous one, then report `outcome`; returns
        when that is."""
        start = max(self.now, self._unit_free_at.get(unit, 0.0))
        self._unit_free_at[unit] = start + seconds
        self._at(start + seconds, "event", outcome)
        return start + seconds

    def _perform(self, action: Action) -> None:
        if isinstance(action, Boot):
            self._operation(action.unit, self.costs.boot_s, EngineAwake(action.unit))
        elif isinstance(action, Wake):
            deep = self._asleep_at.pop(action.unit, 2) == 2
            awake = self._operation(action.unit, self.costs.wake_deep_s if deep else self.costs.wake_s,
                                    EngineAwake(action.unit))
            if action.unit in self._paused:
                self._at(awake, "resume", action.unit)
        elif isinstance(action, Sleep):
            if action.keep and (engine := self._engines.get(action.unit)) is not None:
                engine.advance(self.now)
                self._paused[action.unit] = engine.work
                engine.work, engine.decoding = {}, set()
                self._schedule_engine(action.unit)
            deepening = action.unit in self._asleep_at
            self._asleep_at[action.unit] = action.level
            kept = self.costs.held_bytes if action.level == 1 else self.costs.held_deep_bytes
            held = ((0, kept),) if kept else ()
            self._operation(action.unit, self.costs.deepen_s if deepening else self.costs.sleep_s,
                            EngineAsleep(action.unit, held, action.level))
        elif isinstance(action, Stop):
            self._operation(action.unit, self.costs.stop_s, EngineStopped(action.unit))
        elif isinstance(action, Admit):
            cold = self._idle_cost()
            engine = self._engines.setdefault(action.unit, EngineTimeModel(self.costs, self.now))
            engine.add(action.request_id, self._tokens[action.request_id], self.now, cold)
            self._schedule_engine(action.unit)
        elif isinstance(action, AbortInFlight):
            engine = self._engines.get(action.unit)
            for rid in list(engine.work) if engine else []:
                engine.remove(rid, self.now)
                self._end(rid, 503)
                self._at(self.now, "event", RequestFinished(action.unit, rid))
            self._schedule_engine(action.unit)
        elif isinstance(action, Reject):
            self._end(action.request_id, action.status)
        elif isinstance(action, SetTimer):
            self._timers[action.key] = action.at
            self._at(action.at, "timer", (action.key, action.at))
        elif not isinstance(action, Drain):  # a drain only raises the barrier: the core queues from then on
            raise TypeError(f"the simulator cannot carry out {action!r}")

    def _schedule_engine(self, unit: UnitId) -> None:
        """(Re)plan the unit's next milestone; any planned before is void (its batch changed)."""
        version = self._engine_version[unit] = self._engine_version.get(unit, 0) + 1
        milestone = self._engines[unit].next_milestone()
        if milestone is not None:
            when, rid, kind = milestone
            self._at(when, "engine", (unit, rid, kind, version))

    def _engine_milestone(self, unit: UnitId, rid: str, kind: str, version: int) -> None:
        if self._engine_version[unit] != version:
            return
        engine = self._engines[unit]
        engine.advance(self.now)
        if kind == "first":
            engine.first_token(rid)
            outcome = self.outcomes.get(rid)
            if outcome is not None and outcome.ttft is None:
                outcome.ttft = self.now - self._arrived[rid]
            self._feed(FirstToken(unit, rid))
        else:
            engine.remove(rid, self.now)
            self._feed(RequestFinished(unit, rid))
            self._end(rid, 200)
        self._schedule_engine(unit)

    def _resume(self, unit: UnitId) -> None:
        """A woken engine runs its paused requests again, their KV cache recomputed first: a prefill,
        which yields each one's next token (FirstToken again: the core counts it as progress)."""
        work = self._paused.pop(unit)
        engine = self._engines[unit]
        engine.advance(self.now)
        for rid, (_, decode) in work.items():
            engine.work[rid] = [self.costs.prefill_s, max(decode - self.costs.token_s, 0.0)]
        self._schedule_engine(unit)

    def _idle_cost(self) -> float:
        """What a request admitted now pays for the machine's quiet: nothing while any engine runs
        or holds paused requests, else Costs.idle_cost since the last request ended."""
        if self._paused or any(engine.work for engine in self._engines.values()):
            return 0.0
        return self.costs.idle_cost(self.now - max((e.quiet_since for e in self._engines.values()), default=0.0))

    def _end(self, rid: str, status: int) -> None:
        """Record how a request ended; a warm-up request's end sends the next one, as a client would."""
        outcome = self.outcomes.get(rid)
        if outcome is not None:
            outcome.status = status
            outcome.e2e = self.now - self._arrived[rid]
        elif rid.startswith("warmup-"):
            self._next_warmup()
