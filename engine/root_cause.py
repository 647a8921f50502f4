"""Why an engine failed to start, brought back to the daemon.

vLLM builds an engine in child processes (its EngineCore and workers). When one of them fails, the
daemon is told only "Engine core initialization failed. See root cause above", and the root cause
is a traceback somewhere in the log. This handler on vLLM's logger writes the first exception that
any process of the engine logs to the file GTHREAD_ENGINE_ROOT_CAUSE names. It is installed in
every engine process through the `vllm.general_plugins` entry point (spawned children import it
afresh) and in the daemon itself (forked children inherit it). The adapter sets the variable only
while it builds one engine, under its build lock, and reads the file if the build fails.
"""

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "GTHREAD_ENGINE_ROOT_CAUSE"


class _FirstException(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)

    def emit(self, record: logging.LogRecord) -> None:
        path = os.environ.get(ENV)
        exc = record.exc_info[1] if record.exc_info else None
        if not path or exc is None:
            return
        try:  # O_EXCL: the first failure is the deepest; the ones that follow only report it
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return
        with os.fdopen(fd, "w") as f:
            f.write(f"{type(exc).__name__}: {exc}")


def install() -> None:
    """Entry point (vllm.general_plugins), and called by the adapter: once per process."""
    logger = logging.getLogger("vllm")
    if not any(isinstance(h, _FirstException) for h in logger.handlers):
        logger.addHandler(_FirstException())


@contextmanager
def capturing() -> Iterator[Path]:
    """While building one engine: where its processes write the first exception they log."""
    directory = Path(tempfile.mkdtemp(prefix="gthread-engine-"))
    path = directory / "root-cause"
    os.environ[ENV] = str(path)
    try:
        yield path
    finally:
        del os.environ[ENV]
        path.unlink(missing_ok=True)
        directory.rmdir()


def read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
