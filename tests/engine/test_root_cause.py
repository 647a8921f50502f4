"""The root cause of an engine's failed start: the first exception its processes log reaches the
daemon. The real path (a vLLM worker's error in a spawned process) runs in tests/e2e."""

import logging
import os

from engine import root_cause


def fail(logger: logging.Logger, exc: Exception) -> None:
    try:
        raise exc
    except type(exc):
        logger.exception("failed")


def test_the_first_exception_logged_while_building_is_kept():
    root_cause.install()
    root_cause.install()  # once per process, however often it is called
    logger = logging.getLogger("vllm.test_root_cause")
    with root_cause.capturing() as path:
        logger.error("no exception attached: not a root cause")
        assert root_cause.read(path) == ""
        fail(logger, ValueError("Available memory on node 0 is less than requested"))
        fail(logger, RuntimeError("Worker failed with error 'Available memory...'"))
        assert root_cause.read(path) == "ValueError: Available memory on node 0 is less than requested"
    assert root_cause.ENV not in os.environ and not path.exists() and not path.parent.exists()


def test_an_engine_that_fails_after_its_build_writes_nothing(monkeypatch):
    """Engine processes keep the variable they were spawned with. Once the build is over its file's
    directory is gone, so a failure at runtime is vLLM's to log, never taken for a root cause."""
    root_cause.install()
    with root_cause.capturing() as path:
        pass
    monkeypatch.setenv(root_cause.ENV, str(path))  # what the engine's processes still have
    fail(logging.getLogger("vllm.test_root_cause"), ValueError("at runtime"))
    assert not path.exists() and not path.parent.exists()
    handlers = [h for h in logging.getLogger("vllm").handlers if type(h).__name__ == "_FirstException"]
    assert len(handlers) == 1, "installed once however often it is called"
