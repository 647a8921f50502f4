"""Reasons to rescan models.d: file events (inotify), SIGHUP, a slow timer that catches whatever
events miss (network filesystems, a directory created late), and the control socket's writes.
All of them are requests on one queue (`RescanRequests`), the only way into reconciliation."""

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from asyncinotify import Inotify, Mask

from gthreadd.spec.manifests import is_manifest

log = logging.getLogger(__name__)


class RescanRequests:
    """Reasons to rescan, queued; a caller that must see its change applied (the control socket's
    apply and delete, startup) waits for the rescan that takes its request."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[str, Optional[asyncio.Future]]] = asyncio.Queue()

    def request(self, reason: str) -> None:
        self._queue.put_nowait((reason, None))

    async def request_and_wait(self, reason: str) -> None:
        """Returns once a rescan that began after this call is applied; raises what it raised."""
        done = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((reason, done))
        await done

    async def take(self) -> tuple[list[str], list[asyncio.Future]]:
        """Every request queued so far (waiting for one): one rescan serves them all."""
        requests = [await self._queue.get()]
        while not self._queue.empty():
            requests.append(self._queue.get_nowait())
        return [reason for reason, _ in requests], [done for _, done in requests if done is not None]


DEBOUNCE_S = 0.3
"""Changes are gathered this long after the first, so that one rescan sees a burst of writes."""

_WATCHED = (Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.MOVED_FROM | Mask.CREATE | Mask.DELETE | Mask.ATTRIB
            | Mask.DELETE_SELF | Mask.MOVE_SELF | Mask.ONLYDIR)
_GONE = Mask.DELETE_SELF | Mask.MOVE_SELF | Mask.UNMOUNT | Mask.IGNORED


async def watch_files(directory: Path, requests: RescanRequests,
                      relevant: Callable[[Path], bool] = is_manifest) -> None:
    """Requests for the events on `relevant` files in `directory` until cancelled, read on the
    event loop as the kernel reports them: no thread polls (a polling watcher woke the daemon 20
    times a second and took its share of every streamed token's CPU). If watching fails (no such directory, inotify limits) or the directory
    goes, the timer still rescans, so that is logged, not fatal."""
    try:
        with Inotify() as inotify:
            inotify.add_watch(directory, _WATCHED)
            await _forward(inotify, directory, requests, relevant)
    except Exception:
        log.exception("watching %s failed; changes are picked up by the periodic rescan only", directory)


async def _forward(inotify: Inotify, directory: Path, requests: RescanRequests,
                   relevant: Callable[[Path], bool]) -> None:
    """Requests from the watch's events, a burst gathered for DEBOUNCE_S; returns when the
    directory goes. The next event is awaited as a task that outlives each timeout, since
    cancelling a read the kernel has answered would lose its events."""
    loop = asyncio.get_running_loop()
    next_event = loop.create_task(inotify.get())
    changed: set[str] = set()
    deadline: Optional[float] = None
    try:
        while True:
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            if not (await asyncio.wait({next_event}, timeout=timeout))[0]:
                requests.request("files changed: " + ", ".join(sorted(changed)))
                changed, deadline = set(), None
                continue
            event, next_event = next_event.result(), loop.create_task(inotify.get())
            if event.mask & _GONE:
                requests.request(f"{directory} removed")
                log.warning("%s was removed or moved; changes are picked up by the periodic rescan only", directory)
                return
            if event.mask & Mask.Q_OVERFLOW:
                requests.request("file events overflowed")
            elif event.name is not None and relevant(event.name):
                changed.add(event.name.name)
                deadline = deadline or loop.time() + DEBOUNCE_S
    finally:
        next_event.cancel()
        await asyncio.wait({next_event})


async def tick(interval: float, requests: RescanRequests) -> None:
    while True:
        await asyncio.sleep(interval)
        requests.request("timer")
