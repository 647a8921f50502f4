"""What the scheduler's effects loop asks of the engines' owner (the fleet), and the one failure
that tells it not to retry."""

from dataclasses import dataclass
from typing import Optional, Protocol

from engine.interface import Engine
from scheduler.units import UnitId


class PermanentFailure(Exception):
    """An engine operation that retrying cannot fix (bad extraArgs, no checkpoint)."""


@dataclass(frozen=True)
class Footprint:
    """What a unit's engine holds, measured after an operation: the scheduler's ledgers count it."""

    host: int = 0
    """Host memory (its processes' private memory, RssAnon), 0 when not measured."""
    peak: int = 0
    """After a boot: the most host memory its processes held while coming up (their peak RSS)."""
    held: tuple[tuple[int, int], ...] = ()
    """After a sleep: (device, bytes) it still holds there."""


class UnitOps(Protocol):
    """The engines' registry and their operations, one replica (unit) at a time."""

    def engine(self, unit: UnitId) -> Optional[Engine]: ...

    async def boot(self, unit: UnitId, devices: tuple[int, ...], reason: str) -> Optional[Footprint]: ...

    async def wake(self, unit: UnitId, reason: str) -> Optional[Footprint]: ...

    async def sleep(self, unit: UnitId, level: int, keep: bool = False) -> Optional[Footprint]:
        """Put the unit's engine to sleep at `level` (deeper, when it is asleep already); `keep`:
        pause what still runs, to resume at its next wake. Returns what it still holds, measured,
        since the ledgers count it: a CUDA context and allocator pools on its GPU, on the CPU its
        whole process (the weights too, at level 1)."""

    async def stop(self, unit: UnitId, reason: str = "") -> None:
        """Stop the unit's engine; `reason` when a budget stops it (its model stays)."""

    def died(self, unit: UnitId, cause: str) -> None:
        """Supervision found the unit's engine dead: count it and tell the model's events."""

    def give_up(self, unit: UnitId, reason: str) -> None:
        """The scheduler stopped retrying the unit (a crash loop): its model is Failed."""
