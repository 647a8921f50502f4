"""Log lines: one event per line, the model and request id on each, journald's priority prefix
under systemd."""

import logging

import pytest

from gthreadd import logs


@pytest.fixture
def root_handlers():
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield
    root.handlers[:] = saved
    root.setLevel(level)


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
