"""What happened to a Model lately, for `gthread describe`: kubectl's Events, kept in memory.

A bounded log per Model; a repeat of the last event (a retry loop) bumps its count instead of
pushing the history out, as Kubernetes folds repeated events.
"""

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone


@dataclass
class ModelEvent:
    type: str
    """Normal or Warning."""
    reason: str
    message: str
    first: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    last: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    count: int = 1

    def to_json(self) -> dict:
        return {"type": self.type, "reason": self.reason, "message": self.message, "count": self.count,
                "firstTimestamp": self.first.isoformat(timespec="seconds"),
                "lastTimestamp": self.last.isoformat(timespec="seconds")}


class EventLog:
    def __init__(self, limit: int = 50):
        self._events: deque[ModelEvent] = deque(maxlen=limit)

    def add(self, type_: str, reason: str, message: str) -> None:
        last = self._events[-1] if self._events else None
        if last is not None and (last.type, last.reason, last.message) == (type_, reason, message):
            last.count += 1
            last.last = datetime.now(timezone.utc)
        else:
            self._events.append(ModelEvent(type_, reason, message))

    def to_json(self) -> list[dict]:
        return [e.to_json() for e in self._events]
