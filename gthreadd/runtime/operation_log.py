"""The daemon's recent engine operations (boots, wakes, sleeps) with their durations: the
dashboard's timeline. Per-model events (model_events.py) say what happened to one model in
words; this is every model's, in order, as numbers."""

import time
from collections import deque
from dataclasses import dataclass

KEPT = 200


@dataclass(frozen=True)
class Operation:
    model: str
    replica: int
    operation: str
    """boot, wake or sleep"""
    started: float
    """Unix time"""
    seconds: float
    outcome: str
    """ok or failed"""


class OperationLog:
    def __init__(self, kept: int = KEPT):
        self._operations: deque[Operation] = deque(maxlen=kept)

    def add(self, model: str, replica: int, operation: str, started_monotonic: float, outcome: str) -> None:
        seconds = time.monotonic() - started_monotonic
        self._operations.append(Operation(model, replica, operation, time.time() - seconds, seconds, outcome))

    def to_json(self) -> list[dict]:
        return [{"model": o.model, "replica": o.replica, "operation": o.operation, "started": round(o.started, 3),
                 "seconds": round(o.seconds, 3), "outcome": o.outcome} for o in self._operations]
