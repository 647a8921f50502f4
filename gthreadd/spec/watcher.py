"""Reasons to rescan models.d: file events (watchfiles), SIGHUP, and a slow timer that catches
whatever events miss (network filesystems, a directory created late)."""

import asyncio
import logging
from pathlib import Path

from watchfiles import Change, awatch

from gthreadd.spec.manifests import is_manifest

log = logging.getLogger(__name__)


def _manifest_event(change: Change, path: str) -> bool:
    return is_manifest(Path(path))


async def watch_files(directory: Path, triggers: asyncio.Queue, stop: asyncio.Event) -> None:
    """File events until `stop`; if watching fails (the directory was removed, inotify limits),
    the timer still rescans, so the failure is logged, not fatal."""
    try:
        async for changes in awatch(directory, watch_filter=_manifest_event, stop_event=stop, debounce=300, step=50):
            await triggers.put("files changed: " + ", ".join(sorted(Path(p).name for _, p in changes)))
    except Exception:
        log.exception("watching %s failed; changes are picked up by the periodic rescan only", directory)


async def tick(interval: float, triggers: asyncio.Queue) -> None:
    while True:
        await asyncio.sleep(interval)
        await triggers.put("timer")
