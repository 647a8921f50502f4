"""The systemd integration: the unit as `make install` renders it passes `systemd-analyze verify`,
and the daemon speaks sd_notify (READY, STATUS, WATCHDOG, RELOADING, STOPPING) to a datagram socket
standing in for systemd's NOTIFY_SOCKET."""

import asyncio
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gthreadd.settings import DaemonSettings
from gthreadd.systemd_notify import Notifier
from tests.inprocess_daemon import start_daemon

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def installed(tmp_path) -> Path:
    """`make install-files` into a DESTDIR, with the venv as PREFIX (so ExecStart exists here)."""
    prefix = Path(sys.executable).parent.parent
    subprocess.run(["make", "-s", "-C", str(ROOT), "install-files", f"DESTDIR={tmp_path}", f"PREFIX={prefix}"],
                   check=True, capture_output=True)
    return tmp_path


def test_the_installed_unit_passes_systemd_analyze_verify(installed):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is part of the test environment (ENVIRONMENT.md)"
    unit = installed / "etc/systemd/system/gthreadd.service"
    out = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def test_the_unit_keeps_gpus_usable_and_memory_pinnable(installed):
    text = (installed / "etc/systemd/system/gthreadd.service").read_text()
    assert "@PREFIX@" not in text and f"ExecStart={Path(sys.executable).parent}/gthreadd" in text
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "LimitMEMLOCK=infinity",
                 "StateDirectory=gthread", "CacheDirectory=gthread", "RuntimeDirectory=gthread",
                 "DevicePolicy=closed", "DeviceAllow=char-nvidia-frontend rw", "DeviceAllow=/dev/nvidiactl rw",
                 "DeviceAllow=/dev/nvidia-uvm rw", "WatchdogSec=60s"):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    assert not re.search(r"^PrivateDevices=", text, re.M), "it would hide /dev/nvidia*"
    assert (installed / "etc/sysusers.d/gthread.conf").read_text().count("u gthread") == 1
    assert "/etc/gthread/models.d" in (installed / "etc/tmpfiles.d/gthread.conf").read_text()
    config = installed / "etc/gthread/gthreadd.yaml"
    assert DaemonSettings.model_validate(yaml.safe_load(config.read_text())) == DaemonSettings(), \
        "the shipped config file documents the defaults"


class NotifySocket:
    """A test double for systemd's end of NOTIFY_SOCKET: a datagram socket that collects messages."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096).decode()
            except BlockingIOError:
                return self.messages
            self.messages.append(dict(line.split("=", 1) for line in data.splitlines()))

    async def wait_for(self, key: str, value: str | None = None, timeout: float = 10) -> dict[str, str]:
        for _ in range(int(timeout / 0.02)):
            for message in self.drain():
                if key in message and (value is None or message[key] == value):
                    self.messages.remove(message)
                    return message
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {key}={value} among {self.messages}")


async def test_the_daemon_speaks_sd_notify(tmp_path, monkeypatch):
    systemd = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon = await start_daemon(tmp_path)
    try:
        ready = await systemd.wait_for("READY", "1")
        assert ready["STATUS"] == "0 models; 0 queued"
        await systemd.wait_for("WATCHDOG", "1")
        pinged = time.monotonic()
        await systemd.wait_for("WATCHDOG", "1")  # again, from the loop, every half WATCHDOG_USEC
        assert time.monotonic() - pinged < 1.0, "the next ping came before systemd's watchdog would fire"

        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        daemon.reload()
        reloading = await systemd.wait_for("RELOADING", "1")
        assert int(reloading["MONOTONIC_USEC"]) >= before
        await systemd.wait_for("READY", "1")
        daemon.stop()
        await systemd.wait_for("STOPPING", "1")
    finally:
        await daemon.shutdown()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails():
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_seconds == 0
    notifier.ready("x")


def test_watchdog_is_for_this_process_only(monkeypatch):
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_seconds == 0
    assert Notifier({"NOTIFY_SOCKET": "@abstract", "WATCHDOG_USEC": "1000000"}).watchdog_seconds == 1.0
