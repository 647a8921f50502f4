"""A real gthread-kube process beside a DaemonProcess, as the DaemonSet's second container."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.daemon_process import DaemonProcess


class ShimProcess:
    """Acts as whoever `kubeconfig` names (KUBECONFIG, as outside a cluster)."""

    def __init__(self, node: str, daemon: DaemonProcess, kubeconfig: Path, lease_duration: float,
                 renew_interval: float):
        self.node = node
        self.daemon = daemon
        self.log_path = daemon.log_path.with_name("gthread-kube.log")
        self.env = {**daemon.env, "KUBECONFIG": str(kubeconfig)}
        self.args = [sys.executable, "-m", "gthreadd.kube.main", "--node-name", node, "--node-address", "127.0.0.1",
                     "--port", str(daemon.port), "--socket", str(daemon.socket),
                     "--namespace", "greenthread-system", "--lease-duration", str(lease_duration),
                     "--renew-interval", str(renew_interval)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=self.env)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])
