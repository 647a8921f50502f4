"""The host tier: converted models' weights held in shared memory that engine processes map.

The daemon owns the segments, so they outlive any engine: a wake, a restart or a second replica
reads RAM instead of the disk. A segment is a file in a tmpfs directory (/dev/shm by default),
filled from the disk tier (checksums verified on the way in) and renamed into place when complete,
so an engine that finds a segment finds all of it. Its pages are mlock'ed where the limit allows;
the engine process that copies from it registers its own mapping with `cudaHostRegister`
(memory/host_segment.py), since a registration belongs to the process that makes it.

Space is a byte budget. Making room evicts least recently used segments first, never one that a
Model pins (`staging.pinned: true`) nor one an engine is loading from (a lease). When even that
cannot make room, `stage` says so and the engine reads the disk tier instead.

The budget is the daemon's ledger of pinned host memory, so it also counts what engines pin for
themselves: a reservation (an engine's KV offload buffer, spec.kvCache.maxSize) is taken before
the engine starts, may evict segments like a stage, and is given back when the engine stops.
"""

import ctypes
import fcntl
import logging
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from memory.store_format import ALIGN, Manifest
from memory.disk_tier import read_into
from memory.host_segment import SEGMENT_PREFIX, address_of, segment_path

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Segment:
    key: str
    size: int
    owners: dict[str, bool] = field(default_factory=dict)
    """Model name -> its staging.pinned."""
    leases: int = 0
    last_used: float = 0.0
    buffer: Optional[mmap.mmap] = None
    filled: threading.Event = field(default_factory=threading.Event)

    @property
    def pinned(self) -> bool:
        return any(self.owners.values())


def choose_victims(segments: Iterable[Segment], used: int, need: int, budget: int) -> Optional[list[Segment]]:
    """The segments to evict so that `need` more bytes fit: least recently used first, never a
    pinned or leased one. None when no choice makes room."""
    free = budget - used
    victims: list[Segment] = []
    for segment in sorted((s for s in segments if not s.pinned and not s.leases), key=lambda s: s.last_used):
        if free >= need:
            break
        victims.append(segment)
        free += segment.size
    return victims if free >= need else None


@dataclass(frozen=True)
class TierUsage:
    """The host tier's ledger at one moment, in bytes."""
    weights: int
    """Staged weights (segments)."""
    reserved: int
    """Held for engines' own host buffers (KV offloading)."""
    budget: int
    from_disk: int
    """Read from the disk tier into segments, in all."""
    to_engines: int
    """Handed to engines from resident segments (one segment's size per load), in all."""


LOCK_FILE = ".gthread-host-tier.lock"


class HostTierBusy(RuntimeError):
    """Another live gthreadd holds the directory."""


