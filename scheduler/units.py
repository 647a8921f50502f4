"""A unit is one engine: replica `replica` of a Model. Its state is a small machine of its own."""

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Optional


@dataclass(frozen=True, order=True)
class UnitId:
    model: str
    replica: int

    def __str__(self) -> str:
        return f"{self.model}/{self.replica}"


@dataclass(frozen=True)
class Policy:
    """What the scheduler needs of a Model's spec, in seconds and fractions."""

    tensor_parallel: int = 1
    memory_fraction: float = 0.9
    popular: bool = False
    min_runtime: float = 10.0
    max_wait: float = 5.0
    idle_timeout: float = 300.0
    drain_timeout: float = 30.0
    product: str = ""
    sleep_level: int = 1
    """1: a sleep frees the KV cache and keeps the weights (a fast wake); where they stay in device
    memory (the CPU device), the asleep unit holds them, and another model short of memory has it
    deepened to level 2, which frees them too. spec.sleep.level."""
    unschedulable_reason: str = ""
    """Set by the caller when the host cannot satisfy the Model's nodeSelector."""
    host_estimate: int = 0
    """Host memory a first boot of the model is expected to need, until a boot has been measured
    (its peak then counts instead); 0 where no host budget is kept."""


class UnitState(str, Enum):
    cold = "cold"            # no engine
    booting = "booting"      # engine starting; claims its devices
    awake = "awake"          # serving
    draining = "draining"    # barrier up, waiting for in-flight requests
    sleeping = "sleeping"    # sleep call in progress
    asleep = "asleep"        # engine alive; holds its measured residue (and, at level 1 on the CPU, its weights)
    waking = "waking"
    stopping = "stopping"    # an asleep engine being stopped for a budget; back to cold once it is gone
    restarting = "restarting"  # engine gone (died, or a boot or wake failed); tried again at retry_at
    failed = "failed"        # given up on (a crash loop, or a failure retrying cannot fix) until an edit
    unschedulable = "unschedulable"


CLAIMING = frozenset({UnitState.booting, UnitState.awake, UnitState.draining, UnitState.sleeping, UnitState.waking})
"""States in which a unit holds accelerator memory."""

ENGINE_RUNNING = frozenset({UnitState.awake, UnitState.draining, UnitState.sleeping, UnitState.asleep,
                            UnitState.waking})
"""States in which the unit's engine processes run: what supervision watches (a boot's own start
reports its failure; a stop is taking the engine away)."""

ENGINE_GONE = frozenset({UnitState.restarting, UnitState.failed})
"""Where an engine failure leads, from any state with an engine (`Unit.lose_engine`)."""

TRANSITIONS: dict[UnitState, frozenset[UnitState]] = {
    UnitState.cold: frozenset({UnitState.booting, UnitState.unschedulable}),
    UnitState.booting: frozenset({UnitState.awake}) | ENGINE_GONE,
    UnitState.awake: frozenset({UnitState.draining}) | ENGINE_GONE,
    UnitState.draining: frozenset({UnitState.sleeping}) | ENGINE_GONE,
    UnitState.sleeping: frozenset({UnitState.asleep}) | ENGINE_GONE,
    UnitState.asleep: frozenset({UnitState.waking, UnitState.stopping}) | ENGINE_GONE,
    UnitState.stopping: frozenset({UnitState.cold}) | ENGINE_GONE,
    UnitState.waking: frozenset({UnitState.awake}) | ENGINE_GONE,
    UnitState.restarting: frozenset({UnitState.booting}),
    UnitState.failed: frozenset(),
    UnitState.unschedulable: frozenset({UnitState.cold}),
}
"""A failed unit leaves only by being replaced: an edit of its Model starts a new generation."""


