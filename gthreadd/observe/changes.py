"""A counter of the daemon's observable changes, and a wait for the next one.

The live views (`/ui`, `gthread get -w`, the watch stream) follow it: a client is sent a new
snapshot when something changed, not on a timer, so a hundred open dashboards cost nothing while
the daemon is quiet. Everything that changes what they show passes through the scheduler's event
loop or the reconcile loop, and those two bump it.
"""

import asyncio
from typing import Optional


class Changes:
    def __init__(self) -> None:
        self.version = 0
        self._moved: Optional[asyncio.Event] = None

    def bump(self) -> None:
        self.version += 1
        if self._moved is not None:
            self._moved.set()
            self._moved = None

    async def wait(self, seen: int, timeout: float) -> int:
        """The version once it has moved past `seen`, or after `timeout` seconds whatever it is.
        asyncio.timeout rather than wait_for: on Python 3.11, wait_for returns the result when it is
        cancelled in the same turn of the loop as the wait ends, and the cancel is lost."""
        if self.version == seen:
            if self._moved is None:
                self._moved = asyncio.Event()
            try:
                async with asyncio.timeout(timeout):
                    await self._moved.wait()
            except TimeoutError:
                pass
        return self.version
