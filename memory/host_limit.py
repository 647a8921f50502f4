"""How much host memory this daemon may really use: the machine's RAM, or less where the memory
cgroup it runs in says so (a Kubernetes pod's limit, a systemd unit's MemoryMax=). Past the
cgroup's limit the kernel's OOM killer picks a process, so every budget is taken from here."""

import os
from pathlib import Path
from typing import Optional

UNLIMITED = 1 << 62
"""cgroup v1 reports "no limit" as a number near 2^63; anything this large is none."""


def physical_memory() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cgroup_limit(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> Optional[int]:
    """The memory limit of this process's cgroup: the smallest limit on its path, its ancestors'
    included (a parent's limit binds its children). v2 `memory.max`, v1 `memory.limit_in_bytes`;
    None when no group on the path is limited or none can be read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = root / "memory", "memory.limit_in_bytes"
        else:
            continue
        group = base / path.lstrip("/")
        while True:
            limits.append(_read_limit(group / name))
            if group == base or base not in group.parents:
                break
            group = group.parent
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def memory_limit() -> int:
    """What this process's tree may hold in all: RAM, capped by its cgroup's limit."""
    limit = cgroup_limit()
    return min(physical_memory(), limit) if limit is not None else physical_memory()


def filesystem_bytes(path: Path) -> Optional[int]:
    """The size of the filesystem `path` is on (or will be, once created), None if unknown."""
    for candidate in (path, *path.parents):
        try:
            stat = os.statvfs(candidate)
        except OSError:
            continue
        return stat.f_blocks * stat.f_frsize
    return None


def _read_limit(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max" or not text.isdigit():
        return None
    value = int(text)
    return value if value < UNLIMITED else None
