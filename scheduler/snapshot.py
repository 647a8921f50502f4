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
    """Bytes the unit claims on each of its devices (empty when its state claims nothing)."""

    @property
    def claiming(self) -> bool:
        return self.state in CLAIMING


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

    def units_of(self, model: str) -> list[UnitView]:
        return [u for u in self.units if u.id.model == model]