class HostTier:
    """Thread-safe: `stage` blocks on I/O and runs in worker threads. `start` takes the directory,
    `close` frees every segment and gives it back."""

    def __init__(self, directory: Path, budget: int, clock: Callable[[], float] = time.monotonic):
        self.directory = directory
        self.budget = budget
        self._clock = clock
        self._segments: dict[str, Segment] = {}
        self._reserved: dict[str, int] = {}
        self._lock = threading.Lock()
        self._warned_mlock = False
        self.bytes_from_disk = 0
        """Read from the disk tier into segments, in all."""
        self.bytes_to_engines = 0
        """Handed to engines from resident segments (one segment's size per load), in all."""
        self._lock_fd: Optional[int] = None

    def start(self) -> None:
        """Take the directory: an exclusive lock, so a second daemon on it stops with a clear error
        instead of wiping the first one's segments; then remove what a dead daemon of ours left
        (only our names: the directory may be /dev/shm itself, shared with other programs)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HostTierBusy(f"hostTierDir {self.directory} is in use by another gthreadd; give each daemon "
                               f"a directory of its own") from None
        self._lock_fd = fd
        for stale in [*self.directory.glob(f"{SEGMENT_PREFIX}*"), *self.directory.glob(f".{SEGMENT_PREFIX}*.fill")]:
            stale.unlink(missing_ok=True)

    @property
    def used(self) -> int:
        """Bytes counted against the budget: segments and reservations."""
        return sum(s.size for s in self._segments.values()) + sum(self._reserved.values())

    def usage(self) -> TierUsage:
        with self._lock:
            reserved = sum(self._reserved.values())
            return TierUsage(self.used - reserved, reserved, self.budget, self.bytes_from_disk, self.bytes_to_engines)

    def reserve(self, holder: str, size: int) -> bool:
        """Count `size` bytes an engine pins for itself against the budget, evicting segments as a
        stage would; False when no choice makes room. A holder has one reservation: reserving
        again replaces it."""
        with self._lock:
            self._reserved.pop(holder, None)
            victims = choose_victims(self._segments.values(), self.used, size, self.budget)
            if victims is None:
                log.warning("host tier: no room to reserve %.2f GiB for %s (budget %.2f GiB, %.2f GiB pinned, "
                            "leased or reserved)", size / 2**30, holder, self.budget / 2**30, self.used / 2**30)
                return False
            for victim in victims:
                self._evict(victim)
            self._reserved[holder] = size
            return True

    def unreserve(self, holder: str) -> None:
        with self._lock:
            self._reserved.pop(holder, None)

    def path(self, key: str) -> Path:
        return segment_path(self.directory, key)

    def stage(self, owner: str, model_dir: Path, pinned: bool) -> Optional[Path]:
        """Make the converted model in `model_dir` resident and lease it until `release`. Returns
        the segment's path, or None when the budget has no room (the engine reads the disk); only
        a path is leased. Raises ChecksumError when the disk copy is corrupt."""
        key = model_dir.name
        with self._lock:
            for other in self._segments.values():  # a Model's earlier weights (before an edit) may go
                if other.key != key:
                    other.owners.pop(owner, None)
            segment = self._segments.get(key)
            fill = segment is None
            if fill:
                manifest = Manifest.read(model_dir)
                size = max(manifest.total_bytes, ALIGN)
                victims = choose_victims(self._segments.values(), self.used, size, self.budget)
                if victims is None:
                    log.warning("host tier: no room for %s (%.2f GiB; budget %.2f GiB, %.2f GiB pinned or in "
                                "use); it loads from disk", key, size / 2**30, self.budget / 2**30,
                                self.used / 2**30)
                    return None
                for victim in victims:
                    self._evict(victim)
                segment = self._segments[key] = Segment(key, size)
            segment.owners[owner] = pinned
            segment.leases += 1
            segment.last_used = self._clock()
        if fill:
            try:
                segment.buffer = self._fill(segment, model_dir, manifest)
            finally:
                if segment.buffer is None:
                    with self._lock:
                        del self._segments[key]
                segment.filled.set()
        else:
            segment.filled.wait()
        if segment.buffer is None:  # the fill another thread ran failed
            return None
        with self._lock:
            self.bytes_from_disk += segment.size if fill else 0
            self.bytes_to_engines += segment.size
        return self.path(key)

    def release(self, model_dir: Path) -> None:
        """An engine finished loading from the segment."""
        with self._lock:
            segment = self._segments.get(model_dir.name)
            if segment is not None and segment.leases:
                segment.leases -= 1
                segment.last_used = self._clock()

    def set_pinned(self, owner: str, pinned: bool) -> None:
        """A live edit of staging.pinned."""
        with self._lock:
            for segment in self._segments.values():
                if owner in segment.owners:
                    segment.owners[owner] = pinned

    def forget(self, owner: str) -> None:
        """The Model is gone: segments no other Model wants are freed now."""
        with self._lock:
            for segment in list(self._segments.values()):
                segment.owners.pop(owner, None)
                if not segment.owners and not segment.leases and segment.filled.is_set():
                    self._evict(segment)

    def tier(self, owner: str) -> str:
        """Where the Model's weights wait for an engine: system (RAM) or disk."""
        with self._lock:
            resident = any(owner in s.owners and s.buffer is not None for s in self._segments.values())
        return "system" if resident else "disk"

    def close(self) -> None:
        with self._lock:
            for segment in list(self._segments.values()):
                if segment.filled.is_set():
                    self._evict(segment)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def _evict(self, segment: Segment) -> None:
        log.info("host tier: evicting %s (%.2f GiB)", segment.key, segment.size / 2**30)
        del self._segments[segment.key]
        if segment.buffer is not None:
            segment.buffer.close()
        self.path(segment.key).unlink(missing_ok=True)

    def _fill(self, segment: Segment, model_dir: Path, manifest: Manifest) -> Optional[mmap.mmap]:
        started = time.perf_counter()
        filling = self.path(segment.key).with_name(f".{self.path(segment.key).name}.fill")
        fd = os.open(filling, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, segment.size)  # tmpfs full: an error now, not SIGBUS mid-copy
            except OSError as exc:
                log.warning("host tier: cannot hold %s in %s (%s); it loads from disk", segment.key,
                            self.directory, exc)
                filling.unlink(missing_ok=True)
                return None
            buffer = mmap.mmap(fd, segment.size)
        finally:
            os.close(fd)
        try:
            read_into(model_dir, manifest, buffer)
        except BaseException:
            buffer.close()
            filling.unlink(missing_ok=True)
            raise
        self._lock_pages(buffer)
        os.rename(filling, self.path(segment.key))
        elapsed = time.perf_counter() - started
        log.info("host tier: staged %s (%.2f GiB) in %.2f s", segment.key, segment.size / 2**30, elapsed)
        return buffer

    def _lock_pages(self, buffer: mmap.mmap) -> None:
        """Keep the segment out of swap. Needs RLIMIT_MEMLOCK (the systemd unit raises it);
        without it the segment still works, it is merely swappable."""
        address = address_of(buffer)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mlock(ctypes.c_void_p(address), ctypes.c_size_t(len(buffer))) != 0 and not self._warned_mlock:
            self._warned_mlock = True
            log.warning("host tier: mlock failed (%s); raise LimitMEMLOCK to keep staged weights out of swap",
                        os.strerror(ctypes.get_errno()))
