"""`gthreadd` refusing to start, as an operator meets it: one line saying why, as the last thing
printed, and a status. The real command, vLLM (and Triton, a nanobind module) imported."""

import fcntl
import os
import socket
import subprocess
import sys

from memory.host_tier import LOCK_FILE


def gthreadd(tmp_path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gthreadd.main", "--models-dir", str(tmp_path / "models.d"),
         "--state-dir", str(tmp_path / "state"), "--control-socket", str(tmp_path / "ctl.sock"), *flags],
        capture_output=True, text=True, timeout=300)


def assert_refused_with(result: subprocess.CompletedProcess, line: str) -> None:
    printed = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 1, printed[-20:]
    assert printed[-1] == line, printed[-20:]
    assert "Traceback" not in result.stderr and "nanobind" not in result.stderr, printed[-20:]


def test_a_taken_port_is_refused_in_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = gthreadd(tmp_path, "--listen", f"127.0.0.1:{port}", "--host-tier-dir", str(tmp_path / "tier"))
    assert_refused_with(result, f"gthreadd: cannot listen on 127.0.0.1:{port}: Address already in use")


def test_a_host_tier_another_daemon_holds_is_refused_in_one_line(tmp_path):
    tier = tmp_path / "tier"
    tier.mkdir()
    fd = os.open(tier / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running gthreadd holds it
        result = gthreadd(tmp_path, "--listen", "127.0.0.1:0", "--host-tier-dir", str(tier))
    finally:
        os.close(fd)
    assert_refused_with(result, f"gthreadd: hostTierDir {tier} is in use by another gthreadd; give each daemon a "
                                "directory of its own")
