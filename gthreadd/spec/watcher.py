"""Reasons to rescan models.d: file events (watchfiles), SIGHUP, a slow timer that catches whatever
events miss (network filesystems, a directory created late), and the control socket's writes.
All of them are requests on one queue (`RescanRequests`), the only way into reconciliation."""

import asyncio
import logging
from pathlib import Path
from typing import Optional

from watchfiles import Change, awatch

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


def _manifest_event(change: Change, path: str) -> bool:
    return is_manifest(Path(path))


async def watch_files(directory: Path, requests: RescanRequests, stop: asyncio.Event) -> None:
    """File events until `stop`; if watching fails (the directory was removed, inotify limits),
    the timer still rescans, so the failure is logged, not fatal."""
    try:
        async for changes in awatch(directory, watch_filter=_manifest_event, stop_event=stop, debounce=300, step=50):
            requests.request("files changed: " + ", ".join(sorted(Path(p).name for _, p in changes)))
    except Exception:
        log.exception("watching %s failed; changes are picked up by the periodic rescan only", directory)


async def tick(interval: float, requests: RescanRequests) -> None:
    while True:
        await asyncio.sleep(interval)
        requests.request("timer")
