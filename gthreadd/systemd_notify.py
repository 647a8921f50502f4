"""systemd's notify protocol (sd_notify(3)), spoken directly: one datagram per message to
$NOTIFY_SOCKET. Without that variable (not started by systemd) every call does nothing.

The protocol is a few lines of text over a unix socket, so a library would add a dependency and
no behaviour; what matters is when the daemon says what, which daemon.py decides.
"""

import os
import socket
import time


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + path[1:] if path.startswith("@") else path  # '@': the abstract namespace
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_seconds = int(usec) / 1e6 if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def reloading(self) -> None:
        """RELOADING=1 must carry the monotonic time of the request, so systemd can tell this
        reload from a later one (sd_notify(3))."""
        self._send(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self._send("STOPPING=1\nSTATUS=draining requests and stopping engines")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def _send(self, message: str) -> None:
        if not self._address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto(message.encode(), self._address)
            except OSError:
                pass  # systemd gone (shutdown) or socket misconfigured: never fatal to serving
