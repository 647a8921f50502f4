"""A token bucket on a clock the caller gives: a rate limit that allows bursts up to its capacity.

Pure (no clock of its own), so every limit is tested with a fake one. A bucket may be charged
into debt (a request's tokens are known only when it has finished): it then refuses until the
refill has paid the debt back.
"""

import math
from dataclasses import dataclass


@dataclass
class TokenBucket:
    per_minute: int
    """Refill rate, and the capacity: a full minute's worth may be spent at once."""
    level: float
    updated: float

    @classmethod
    def full(cls, per_minute: int, now: float) -> "TokenBucket":
        return cls(per_minute, float(per_minute), now)

    def _refill(self, now: float) -> None:
        self.level = min(float(self.per_minute), self.level + (now - self.updated) * self.per_minute / 60)
        self.updated = max(self.updated, now)

    def wait(self, amount: float, now: float) -> float:
        """Seconds until `amount` can be taken (0: now)."""
        self._refill(now)
        missing = amount - self.level
        return 0.0 if missing <= 0 else missing * 60 / self.per_minute

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount

    def used(self, now: float) -> float:
        """How much of the last minute's worth is spent (debt included)."""
        self._refill(now)
        return self.per_minute - self.level

    def resized(self, per_minute: int, now: float) -> "TokenBucket":
        """The same bucket under a new rate (an edited keys file): what was spent stays spent."""
        return TokenBucket(per_minute, per_minute - self.used(now), now)


def retry_after(seconds: float) -> int:
    """A Retry-After header's whole seconds: never 0 for a refusal."""
    return max(1, math.ceil(seconds - 1e-6))
