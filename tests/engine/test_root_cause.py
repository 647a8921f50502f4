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


def test_outside_a_build_nothing_is_written(tmp_path):
    root_cause.install()
    fail(logging.getLogger("vllm.test_root_cause"), ValueError("at runtime"))
    assert root_cause.read(tmp_path / "nothing") == ""
    handlers = [h for h in logging.getLogger("vllm").handlers if type(h).__name__ == "_FirstException"]
    assert len(handlers) == 1
