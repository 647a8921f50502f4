"""The keys the TCP port accepts now: plain `apiKeys` (full access), or the keys file's tenants,
read at startup and again whenever the file changes or the daemon gets SIGHUP, without dropping a
connection. A bad edit is logged with its file, line and field and the last good keys stay in
force; a bad file at startup refuses the start (no keys would mean no access control at all).

The file's directory is watched rather than the file: editors replace files, and a Kubernetes
Secret volume swaps a `..data` symlink, neither of which an inotify watch on the file survives.
"""

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from gthreadd.spec.watcher import RescanRequests, watch_files
from gthreadd.tenants.keyring import Keyring
from gthreadd.tenants.keys_file import KeyEntry, load_keys

log = logging.getLogger(__name__)


class KeysFileError(Exception):
    pass


class KeysInForce:
    def __init__(self, api_keys: tuple[str, ...] = (), keys_file: Optional[Path] = None):
        self.keys_file = keys_file
        self.keyring = Keyring.full_access(api_keys)
        self._plain = api_keys
        self._entries: Optional[tuple[KeyEntry, ...]] = None
        self._errors = ""
        self._changes = RescanRequests()

    @property
    def required(self) -> bool:
        """A key is needed: plain keys are set, or a keys file (an empty one admits nobody)."""
        return bool(self._plain) or self.keys_file is not None

    def load(self, now: float) -> None:
        """Read the keys file (if one is set); raises KeysFileError naming what is wrong."""
        if self.keys_file is not None and self._read(now) == "refused":
            raise KeysFileError(self._errors)

    def _read(self, now: float) -> str:
        """Take the file if it parses and says something new: "taken", "unchanged", or "refused"
        (the keys in force kept)."""
        parsed = load_keys(self.keys_file)
        if parsed.errors:
            self._errors = "; ".join(map(str, parsed.errors))
            return "refused"
        if parsed.entries == self._entries:
            return "unchanged"
        file_ring = Keyring.from_entries(parsed.entries, now, self.keyring)
        self.keyring = Keyring(file_ring.tenants + Keyring.full_access(self._plain).tenants)
        self._entries = parsed.entries
        return "taken"

    def reload(self, now: float) -> None:
        if self.keys_file is None:
            return
        outcome = self._read(now)
        if outcome == "taken":
            log.info("API keys from %s: %d key(s) in force", self.keys_file, len(self.keyring.tenants))
        elif outcome == "refused":
            log.error("API keys file refused, the last good keys stay in force: %s", self._errors)

    def request_reload(self) -> None:
        """SIGHUP's share: the file is read again by `watch`."""
        self._changes.request("SIGHUP")

    async def watch(self, clock: Callable[[], float]) -> None:
        """Reload on every change of the file's directory and on request, until cancelled."""
        if self.keys_file is None:
            return
        watcher = asyncio.create_task(watch_files(self.keys_file.parent, self._changes, lambda name: True))
        try:
            while True:
                await self._changes.take()
                self.reload(clock())
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
