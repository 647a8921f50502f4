"""A real gthreadd process for end-to-end tests: its own models.d, state dir, port and log."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from gthreadd.spec.resource import model_yaml

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The repo id under which the e2e tests' offline Hugging Face cache holds the demo checkpoint."""



def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    """/metrics parsed with prometheus_client's own parser: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaemonProcess:
    def __init__(self, root: Path, checkpoint: Path, env: dict[str, str] | None = None, flags: tuple[str, ...] = (),
                 join: Callable[[], None] | None = None, key: str = ""):
        """`join`: run in the daemon's process before it starts (MemoryCgroup.join puts it in a group);
        `key`: the API key this object's own requests send (the status and metrics views need one
        when the daemon has keys)."""
        self.key = key
        self.models_dir = root / "models.d"
        self.state_dir = root / "state"
        self.log_path = root / "gthreadd.log"
        self.host_tier_dir = root / "host-tier"  # not /dev/shm: daemons under test must not share one
        self.socket = root / "ctl.sock"
        self.checkpoint = checkpoint
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.env = {**os.environ, **(env or {})}
        self.flags = flags
        self.join = join
        self.models_dir.mkdir(parents=True)

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gthreadd.main", "--models-dir", str(self.models_dir),
             "--state-dir", str(self.state_dir), "--listen", f"127.0.0.1:{self.port}", "--rescan-interval", "2s",
             "--host-tier-dir", str(self.host_tier_dir), "--control-socket", str(self.socket), *self.flags],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env, preexec_fn=self.join,
        )
        self.wait_for(lambda: self.get("/readyz")[0] == 200, 120, "the daemon to be ready")

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def write_model(self, file: str, name: str, *extra: str, model_name: str | None = None, more: str = "",
                    utilization: str = "0.20") -> None:
        """A Model on the demo checkpoint (or `model_name`) with these extraArgs and `more` spec lines."""
        spec = f'  gpuMemoryUtilization: "{utilization}"\n  extraArgs: [{", ".join(json.dumps(a) for a in extra)}]\n'
        self.write_file(file, model_yaml(name, model_name or self.checkpoint, spec + more))

    def write_file(self, file: str, text: str) -> None:
        tmp = self.models_dir / f".{file}.tmp"
        tmp.write_text(text)
        tmp.rename(self.models_dir / file)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {self.key}"} if self.key else {})
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=120) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)
        except (urllib.error.URLError, ConnectionError):
            return 0, {}

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """`gthread ARGS` against this daemon's control socket, as its operator runs it."""
        return subprocess.run([sys.executable, "-m", "gthreadd.cli.main", "--socket", str(self.socket), *args],
                              capture_output=True, text=True, timeout=timeout)

    def staged(self) -> list[Path]:
        """The host tier's segments (its lock file aside)."""
        from memory.host_segment import SEGMENT_PREFIX

        return sorted(self.host_tier_dir.glob(f"{SEGMENT_PREFIX}*"))

    def get(self, path: str) -> tuple[int, dict]:
        return self.request("GET", path)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """/metrics, parsed (metric_samples)."""
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        with urllib.request.urlopen(urllib.request.Request(f"{self.url}/metrics", headers=headers), timeout=30) as response:
            return metric_samples(response.read().decode())

    def ask(self, model: str, max_tokens: int = 32) -> str:
        """The capital of France, asked of `model` through /<model>/v1 with the openai client."""
        from openai import OpenAI

        client = OpenAI(base_url=f"{self.url}/{model}/v1", api_key="unused", timeout=600)
        question = [{"role": "user", "content": "What is the capital of France?"}]
        response = client.chat.completions.create(model=model, messages=question, max_tokens=max_tokens, temperature=0)
        return response.choices[0].message.content

    def event_messages(self, model: str, reason: str) -> list[str]:
        """The messages of the model's events with this reason (Started, Woke, Slept...), oldest first."""
        events = self.get(f"/apis/greenthread.ai/v1alpha1/models/{model}/events")[1]["items"]
        return [e["message"] for e in events if e["reason"] == reason]

    def status(self, name: str) -> dict:
        return self.get(f"/{name}/status")[1]

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"gthreadd exited ({self.proc.returncode}) waiting for {what}:\n{self.log_tail()}")
            if predicate():
                return
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{self.log_tail()}")

    def wait_state(self, name: str, state: str, timeout: float = 300) -> dict:
        self.wait_for(lambda: self.status(name).get("state") == state, timeout, f"{name} to be {state}")
        return self.status(name)

    def wait_phase(self, name: str, phase: str, timeout: float = 300) -> dict:
        self.wait_for(lambda: self.status(name).get("phase") == phase, timeout, f"{name} to be {phase}")
        return self.status(name)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
