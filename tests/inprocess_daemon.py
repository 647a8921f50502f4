"""A real Daemon in the test's own event loop, with FakeEngine (the test double for vLLM engines),
so the daemon's logic runs in milliseconds. tests/e2e runs the same paths with real engines."""

import asyncio
from pathlib import Path

import aiohttp

from gthreadd.api.upload import AUDIO_FILE_LIMIT
from gthreadd.daemon import Daemon
from gthreadd.observe.metrics import Metrics
from gthreadd.runtime.served_model import EngineFactory
from gthreadd.settings import DaemonSettings
from gthreadd.spec.resource import model_yaml
from scheduler.inventory import Device
from tests.e2e.daemon_process import free_port
from tests.fake_engine import FakeEngine



async def start_daemon(tmp_path: Path, engine_factory: EngineFactory = FakeEngine,
                       devices: list[Device] | None = None, metrics: Metrics | None = None,
                       max_audio_bytes: int = AUDIO_FILE_LIMIT, **settings) -> Daemon:
    """Started on a free port, with its own models.d, state, host tier and control socket under
    tmp_path, one 80 GiB test GPU unless `devices` says otherwise, and a checkpoint directory
    Models can name."""
    (tmp_path / "ckpt").mkdir(exist_ok=True)  # a restarted daemon finds it
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    values = {"listen": f"127.0.0.1:{free_port()}", "modelsDir": str(tmp_path / "models.d"),
              "stateDir": str(tmp_path / "state"), "hostTierDir": str(tmp_path / "shm"),
              "controlSocket": str(tmp_path / "ctl.sock"), "rescanInterval": "1h", **settings}
    d = Daemon(DaemonSettings.model_validate(values), engine_factory,
               devices=devices or [Device(0, "GPU-0", "NVIDIA-TEST", 80 * 2**30, 80 * 2**30)], metrics=metrics,
               max_audio_bytes=max_audio_bytes)
    await d.startup()
    return d


def manifest(d: Daemon, name: str, extra: str = "") -> str:
    return model_yaml(name, d.settings.state_dir.parent / "ckpt", '  gpuMemoryUtilization: "0.3"\n' + extra)


def write(d: Daemon, file: str, name: str, extra: str = "") -> None:
    (Path(d.settings.models_dir) / file).write_text(manifest(d, name, extra))


async def until(predicate, what: str, timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def serving(d: Daemon, name: str) -> None:
    """Rescan (the file watcher may not be watching yet, so soon after startup) and wait until the
    model's engine is up."""
    d.reload()
    await until(lambda: name in d.fleet.models and d.fleet.models[name].engines, f"{name} to serve")


async def post(d: Daemon, path: str, body) -> tuple[int, dict]:
    """POST a JSON body to the daemon's TCP port: (status, JSON reply)."""
    async with aiohttp.ClientSession() as s:
        async with s.post(d.base_url + path, json=body) as r:
            return r.status, await r.json()
