"""Who a request's key belongs to, and whether that tenant may send it now: the keys in force
(the keys file's, or plain `apiKeys`, which mean full access) with each tenant's live limits.

Pure but for the digest: every decision takes `now`, so rates are tested on a fake clock. A
refusal is decided before the request is admitted to the scheduler, so a refused request never
queues and never wakes a model.
"""

import fnmatch
import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from gthreadd.tenants.keys_file import KeyEntry
from gthreadd.tenants.token_bucket import TokenBucket, retry_after

WINDOW_S = 60


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    """Why, naming the key's name and the limit (never the key)."""
    retry_after: int = 0
    kind: str = ""
    """The limit, for metrics: requests_per_minute, tokens_per_minute, max_concurrent, model."""


@dataclass
class Tenant:
    entry: KeyEntry
    requests: Optional[TokenBucket] = None
    tokens: Optional[TokenBucket] = None
    in_flight: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=WINDOW_S))
    """[second, requests, tokens] for each of the last WINDOW_S seconds with any: the key's usage
    in the last minute, limited or not (`gthread get keys`)."""

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def admin(self) -> bool:
        return self.entry.admin

    def may_use(self, names: tuple[str, ...]) -> bool:
        """Whether any of a Model's names (its name, its modelName) matches one of the key's models."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.entry.models for name in names)

    def admit(self, now: float) -> Optional[Refusal]:
        """Take one request of the rate and one concurrency slot, or say why not (nothing taken)."""
        e = self.entry
        if e.max_concurrent is not None and self.in_flight >= e.max_concurrent:
            return Refusal(429, f"key {e.name} has {self.in_flight} requests in flight (maxConcurrent "
                                f"{e.max_concurrent})", 1, "max_concurrent")
        if self.tokens is not None and (wait := self.tokens.wait(1, now)):
            return Refusal(429, f"key {e.name} has used its {e.tokens_per_minute} tokens per minute "
                                f"(tokensPerMinute)", retry_after(wait), "tokens_per_minute")
        if self.requests is not None:
            if wait := self.requests.wait(1, now):
                return Refusal(429, f"key {e.name} has sent its {e.requests_per_minute} requests per minute "
                                    f"(requestsPerMinute)", retry_after(wait), "requests_per_minute")
            self.requests.take(1, now)
        self.in_flight += 1
        self._count(now, 1, 0)
        return None

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def charge(self, tokens: int, now: float) -> None:
        """A finished request's prompt and generated tokens, as vLLM counted them."""
        if self.tokens is not None:
            self.tokens.take(tokens, now)
        self._count(now, 0, tokens)

    def _count(self, now: float, requests: int, tokens: int) -> None:
        second = int(now)
        if not self.recent or self.recent[-1][0] != second:
            self.recent.append([second, 0, 0])
        self.recent[-1][1] += requests
        self.recent[-1][2] += tokens

    def last_minute(self, now: float) -> tuple[int, int]:
        """(requests admitted, tokens charged) in the last WINDOW_S seconds."""
        since = now - WINDOW_S
        kept = [(r, t) for second, r, t in self.recent if second > since]
        return sum(r for r, _ in kept), sum(t for _, t in kept)

    def to_json(self, now: float) -> dict:
        """What `gthread get keys` shows: never the key, nor its digest."""
        e = self.entry
        requests, tokens = self.last_minute(now)
        return {"name": e.name, "models": list(e.models), "admin": e.admin, "inFlight": self.in_flight,
                "limits": {"requestsPerMinute": e.requests_per_minute, "tokensPerMinute": e.tokens_per_minute,
                           "maxConcurrent": e.max_concurrent},
                "lastMinute": {"requests": requests, "tokens": tokens}}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Keyring:
    """The tenants in force, found by their key's digest."""

    def __init__(self, tenants: list[Tenant]):
        self.tenants = tenants
        self._by_digest = {t.entry.sha256: t for t in tenants}

    @classmethod
    def from_entries(cls, entries: tuple[KeyEntry, ...], now: float, previous: Optional["Keyring"] = None) -> "Keyring":
        """The tenants of `entries`; one of the same name in `previous` keeps its usage (an edit to
        a keys file must not hand every key a fresh minute)."""
        old = {t.name: t for t in previous.tenants} if previous else {}
        tenants = []
        for entry in entries:
            tenant = Tenant(entry)
            if (was := old.get(entry.name)) is not None:
                tenant.in_flight, tenant.recent = was.in_flight, was.recent
            tenant.requests = _bucket(entry.requests_per_minute, was.requests if was else None, now)
            tenant.tokens = _bucket(entry.tokens_per_minute, was.tokens if was else None, now)
            tenants.append(tenant)
        return cls(tenants)

    @classmethod
    def full_access(cls, keys: tuple[str, ...]) -> "Keyring":
        """Plain `apiKeys`: each a tenant that may use every model and read every view."""
        return cls([Tenant(KeyEntry(name=f"apiKeys-{i}", sha256=digest(k), admin=True)) for i, k in enumerate(keys)])

    def identify(self, key: str) -> Optional[Tenant]:
        """The tenant whose key this is. Looked up by the key's digest: what a lookup's timing
        could tell about a digest says nothing usable about a key."""
        return self._by_digest.get(digest(key))

    def __bool__(self) -> bool:
        return bool(self.tenants)


def _bucket(per_minute: Optional[int], was: Optional[TokenBucket], now: float) -> Optional[TokenBucket]:
    if per_minute is None:
        return None
    return was.resized(per_minute, now) if was is not None else TokenBucket.full(per_minute, now)
