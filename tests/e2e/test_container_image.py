"""The CPU image (deploy/image/build.py), built here offline from Debian's packages and PyPI (or
found built from the same inputs), run as a user runs it: non-root, a read-only root filesystem,
the state, cache, models.d and socket on volumes, the demo checkpoint mounted read-only."""

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gthreadd import __version__

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "image"))
import build  # noqa: E402  (deploy/image/build.py)

MODEL = """\
apiVersion: greenthread.ai/v1alpha1
kind: Model
metadata: {name: smollm2}
spec:
  modelName: /models/smollm2
  dtype: bfloat16
  gpuMemoryUtilization: "0.20"
  extraArgs: ["--max-model-len", "4096"]
"""


@pytest.fixture(scope="module")
def image() -> str:
    return build.build("cpu")


def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return build.podman(build.ensure_podman(), *args, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def container(image, checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("container")
    for name in ("models.d", "state", "cache", "run"):
        (root / name).mkdir()
    (root / "models.d" / "smollm2.yaml").write_text(MODEL)
    port = free_port()
    started = podman("run", "-d", "--init", "--read-only", "--tmpfs", "/tmp", "--shm-size", "2g",
                     "-e", "HF_HUB_OFFLINE=1", "-p", f"127.0.0.1:{port}:8000",
                     "-v", f"{root / 'models.d'}:/etc/gthread/models.d:U", "-v", f"{root / 'state'}:/var/lib/gthread:U",
                     "-v", f"{root / 'cache'}:/var/cache/gthread:U", "-v", f"{root / 'run'}:/run/gthreadd:U",
                     "-v", f"{checkpoint}:/models/smollm2:ro", image)
    assert started.returncode == 0, started.stderr
    name = started.stdout.strip()
    yield name, f"http://127.0.0.1:{port}"
    podman("rm", "-f", "-t", "5", name)


def ask(url: str) -> tuple[int, dict]:
    body = json.dumps({"model": "smollm2", "max_tokens": 32, "temperature": 0,
                       "messages": [{"role": "user", "content": "What is the capital of France?"}]}).encode()
    request = urllib.request.Request(f"{url}/v1/chat/completions", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)
    except OSError as exc:
        return 0, {"error": str(exc)}


def test_the_demo_model_answers_from_inside_the_container(container):
    name, url = container
    deadline = time.monotonic() + 600
    status, reply = ask(url)
    while status != 200 and time.monotonic() < deadline:
        assert podman("container", "exists", name).returncode == 0, podman("logs", name).stderr[-3000:]
        time.sleep(2)
        status, reply = ask(url)
    logs = podman("logs", "--tail", "30", name)
    assert status == 200, f"{reply}\n{logs.stdout}{logs.stderr}"
    assert "Paris" in reply["choices"][0]["message"]["content"]

    table = podman("exec", name, "gthread", "get", "models")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[:3] == ["NAMESPACE", "NAME", "PHASE"], table.stdout
    assert row.split()[:3] == ["default", "smollm2", "Ready"], table.stdout


def test_the_image_runs_the_shim_and_says_what_it_is(image):
    shim = podman("run", "--rm", "--read-only", image, "gthread-kube", "--help")
    assert shim.returncode == 0 and "--node-name" in shim.stdout, shim.stderr
    assert podman("run", "--rm", image, "gthreadd", "--version").stdout.strip() == f"gthreadd {__version__}"
    (inspected,) = json.loads(podman("image", "inspect", image).stdout)
    labels = inspected["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.title"] == "gthreadd"
    assert inspected["Config"]["User"] == "10001:10001"


def test_the_containerfile_is_hadolint_clean():
    linted = build.lint()
    assert linted.returncode == 0, linted.stdout + linted.stderr
