"""Who holds a replica's Lease, judged as client-go's leader election judges it.

A Lease is held while its record keeps changing: a holder renews it (a new resourceVersion) every
renew interval, and the Lease expires when this observer has seen no change for
leaseDurationSeconds on its own monotonic clock. Nodes' wall clocks need not agree, and a node
that starts sees every Lease as fresh for one duration before it may take one over. So does a node
that could not look for longer than a duration (an API server outage): it could not have seen the
renewals it missed, and the holder was as cut off as it was.
"""

from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class LeaseTiming:
    duration_s: float = 15.0
    renew_s: float = 5.0


class LeaseObserver:
    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, float]] = {}
        self._free: dict[str, float] = {}
        self._looked: float | None = None

    def looked(self, now: float, blind_after_s: float) -> None:
        """The Leases were read at `now`. After a gap longer than `blind_after_s` since the last
        read, everything observed is forgotten: each Lease counts from now, as at start."""
        if self._looked is not None and now - self._looked > blind_after_s:
            self._seen.clear()
            self._free.clear()
        self._looked = now

    def holder(self, name: str, lease: dict | None, now: float) -> str:
        """The identity holding Lease `name` now, or "" when it is missing, free or expired."""
        holder = ""
        if lease is not None:
            spec = lease.get("spec") or {}
            version = lease["metadata"].get("resourceVersion", "")
            seen = self._seen.get(name)
            if seen is None or seen[0] != version:
                seen = self._seen[name] = (version, now)
            if now - seen[1] <= (spec.get("leaseDurationSeconds") or 0):
                holder = spec.get("holderIdentity") or ""
        if holder:
            self._free.pop(name, None)
        else:
            self._free.setdefault(name, now)
        return holder

    def free_for(self, name: str, now: float) -> float:
        """How long this observer has seen Lease `name` free (0 while it is held)."""
        return now - self._free.get(name, now)

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)
        self._free.pop(name, None)


def micro_time(when: datetime | None = None) -> str:
    """Kubernetes' MicroTime."""
    return (when or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_spec(holder: str, timing: LeaseTiming, previous: dict | None) -> dict:
    """The spec of a Lease taken or renewed by `holder`; a change of holder counts a transition."""
    spec = dict((previous or {}).get("spec") or {})
    now = micro_time()
    if spec.get("holderIdentity") != holder:
        spec["acquireTime"] = now
        spec["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + (1 if previous else 0)
    spec.update(holderIdentity=holder, leaseDurationSeconds=max(1, round(timing.duration_s)), renewTime=now)
    return spec
