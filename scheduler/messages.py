"""What flows into the decision core (events) and out of it (actions). Frozen values only."""

from dataclasses import dataclass
from typing import Union

from scheduler.units import Policy, UnitId


# Events -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelUpserted:
    model: str
    policy: Policy
    replicas: int
    generation: int = 0
    """Bumped when the model needs new engines (an edit of an engine field): units restart."""


@dataclass(frozen=True)
class ModelRemoved:
    model: str


@dataclass(frozen=True)
class RequestArrived:
    model: str
    request_id: str
    key: str = ""
    """Whose request it is (its API key's name): waiting requests take turns by key."""


@dataclass(frozen=True)
class RequestLeft:
    """A queued request gave up (client went away) before it was admitted."""

    model: str
    request_id: str


@dataclass(frozen=True)
class RequestFinished:
    unit: UnitId
    request_id: str


@dataclass(frozen=True)
class FirstToken:
    """An admitted request's answer has begun (its first streamed chunk): what lets a unit that
    woke for it yield early (rule 14). Answers that are not streamed begin when they finish."""

    unit: UnitId
    request_id: str


@dataclass(frozen=True)
class EngineAwake:
    unit: UnitId
    host: int = 0
    """Host memory its engine holds now, measured (0: not measured)."""
    peak: int = 0
    """The most host memory its engine held at once while it came up, measured: what the next boot
    of this model is expected to need (0: not measured)."""
    capacity: int = 0
    """Requests the engine runs at once (vLLM's max_num_seqs); 0: unknown, no limit."""


@dataclass(frozen=True)
class EngineAsleep:
    unit: UnitId
    held: tuple[tuple[int, int], ...] = ()
    """(device, bytes) the engine still holds there, measured after a level-1 sleep that keeps the
    weights in device memory (the CPU device); empty when it holds none."""
    level: int = 1
    host: int = 0
    """Host memory its engine still holds, measured (level-1 weight copies included)."""


@dataclass(frozen=True)
class EngineStopped:
    """A unit's engine is gone after a Stop: what it held is free."""

    unit: UnitId


@dataclass(frozen=True)
class EngineFailed:
    unit: UnitId
    reason: str
    retry: bool = True
    """False when retrying cannot help (bad extraArgs, missing checkpoint): only an edit can."""
    crashed: bool = False
    """A running engine died (found by supervision), as opposed to an operation that failed: only
    deaths count towards a crash loop, so a boot that keeps failing (memory held by others, say)
    keeps being retried with backoff."""


@dataclass(frozen=True)
class TimerFired:
    key: tuple


@dataclass(frozen=True)
class DeviceMemoryRead:
    """Free memory as the driver reports it: whatever our claims do not explain belongs to others."""

    device: int
    free_bytes: int


@dataclass(frozen=True)
class HostMemoryRead:
    """Host memory, measured: what is not an engine's (the daemon itself, the host tier), and what
    the daemon, the host tier and every engine process hold in all (0: not measured)."""

    other_bytes: int
    total_bytes: int = 0


@dataclass(frozen=True)
class SleepRequested:
    """An operator put the model to sleep (`gthread sleep`): its awake units drain and sleep now,
    as if their idleTimeout had run out. Popular units stay up: popular means never slept."""

    model: str


Event = Union[ModelUpserted, ModelRemoved, RequestArrived, RequestLeft, RequestFinished, FirstToken, EngineAwake,
              EngineAsleep, EngineStopped, EngineFailed, TimerFired, DeviceMemoryRead, HostMemoryRead,
              SleepRequested]


# Actions ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Boot:
    unit: UnitId
    devices: tuple[int, ...]
    reason: str
    claims: tuple[int, ...] = ()
    """Bytes the unit claims on each of `devices`, in order: what the driver must really have free."""


@dataclass(frozen=True)
class Wake:
    unit: UnitId
    devices: tuple[int, ...]
    reason: str
    claims: tuple[int, ...] = ()
    """As Boot's."""


@dataclass(frozen=True)
class Drain:
    """Raise the unit's barrier; its in-flight requests may finish until the drain deadline."""

    unit: UnitId
    reason: str


@dataclass(frozen=True)
class Sleep:
    """Put the unit's engine to sleep at `level`; an asleep unit at level 1 is deepened to 2.
    `keep`: its requests still running are paused in the engine, to resume at its next wake (their
    KV cache is freed with the rest: vLLM recomputes it then)."""
    unit: UnitId
    level: int = 2
    keep: bool = False


@dataclass(frozen=True)
class AbortInFlight:
    unit: UnitId
    reason: str


@dataclass(frozen=True)
class Stop:
    unit: UnitId
    reason: str = ""
    """Why, when a budget stops an asleep engine (empty when its Model went away or changed)."""


@dataclass(frozen=True)
class GiveUp:
    """Stop retrying a unit that keeps failing (a crash loop): its model is Failed until an edit."""
    unit: UnitId
    reason: str


@dataclass(frozen=True)
class Admit:
    request_id: str
    unit: UnitId


@dataclass(frozen=True)
class Reject:
    request_id: str
    status: int
    reason: str
    retry_after: float = 0.0


@dataclass(frozen=True)
class SetTimer:
    at: float
    key: tuple


Action = Union[Boot, Wake, Drain, Sleep, AbortInFlight, Stop, GiveUp, Admit, Reject, SetTimer]
