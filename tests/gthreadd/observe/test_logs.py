"""Log lines: one event per line, the model and request id on each, journald's priority prefix
under systemd."""

import logging

import pytest

from gthreadd.observe import logs


@pytest.fixture
def root_handlers():
    loggers = [logging.getLogger(name or None) for name in ("",) + logs.OWN_LOGGERS]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, (handlers, level, propagate) in zip(loggers, saved):
        logger.handlers[:], logger.propagate = handlers, propagate
        logger.setLevel(level)


def test_under_journald_lines_carry_priority_and_stay_one_line(root_handlers, capsys):
    logs.configure("info", {"JOURNAL_STREAM": "8:1234"})
    log = logging.getLogger("gthreadd.test")
    logs.MODEL.set("m")
    logs.REQUEST_ID.set("r1")
    log.warning("first\nsecond")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    log.debug("hidden at info")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "<4>gthreadd.test: first \\n second [model=m request_id=r1]"
    assert lines[1].startswith("<3>gthreadd.test: failed [model=m request_id=r1] \\n Traceback") and len(lines) == 2
    assert "ValueError: boom" in lines[1]


def test_elsewhere_lines_start_with_a_timestamp_and_omit_empty_context(root_handlers, capsys):
    logs.configure("debug", {})
    logs.MODEL.set("")
    logs.REQUEST_ID.set("")
    logging.getLogger("x").debug("hello")
    line = capsys.readouterr().err.strip()
    assert line.endswith(" DEBUG x: hello") and line[:4].isdigit()


def test_a_library_that_resets_the_root_logger_does_not_silence_the_daemon(root_handlers, capsys):
    """vLLM 0.24's API server imports model_hosting_container_standards, whose import sets the root
    logger and its handlers to ERROR: on the first GPU host every INFO line of the daemon was lost."""
    from model_hosting_container_standards.logging_config import configure_root_logger

    logs.configure("info", {})
    configure_root_logger()
    logging.getLogger("engine.vllm_engine").info("m woke: wake_up 0.100s")
    logging.getLogger("gthreadd.runtime.fleet").warning("still here")
    logging.getLogger("some.library").info("root is at ERROR now")
    err = capsys.readouterr().err
    assert "INFO engine.vllm_engine: m woke: wake_up 0.100s" in err
    assert "WARNING gthreadd.runtime.fleet: still here" in err
    assert "root is at ERROR now" not in err
