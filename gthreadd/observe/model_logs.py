"""Each model's recent log lines, for `gthread logs NAME` and the dashboard.

Lines come from the log tap (observe/log_tap.py: every line the daemon and its engine processes
write) and are told apart by what they carry: the daemon's own lines end in `[model=NAME ...]`
(observe/logs.py), and vLLM's processes begin theirs with `(EngineCore pid=N)` (or another
process name), a pid whose owner is learnt from the engine's own first line (vLLM's "Initializing a
V1 LLM engine ... served_model_name=NAME", so a boot that fails still has its lines) or named by the
fleet once the engine is up (its workers). Lines of a pid nobody owns yet wait, and move over when
it is known.
"""

import asyncio
import os
import re
import threading
from collections import deque
from collections.abc import Iterable

LINES_PER_MODEL = 1000
UNCLAIMED_LINES = 2000
"""Lines of processes no model owns yet, all together (the oldest are dropped)."""
FOLLOWER_BACKLOG = 10000
"""Lines a follower may fall behind by before lines are dropped for it."""

_TAGGED = re.compile(r"\[model=([^\s\]]+)")
_PROCESS = re.compile(r"^(?:\x1b\[[0-9;]*m)*\([\w:.-]+ pid=(\d+)\)")
_SERVED = re.compile(r"served_model_name=([^,\s]+)")


class ModelLogs:
    """Thread-safe: lines arrive on the tap's thread, readers are on the event loop."""

    def __init__(self, limit: int = LINES_PER_MODEL):
        self._limit = limit
        self._lines: dict[str, deque[str]] = {}
        self._owners: dict[int, str] = {}
        self._served: dict[str, set[str]] = {}
        """A served model name (what vLLM's config line prints) -> the Models serving under it."""
        self._unclaimed: deque[tuple[int, str]] = deque(maxlen=UNCLAIMED_LINES)
        self._followers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]]] = {}
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        with self._lock:
            if (tagged := _TAGGED.search(line)) is not None:
                self._append(tagged.group(1), [line])
            elif (process := _PROCESS.match(line)) is not None:
                pid = int(process.group(1))
                owner = self._owners.get(pid)
                if owner is None and pid != os.getpid() and (served := _SERVED.search(line)) is not None:
                    if len(models := self._served.get(served.group(1), ())) == 1:
                        (owner,) = models
                        self._claim({pid}, owner)
                if owner is not None:
                    self._append(owner, [line])
                else:
                    self._unclaimed.append((pid, line))

    def serves(self, model: str, served_name: str) -> None:
        """`model`'s engines are started under `served_name` (the first of its served names). A
        name two Models share tells nothing, and is not used."""
        with self._lock:
            for models in self._served.values():
                models.discard(model)
            self._served.setdefault(served_name, set()).add(model)

    def own(self, pids: Iterable[int], model: str) -> None:
        """These processes are `model`'s engine: their lines, earlier ones included, are its."""
        with self._lock:
            self._claim(set(pids), model)

    def forget(self, model: str) -> None:
        """The Model is gone: its lines and its processes' names go with it."""
        with self._lock:
            self._lines.pop(model, None)
            self._owners = {pid: owner for pid, owner in self._owners.items() if owner != model}
            for models in self._served.values():
                models.discard(model)

    def _claim(self, pids: set[int], model: str) -> None:
        self._owners.update(dict.fromkeys(pids, model))
        moved = [line for pid, line in self._unclaimed if pid in pids]
        if moved:
            kept = [(pid, line) for pid, line in self._unclaimed if pid not in pids]
            self._unclaimed.clear()
            self._unclaimed.extend(kept)
            self._append(model, moved)

    def tail(self, model: str, lines: int) -> list[str]:
        with self._lock:
            ring = self._lines.get(model, ())
            return list(ring)[-lines:] if lines > 0 else []

    def follow(self, model: str) -> asyncio.Queue:
        """A queue that gets the model's lines from now on, on the calling event loop; `unfollow` it."""
        queue: asyncio.Queue = asyncio.Queue(FOLLOWER_BACKLOG)
        with self._lock:
            self._followers.setdefault(model, set()).add((asyncio.get_running_loop(), queue))
        return queue

    def unfollow(self, model: str, queue: asyncio.Queue) -> None:
        with self._lock:
            followers = self._followers.get(model, set())
            followers -= {f for f in followers if f[1] is queue}
            if not followers:
                self._followers.pop(model, None)

    def _append(self, model: str, lines: list[str]) -> None:
        self._lines.setdefault(model, deque(maxlen=self._limit)).extend(lines)
        for loop, queue in self._followers.get(model, ()):
            loop.call_soon_threadsafe(_offer, queue, lines)


def _offer(queue: asyncio.Queue, lines: list[str]) -> None:
    for line in lines:
        try:
            queue.put_nowait(line)
        except asyncio.QueueFull:
            return  # a follower that stopped reading loses lines, not the daemon its memory
