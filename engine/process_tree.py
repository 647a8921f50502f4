"""What an engine started, and what it leaves behind: vLLM's EngineCore and its workers are a tree
of processes, and they share memory through files in /dev/shm that only their own clean exit
unlinks. An engine that is killed (and vLLM kills an EngineCore that is slow to exit) would leave
those files behind, each one charged to the daemon's memory cgroup for what was written to it."""

import contextlib
import functools
import os
import threading
from collections.abc import Iterable
from pathlib import Path

import psutil

SHARED_MEMORY = Path("/dev/shm")
SHARED_MEMORY_PREFIX = "psm_"
"""Python's multiprocessing.shared_memory names its segments so; vLLM's message queues between an
EngineCore and its workers are such segments. The host tier's segments are named otherwise."""


def kill_tree(pid: int) -> list[psutil.Process]:
    """SIGKILL the process and everything it started; returns those it found (for a caller that
    reaps them). A process already gone is skipped."""
    tree = process_tree(pid)
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    return tree


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants, descendants first; empty if it is gone (a descendant
    gone meanwhile is left out)."""
    tree = []
    for member in (*descendants(pid), pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            tree.append(psutil.Process(member))
    return tree if tree and tree[-1].pid == pid else []


def descendants(pid: int) -> list[int]:
    """The pids of everything the process started, from the kernel's lists of each thread's
    children: the cost is the tree's size, where psutil reads every process on the host to find
    them (milliseconds on a busy host, every memory poll). Empty if it is gone."""
    if not _kernel_lists_children():
        with contextlib.suppress(psutil.NoSuchProcess):
            return [child.pid for child in psutil.Process(pid).children(recursive=True)]
        return []
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{parent}/task"):
                with contextlib.suppress(OSError), open(f"{task.path}/children") as listed:
                    children = [int(child) for child in listed.read().split()]
                    found += children
                    pending += children
    return found


@functools.cache
def _kernel_lists_children() -> bool:
    """Kernels built without CONFIG_PROC_CHILDREN have no /proc/PID/task/TID/children."""
    return Path(f"/proc/self/task/{threading.get_native_id()}/children").exists()


def shared_memory_of(pids: Iterable[int]) -> set[Path]:
    """The multiprocessing shared-memory segments these processes map and this process does not:
    theirs alone, to unlink once they are gone."""
    theirs: set[Path] = set()
    for pid in pids:
        theirs |= _mapped_segments(pid)
    return theirs - _mapped_segments(os.getpid())


def unlink_shared_memory(segments: Iterable[Path]) -> None:
    for segment in segments:
        segment.unlink(missing_ok=True)


def _mapped_segments(pid: int) -> set[Path]:
    """/proc/PID/maps lines end in the mapped file's path (six fields); a deleted one says so."""
    prefix = f"{SHARED_MEMORY}/{SHARED_MEMORY_PREFIX}"
    try:
        with open(f"/proc/{pid}/maps") as maps:
            fields = [line.split(maxsplit=5) for line in maps]
    except OSError:
        return set()
    return {Path(f[5].rstrip("\n")) for f in fields
            if len(f) == 6 and f[5].startswith(prefix) and not f[5].rstrip().endswith("(deleted)")}
