"""Operating a daemon: every `gthread` verb against a running gthreadd (in-process, FakeEngine, so
each runs in a second), the control socket's permissions, API keys on the TCP port, and /metrics
parsed with prometheus_client's own parser. tests/e2e runs the verbs against real vLLM engines."""

import asyncio
import os
import stat
import sys

import aiohttp
import pytest

from gthreadd.daemon import Daemon
from tests.e2e.daemon_process import metric_samples
from tests.fake_engine import FakeEngine
from tests.inprocess_daemon import manifest, serving, start_daemon, until, write

@pytest.fixture
async def daemon(tmp_path):
    d = await start_daemon(tmp_path, apiKeys=["sk-test-1", "sk-test-2"])
    yield d
    await d.shutdown()


async def gthread(d: Daemon, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """The real CLI in a subprocess (the daemon shares this event loop, so it must not block)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gthreadd.cli.main", "--socket", str(d.settings.socket_path), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "GTHREAD_SERVER": ""})
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


async def test_apply_creates_configures_and_reports_unchanged(daemon, tmp_path):
    file = tmp_path / "a.yaml"
    file.write_text(manifest(daemon, "a"))
    assert await gthread(daemon, "apply", "-f", str(file)) == (0, "model.greenthread.ai/a created\n", "")
    assert (daemon.settings.models_dir / "a.yaml").read_text() == file.read_text()
    assert "a" in daemon.fleet.models, "apply returns once the daemon serves the change"
    assert (await gthread(daemon, "apply", "-f", str(file)))[1] == "model.greenthread.ai/a unchanged\n"
    file.write_text(manifest(daemon, "a", "  sleep: {idleTimeout: 1m}\n"))
    assert (await gthread(daemon, "apply", "-f", str(file)))[1] == "model.greenthread.ai/a configured\n"
    assert daemon.fleet.models["a"].resource.spec.sleep.idle_timeout.total_seconds() == 60
    assert not [p for p in daemon.settings.models_dir.iterdir() if p.name.startswith(".")], "no temporary left"


async def test_apply_refuses_bad_files_and_names_another_file_owns(daemon, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(manifest(daemon, "b", "  dtype: int3\n"))
    code, out, err = await gthread(daemon, "apply", "-f", str(bad))
    assert code == 1 and f"{bad}:8 (document 0): spec.dtype:" in err and not out
    assert not (daemon.settings.models_dir / "bad.yaml").exists()

    (daemon.settings.models_dir / "owner.yaml").write_text(manifest(daemon, "c"))
    daemon.reload()
    await until(lambda: "c" in daemon.fleet.models, "c")
    thief = tmp_path / "thief.yaml"
    thief.write_text(manifest(daemon, "c"))
    code, out, err = await gthread(daemon, "apply", "-f", str(thief))
    assert code == 1 and "422: Model 'c' is defined in" in err and "owner.yaml" in err


async def test_a_dry_run_writes_nothing_and_says_what_cannot_be_placed(daemon, tmp_path):
    fits, elsewhere = tmp_path / "fits.yaml", tmp_path / "elsewhere.yaml"
    fits.write_text(manifest(daemon, "fits"))
    elsewhere.write_text(manifest(daemon, "elsewhere", "  product: NVIDIA-A40\n"))
    assert await gthread(daemon, "apply", "--dry-run", "-f", str(fits)) == \
        (0, "model.greenthread.ai/fits created (dry run)\n", "")
    code, out, err = await gthread(daemon, "apply", "--dry-run", "-f", str(elsewhere))
    assert code == 0 and out == "model.greenthread.ai/elsewhere created (dry run)\n"
    assert "Model elsewhere cannot run on this host: product NVIDIA-A40 is not on this host" in err
    assert not list(daemon.settings.models_dir.glob("*.yaml")) and not daemon.fleet.models


async def test_get_and_describe_over_the_socket(daemon, tmp_path):
    write(daemon, "d.yaml", "d")
    await serving(daemon, "d")
    code, out, _ = await gthread(daemon, "get", "models")
    assert code == 0 and out.splitlines()[1].split()[:3] == ["default", "d", "Ready"]
    code, out, _ = await gthread(daemon, "describe", "model", "d")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["Name:", "d"] and "Spec:" in lines and "Conditions:" in lines
    assert any(line.split()[:2] == ["Normal", "Started"] for line in lines), out
    assert any(line.split()[:3] == ["Ready", "True", "Ready"] for line in lines), out
    code, _, err = await gthread(daemon, "describe", "model", "nope")
    assert code == 1 and err.startswith("error: 404")


async def test_a_kv_cache_is_granted_from_the_host_memory_ledger_and_described(daemon):
    """The test daemon's devices are GPUs (a fake NVML): the engine's KV offload buffer is
    reserved in the host tier's budget while it runs, and given back when the Model goes."""
    write(daemon, "k.yaml", "k", "  kvCache: {enabled: true, maxSize: 1Gi}\n")
    await serving(daemon, "k")
    assert daemon.fleet.models["k"].engines[0].config.kv_offload_bytes == 2**30
    assert daemon.host_tier.usage().reserved == 2**30
    code, out, _ = await gthread(daemon, "describe", "model", "k")
    assert code == 0 and "  KV Cache:     1.0 GiB of host memory for offloaded KV blocks" in out.splitlines(), out
    assert (await gthread(daemon, "delete", "model", "k"))[0] == 0
    await until(lambda: daemon.host_tier.usage().reserved == 0, "the reservation given back")


async def test_sleep_wake_and_delete(daemon):
    write(daemon, "e.yaml", "e")
    await serving(daemon, "e")
    await until(lambda: daemon.summary().startswith("1 model: 1 serving"), "e awake")
    assert await gthread(daemon, "sleep", "e") == (0, "model.greenthread.ai/e sleeping\n", "")
    assert daemon.fleet.models["e"].engines[0].asleep
    assert await gthread(daemon, "wake", "e") == (0, "model.greenthread.ai/e serving\n", "")
    assert not daemon.fleet.models["e"].engines[0].asleep
    assert (await gthread(daemon, "sleep", "nope"))[0] == 1
    assert await gthread(daemon, "delete", "model", "e") == (0, 'model.greenthread.ai "e" deleted\n', "")
    assert not (daemon.settings.models_dir / "e.yaml").exists() and "e" not in daemon.fleet.models
    code, _, err = await gthread(daemon, "delete", "model", "e")
    assert code == 1 and '404: models.greenthread.ai "e" not found' in err


async def test_a_popular_model_is_not_slept(daemon):
    write(daemon, "p.yaml", "p", "  fairness: {popular: true}\n")
    await serving(daemon, "p")
    code, _, err = await gthread(daemon, "sleep", "p")
    assert code == 1 and "409: model p is popular" in err


async def watching(d: Daemon, kind: str) -> asyncio.subprocess.Process:
    """`gthread get KIND -w` running, its output to read line by line."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gthreadd.cli.main", "--socket", str(d.settings.socket_path), "get", kind, "-w",
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "GTHREAD_SERVER": ""})


async def test_watch_prints_rows_as_they_change(daemon):
    write(daemon, "w.yaml", "w")
    await serving(daemon, "w")
    await until(lambda: daemon.summary().startswith("1 model: 1 serving"), "w awake")
    proc = await watching(daemon, "models")
    try:
        header = await asyncio.wait_for(proc.stdout.readline(), 30)
        first = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert header.split()[:2] == [b"NAMESPACE", b"NAME"] and first.split()[4:6] == [b"1", b"0"]
        assert (await gthread(daemon, "sleep", "w"))[0] == 0
        changed = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert changed.split()[1] == b"w" and changed.split()[4:6] == [b"0", b"1"], changed
    finally:
        proc.terminate()
        await proc.wait()


async def test_gpus_watch_prints_a_device_when_a_model_takes_it(daemon):
    proc = await watching(daemon, "gpus")
    try:
        header = await asyncio.wait_for(proc.stdout.readline(), 30)
        first = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert header.split()[4] == b"MODE" and first.split()[4] == b"idle"
        write(daemon, "g.yaml", "g")
        await serving(daemon, "g")
        changed = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert changed.split()[4] == b"inference", changed
    finally:
        proc.terminate()
        await proc.wait()


async def test_the_control_socket_is_for_its_owner_and_group(daemon):
    mode = stat.S_IMODE(os.stat(daemon.settings.socket_path).st_mode)
    assert mode == 0o660


async def test_api_keys_guard_the_tcp_port_but_not_the_probes(daemon, caplog):
    async with aiohttp.ClientSession() as s:
        async with s.get(daemon.base_url + "/v1/models") as r:
            body = await r.json()
            assert r.status == 401 and body["error"]["type"] == "AuthenticationError"
            assert r.headers["WWW-Authenticate"] == "Bearer"
        async with s.get(daemon.base_url + "/v1/models", headers={"Authorization": "Bearer sk-wrong"}) as r:
            assert r.status == 401
        async with s.get(daemon.base_url + "/v1/models", headers={"Authorization": "Bearer sk-test-2"}) as r:
            assert r.status == 200
        async with s.get(daemon.base_url + "/healthz") as r:
            assert r.status == 200
    code, out, err = await gthread(daemon, "--server", daemon.base_url, "get", "models")
    assert code == 1 and "401" in err
    assert "sk-test" not in repr(daemon.settings) and "sk-test" not in caplog.text, "keys are never shown"


async def test_metrics_parse_and_count_what_happened(daemon):
    write(daemon, "m.yaml", "m")
    await serving(daemon, "m")
    auth = {"Authorization": "Bearer sk-test-1"}
    async with aiohttp.ClientSession(headers=auth) as s:
        async with s.post(daemon.base_url + "/m/v1/chat/completions", json={"messages": []}) as r:
            assert r.status == 200
        async with s.post(daemon.base_url + "/m/v1/embeddings", json={"input": "x"}) as r:
            assert r.status == 404
        async with s.get(daemon.base_url + "/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    samples = metric_samples(text)
    assert samples[("gthread_model_state", (("model", "m"), ("state", "serving")))] == 1
    assert samples[("gthread_model_state", (("model", "m"), ("state", "sleeping")))] == 0
    assert samples[("gthread_engine_operations_total", (("model", "m"), ("operation", "boot"), ("outcome", "ok")))] == 1
    assert samples[("gthread_requests_total", (("code", "200"), ("endpoint", "chat/completions"), ("model", "m")))] == 1
    assert samples[("gthread_queue_wait_seconds_count", (("model", "m"),))] == 1
    assert samples[("gthread_device_memory_bytes", (("device", "gpu0"), ("kind", "total")))] == 80 * 2**30
    assert samples[("gthread_host_tier_bytes", (("kind", "budget"),))] == daemon.settings.host_tier_bytes
    assert samples[("gthread_queue_depth", (("model", "m"),))] == 0


async def test_a_booting_model_exports_starting(tmp_path):
    """metrics.py once had its own list of states, without "starting": a booting model exported 0
    on every gthread_model_state series."""
    gate = asyncio.Event()
    d = await start_daemon(tmp_path, lambda config: FakeEngine(config, start_gate=gate))
    try:
        write(d, "m.yaml", "m")
        d.reload()
        await until(lambda: "m" in d.fleet.models and d.fleet.models["m"].ready_condition.reason == "EngineStarting",
                    "the boot to begin")
        async with aiohttp.ClientSession() as s:
            async with s.get(d.base_url + "/metrics") as r:
                samples = metric_samples(await r.text())
        states = {labels[1][1]: v for (name, labels), v in samples.items()
                  if name == "gthread_model_state" and labels[0] == ("model", "m")}
        assert states == {"pending": 0, "starting": 1, "serving": 0, "waking": 0, "draining": 0, "sleeping": 0,
                          "restarting": 0, "failed": 0}
    finally:
        gate.set()
        await d.shutdown()


async def test_apply_rejects_a_malformed_request_with_400(daemon):
    connector = aiohttp.UnixConnector(path=str(daemon.settings.socket_path))
    async with aiohttp.ClientSession(connector=connector) as s:
        for body in (b"not json", b"[1, 2]", b'{"file": "../x.yaml", "text": ""}'):
            async with s.post("http://localhost/apis/greenthread.ai/v1alpha1/apply", data=body) as r:
                assert r.status == 400, body
                assert "apply needs" in (await r.json())["error"]["message"]