@dataclass
class Unit:
    id: UnitId
    policy: Policy
    state: UnitState = UnitState.cold
    devices: tuple[int, ...] = ()
    in_flight: int = 0
    capacity: int = 0
    """Requests its engine runs at once (vLLM's max_num_seqs), as it reported when it came up; past
    it a request waits in the model's queue, where keys take turns, rather than in vLLM's, which
    is first come first served. 0: no limit."""
    awake_since: float = 0.0
    last_used: float = 0.0
    failures: int = 0
    """Failures since the engine was last up: the retry backoff's exponent."""
    crashes: list[float] = field(default_factory=list)
    """When its running engine died lately: what a crash loop is judged on."""
    retry_at: float = 0.0
    """Restarting: when its backoff is over and it may be started again."""
    restore: bool = False
    """Its engine died while serving: until it is up again it has a claim on capacity before
    first boots and pre-wakes (scheduler/restore.py)."""
    reason: str = ""
    held: dict[int, int] = field(default_factory=dict)
    """Asleep: bytes its engine still holds per device, as measured after the sleep (a CUDA
    context and allocator pools; on the CPU its whole process, weights included at level 1)."""
    level: int = 0
    """The sleep level it is asleep at (0 when not asleep)."""
    host_bytes: int = 0
    """Host memory the ledger counts for it: measured when it came up or went to sleep, reserved
    (what it is expected to need) while it boots or wakes, 0 without an engine."""
    awake_host: int = 0
    """Host memory it held when last measured awake: what its next wake needs."""
    asleep_host: int = 0
    """Host memory it held when last measured asleep: what putting it to sleep again leaves."""
    started: float = 0.0
    """When its last boot or wake began."""
    wake_s: float = 0.0
    """How long its last wake took (0: none yet): how far ahead of a request a pre-wake starts."""
    making_room: bool = False
    """Room is being made for it (victims put to sleep or stopped): its place among the waiting
    models is kept until it starts, so nobody takes that room from it."""
    stopped: str = ""
    """Why a budget stopped its engine, until it is up again: what its cold start says."""
    deepening: bool = False
    """Asleep, being put to sleep at level 2 to free what it holds for another model."""
    yields_to: str = ""
    """Draining for this model (preempted, or for host memory): what is still running when its
    drainTimeout runs out is paused, not aborted, and while that model has new requests waiting
    (not only paused ones) it pauses as soon as each request it runs has had a token since its
    wake (rule 14). Empty: not yielding."""
    kept: int = 0
    """Requests paused in its engine when it went to sleep for another model: they resume at its
    next wake (`ModelQueue.paused` says since when), and are not counted in flight meanwhile."""
    unanswered: set[str] = field(default_factory=set)
    """Requests it runs that have had no token since its wake (a new one's first, a resumed one's
    first after the resume): while one has not, a yielding unit runs its least slice (rule 14)."""
    short_slices: int = 0
    """Wakes that ended paused while a request it ran still owed its token, since it last had
    nothing to run: each doubles its least slice (rule 14). Pausing an answer before its token
    throws its prefill away, so a batch of resumed answers whose recompute outlasts one slice
    would otherwise never get one (found by the simulator at --share 0.3)."""
    begun: set[str] = field(default_factory=set)
    """Requests it runs or holds paused that have had a token since its wake: at its next wake they
    are unanswered again."""
    drain_until: float = 0.0
    """Draining: when its drainTimeout runs out."""
    booted: bool = False
    """The engine has come up at least once (`bootReady`)."""
    generation: int = 0

    def had_token(self, request_id: str) -> bool:
        """The request has had a token since the wake: True when it was the last that had not."""
        if request_id not in self.unanswered:
            return False
        self.unanswered.remove(request_id)
        self.begun.add(request_id)
        return not self.unanswered

    def ended(self, request_id: str) -> bool:
        """The request is over: True when it was the last that had had no token since the wake."""
        self.begun.discard(request_id)
        if request_id not in self.unanswered:
            return False
        self.unanswered.remove(request_id)
        return not self.unanswered

    def to(self, state: UnitState) -> None:
        if state not in TRANSITIONS[self.state]:
            raise ValueError(f"unit {self.id}: {self.state.value} -> {state.value} is not allowed")
        self.state = state


@dataclass
class ModelQueue:
    """Requests waiting for one of a model's units: to be awake, or to have room (all of them
    running their capacity). Keys take turns (round-robin, oldest first within a key), so one
    key's burst cannot put another key's request behind hundreds of its own."""

    waiting: dict[str, float] = field(default_factory=dict)
    """request id -> when it was queued (dicts keep insertion order)."""
    _by_key: dict[str, deque[str]] = field(default_factory=dict)
    """Each key's waiting requests, oldest first. A request that left is dropped lazily: it is no
    longer in `waiting` when its turn comes."""
    _turns: deque[str] = field(default_factory=deque)
    """The keys with requests waiting, in the order their turns come."""
    paused: dict[UnitId, float] = field(default_factory=dict)
    """Units of the model whose engines hold paused requests (`Unit.kept`), and since when: those
    wait for that unit's wake as queued requests wait for any unit's."""

    @property
    def oldest(self) -> Optional[float]:
        return next(iter(self.waiting.values()), None)

    @property
    def wants(self) -> bool:
        """Requests of the model wait: queued, or paused in an engine that went to sleep."""
        return bool(self.waiting or self.paused)

    def add(self, request_id: str, key: str, now: float) -> None:
        self.waiting[request_id] = now
        if key not in self._by_key:
            self._by_key[key] = deque()
            self._turns.append(key)
        self._by_key[key].append(request_id)

    def next(self) -> Optional[str]:
        """The request whose turn it is, taken off the queue; None when none waits."""
        while self._turns:
            key = self._turns.popleft()
            requests = self._by_key[key]
            while requests and requests[0] not in self.waiting:
                requests.popleft()
            if not requests:
                del self._by_key[key]
                continue
            request_id = requests.popleft()
            del self.waiting[request_id]
            if requests:
                self._turns.append(key)
            else:
                del self._by_key[key]
            return request_id
        return None

    def clear(self) -> list[str]:
        """Every request waiting, taken off the queue."""
        taken = list(self.waiting)
        self.waiting.clear()
        self._by_key.clear()
        self._turns.clear()
        return taken
