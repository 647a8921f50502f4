"""A memory cgroup made for one test or benchmark run: the daemon is started inside it, so its
limit is what a Kubernetes pod's or a systemd unit's limit would be, and the kernel's OOM killer
counts what went over. cgroup v1 (`memory.limit_in_bytes`) or v2 (`memory.max`); root only."""

import os
import signal
import time
import uuid
from pathlib import Path
from typing import Optional

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")


class MemoryCgroup:
    def __init__(self, limit: int):
        self.limit = limit
        self.path: Optional[Path] = None

    @staticmethod
    def unavailable() -> str:
        """Why no memory cgroup can be made here, or ""."""
        if os.geteuid() != 0:
            return "making a memory cgroup needs root"
        if (V1 / "memory.limit_in_bytes").exists():
            return "" if os.access(V1, os.W_OK) else f"{V1} is not writable"
        controllers = V2 / "cgroup.subtree_control"
        if controllers.exists() and "memory" in controllers.read_text().split():
            return ""
        return "no cgroup memory controller (v1 memory, or v2 with memory enabled for children)"

    def create(self) -> "MemoryCgroup":
        name = f"gthread-{uuid.uuid4().hex[:12]}"
        if (V1 / "memory.limit_in_bytes").exists():
            self.path = V1 / name
            self.path.mkdir()
            (self.path / "memory.limit_in_bytes").write_text(str(self.limit))
        else:
            self.path = V2 / name
            self.path.mkdir()
            (self.path / "memory.max").write_text(str(self.limit))
        return self

    def join(self) -> None:
        """Move the calling process into the group (a Popen preexec_fn: the daemon starts inside)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def oom_kills(self) -> int:
        """Processes the kernel's OOM killer killed in the group."""
        name = "memory.oom_control" if (self.path / "memory.oom_control").exists() else "memory.events"
        for line in (self.path / name).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        raise AssertionError(f"{self.path / name} has no oom_kill count")

    def peak(self) -> int:
        """The most memory the group held at once (v1 max_usage_in_bytes, v2 memory.peak)."""
        name = "memory.max_usage_in_bytes" if (self.path / "memory.max_usage_in_bytes").exists() else "memory.peak"
        return int((self.path / name).read_text())

    def remove(self) -> None:
        """Kill what is left in the group, then remove it."""
        if self.path is None or not self.path.exists():
            return
        for _ in range(50):
            pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        self.path.rmdir()
