"""Stopping a real gthreadd while a real vLLM engine is still starting."""

import signal
import time

import psutil
import pytest

from tests.e2e.daemon_process import DaemonProcess

SHUTDOWN_TIMEOUT_S = 2
ENGINE_STOP_MARGIN_S = 30  # gthreadd/daemon.py


@pytest.fixture
def booting(tmp_path, checkpoint):
    """A daemon whose one engine has been spawned and is still starting; with its engine processes."""
    daemon = DaemonProcess(tmp_path, checkpoint, flags=("--shutdown-timeout", f"{SHUTDOWN_TIMEOUT_S}s"))
    daemon.write_model("smollm2.yaml", "smollm2")
    daemon.start()
    daemon.wait_for(lambda: daemon.status("smollm2").get("state") == "starting"
                    and psutil.Process(daemon.proc.pid).children(recursive=True), 120,
                    "the engine's process to be spawned")
    yield daemon, psutil.Process(daemon.proc.pid).children(recursive=True)
    daemon.kill()


def test_sigterm_during_an_engine_boot_exits_within_the_bound_and_leaves_no_engine(booting):
    daemon, engines = booting
    started = time.monotonic()
    assert daemon.stop(timeout=SHUTDOWN_TIMEOUT_S + ENGINE_STOP_MARGIN_S + 30) == 0
    assert time.monotonic() - started < SHUTDOWN_TIMEOUT_S + ENGINE_STOP_MARGIN_S, daemon.log_tail()
    _, alive = psutil.wait_procs(engines, timeout=5)
    assert not alive, [p.cmdline() for p in alive]
    assert "engine boots or conversions were still under way at shutdownTimeout: cancelled" in \
        daemon.log_path.read_text()


def test_a_second_signal_exits_at_once_and_leaves_no_engine(booting):
    daemon, engines = booting
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.wait_for(lambda: "stopping" in daemon.log_path.read_text(), 10, "the first signal to be taken")
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.proc.wait(10) == 1
    assert time.monotonic() - started < SHUTDOWN_TIMEOUT_S, "it did not wait out shutdownTimeout"
    _, alive = psutil.wait_procs(engines, timeout=5)
    assert not alive, [p.cmdline() for p in alive]
    assert "second stop signal: exiting at once" in daemon.log_path.read_text()
