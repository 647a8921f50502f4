"""A read-only copy of the scheduler's state for the views (status, metrics, the CLI's reads):
they read this, never the core's live units and queues, so nothing outside the core can change
what a decision sees, and a view is consistent with itself."""

from collections.abc import Mapping
from dataclasses import dataclass

from scheduler.inventory import Device
from scheduler.units import CLAIMING, UnitId, UnitState


@dataclass(frozen=True)
class UnitView:
    id: UnitId
    state: UnitState
    devices: tuple[int, ...]
    in_flight: int
    booted: bool
    reason: str
    claims: Mapping[int, int]
    """Bytes the unit claims on each of its devices, or, asleep, still holds there."""
    host_bytes: int = 0
    """Host memory the ledger counts for it (measured, or reserved while it starts)."""
    level: int = 0
    """Its sleep level when asleep."""
    retry_at: float = 0.0
    """Restarting: when its backoff ends, on the scheduler's clock (the event loop's); 0 otherwise."""
    paused: int = 0
    """Requests paused in its engine until its next wake (it went to sleep for another model)."""

    @property
    def claiming(self) -> bool:
        return self.state in CLAIMING

    @property
    def rung(self) -> str:
        """awake (holds device memory), asleep (a live engine, a fast wake), stopped (its engine
        stopped, or stopping, for a budget; a request starts it cold), or none (never started,
        failed)."""
        if self.state in CLAIMING:
            return "awake"
        if self.state == UnitState.asleep:
            return "asleep"
        stopped = self.state == UnitState.stopping or (self.booted and self.state == UnitState.cold)
        return "stopped" if stopped else "none"


@dataclass(frozen=True)
class HostView:
    limit: int
    """The host memory budget, 0 when none is kept."""
    used: int
    """What the ledger counts: every engine's host memory, plus `other`."""
    other: int
    """The daemon itself and the host tier, as measured."""
    max_sleeping: int
    asleep: int


@dataclass(frozen=True)
class SchedulerSnapshot:
    devices: Mapping[int, Device]
    units: tuple[UnitView, ...]
    queued: Mapping[str, int]
    """Requests waiting for each model."""
    free: Mapping[int, int]
    claimed: Mapping[int, int]
    foreign: Mapping[int, int]
    """Memory held by processes the scheduler does not own, per device."""
    host: HostView = HostView(0, 0, 0, 0, 0)
    now: float = 0.0
    """When it was taken, on the scheduler's clock; with `wall_offset`, set by the effects loop,
    which owns the clock (the core reads none)."""
    wall_offset: float = 0.0
    """Added to a time on the scheduler's clock, the wall clock's."""

    def units_of(self, model: str) -> list[UnitView]:
        return [u for u in self.units if u.id.model == model]
