"""The daemon's stdout and stderr through pipes that a thread reads: each chunk goes on unchanged
to where the stream went before (the terminal, the journal, a file), and each line to a consumer.

At the level of file descriptors, so it sees what the engine processes write too: vLLM starts them
from inside the daemon and they inherit descriptors 1 and 2. Python's logging would see only the
daemon's own lines.
"""

import os
import selectors
import sys
import threading
from collections.abc import Callable

LONGEST_LINE = 65536
"""A line longer than this is delivered in pieces."""


class LogTap:
    def __init__(self, consume: Callable[[str], None], fds: tuple[int, ...] = (1, 2)):
        self._consume = consume
        self._fds = fds
        self._originals: dict[int, int] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pipes: dict[int, int] = {}
        for fd in self._fds:
            read_end, write_end = os.pipe()
            self._originals[fd] = os.dup(fd)
            os.dup2(write_end, fd)
            os.close(write_end)
            pipes[read_end] = self._originals[fd]
        self._thread = threading.Thread(target=self._pump, args=(pipes,), name="log-tap", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Put the descriptors back, and wait up to `timeout` seconds for what is still in the pipes
        to go on. The reader ends when every process that inherited them has closed them: at
        once, when the engines have been stopped."""
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, original in self._originals.items():
            os.dup2(original, fd)
        self._originals = {}
        if self._thread is not None:
            self._thread.join(timeout)

    def _pump(self, pipes: dict[int, int]) -> None:
        selector = selectors.DefaultSelector()
        partial: dict[int, bytes] = {}
        for read_end in pipes:
            selector.register(read_end, selectors.EVENT_READ)
            partial[read_end] = b""
        while selector.get_map():
            for key, _ in selector.select():
                read_end = key.fd
                data = os.read(read_end, 65536)
                if not data:
                    selector.unregister(read_end)
                    os.close(read_end)
                    if partial[read_end]:
                        self._deliver(partial[read_end])
                    continue
                _write_all(pipes[read_end], data)
                *lines, partial[read_end] = (partial[read_end] + data).split(b"\n")
                for line in lines:
                    self._deliver(line)
                if len(partial[read_end]) > LONGEST_LINE:
                    self._deliver(partial[read_end])
                    partial[read_end] = b""

    def _deliver(self, line: bytes) -> None:
        try:
            self._consume(line.decode(errors="replace").rstrip("\r"))
        except Exception:  # the consumer's bug must not stop the daemon's output
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except OSError:
            return  # where the output went is gone (a closed terminal): the tap keeps reading
