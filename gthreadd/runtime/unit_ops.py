"""What the scheduler's effects loop asks of the engines' owner (the fleet), and the one failure
that tells it not to retry."""

from typing import Optional, Protocol

from engine.interface import Engine
from scheduler.units import UnitId


class PermanentFailure(Exception):
    """An engine operation that retrying cannot fix (bad extraArgs, no checkpoint)."""


class UnitOps(Protocol):
    """The engines' registry and their operations, one replica (unit) at a time."""

    def engine(self, unit: UnitId) -> Optional[Engine]: ...

    async def boot(self, unit: UnitId, devices: tuple[int, ...], reason: str) -> None: ...

    async def wake(self, unit: UnitId, reason: str) -> None: ...

    async def sleep(self, unit: UnitId, level: int) -> tuple[tuple[int, int], ...]:
        """Put the unit's engine to sleep at `level` (deeper, when it is asleep already). Returns
        the (device, bytes) it still holds in device memory: a level-1 sleep on the CPU keeps the
        weights there; measured, since the ledger counts them."""

    async def stop(self, unit: UnitId) -> None: ...

    def died(self, unit: UnitId, cause: str) -> None:
        """Supervision found the unit's engine dead: count it and tell the model's events."""

    def give_up(self, unit: UnitId, reason: str) -> None:
        """The scheduler stopped retrying the unit (a crash loop): its model is Failed."""
