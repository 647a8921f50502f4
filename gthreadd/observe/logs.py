"""The daemon's log lines: one event per line, with the model and request they concern.

Under systemd (JOURNAL_STREAM set: stderr goes to the journal) lines carry sd-daemon(3)'s `<N>`
priority prefix instead of a timestamp, which the journal adds itself, and a multi-line message
(a traceback) stays one journal entry. Elsewhere lines start with a timestamp.
"""

import logging
import os
import sys
from contextvars import ContextVar

MODEL: ContextVar[str] = ContextVar("model", default="")
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
KEY: ContextVar[str] = ContextVar("key", default="")
"""The name of the request's API key (from the keys file), never the key."""

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        parts = ([f"model={m}" for m in [MODEL.get()] if m] + [f"key={k}" for k in [KEY.get()] if k]
                 + [f"request_id={r}" for r in [REQUEST_ID.get()] if r])
        record.context = " [" + " ".join(parts) + "]" if parts else ""
        record.priority = _PRIORITY.get(record.levelno, 6)
        return True


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", " \\n ")


OWN_LOGGERS = ("gthreadd", "engine", "memory", "scheduler", "conversion")
"""The daemon's own loggers get their level and handler here and do not propagate: libraries that
the engines import may reset the root logger (vLLM 0.24's API server imports
model_hosting_container_standards, which sets root and its handlers to ERROR at import), and that
silenced every INFO and WARNING line of the daemon on CUDA hosts."""


def configure(level: str, environ: dict[str, str] | None = None) -> None:
    env = os.environ if environ is None else environ
    for name in ("",) + OWN_LOGGERS:  # root (other libraries' lines) and ours: one handler each
        logger = logging.getLogger(name or None)
        logger.handlers[:] = [_handler(env)]
        logger.setLevel(level.upper())
        logger.propagate = not name


def _handler(env) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context())
    if env.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("<%(priority)d>%(name)s: %(message)s%(context)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"))
    return handler
