"""The daemon in-process with FakeEngine: models.d handling and HTTP routing in milliseconds.
The same paths run with real vLLM engines in tests/e2e."""

import asyncio
import functools
import logging
import os
from pathlib import Path

import aiohttp
import pytest

from gthreadd.daemon import Daemon
from gthreadd.runtime.devices import memory_held
from scheduler.inventory import Device
from tests.fake_engine import FakeEngine
from tests.inprocess_daemon import serving, start_daemon, until, write

@pytest.fixture
async def daemon(tmp_path):
    d = await start_daemon(tmp_path)
    yield d
    await d.shutdown()


async def post(d: Daemon, path: str, body) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.post(d.base_url + path, json=body) as r:
            return r.status, await r.json()


async def test_file_events_add_and_remove_models(daemon):
    write(daemon, "a.yaml", "a")
    await until(lambda: "a" in daemon.fleet.models and daemon.fleet.models["a"].engines, "a to serve")
    assert await post(daemon, "/v1/chat/completions", {"model": "a", "messages": []}) == (
        200, {"object": "chat.completion", "model": "a", "choices": [{"message": {"role": "assistant", "content": "fake"}}]})
    (Path(daemon.settings.models_dir) / "a.yaml").unlink()
    await until(lambda: "a" not in daemon.fleet.models, "a to be removed")


async def test_sighup_rescans(daemon):
    """With the file watcher ended (stop() ends it first), only the reload can find the file."""
    daemon.stop()
    await asyncio.sleep(0.5)
    write(daemon, "b.yaml", "b")
    await asyncio.sleep(0.5)
    assert "b" not in daemon.fleet.models
    daemon.reload()
    await until(lambda: "b" in daemon.fleet.models, "b after SIGHUP")


async def test_disabled_endpoint_is_refused_by_name(daemon):
    write(daemon, "c.yaml", "c", "  endpoints: [completions]\n")
    await until(lambda: "c" in daemon.fleet.models and daemon.fleet.models["c"].engines, "c to serve")
    status, body = await post(daemon, "/c/v1/chat/completions", {"messages": []})
    assert status == 404 and "chat_completions is not enabled for model c (spec.endpoints: completions)" == \
        body["error"]["message"]
    assert (await post(daemon, "/c/v1/completions", {"prompt": "x"}))[0] == 200


async def test_request_ids_are_echoed_or_given(daemon):
    async with aiohttp.ClientSession() as s:
        async with s.get(daemon.base_url + "/healthz", headers={"X-Request-Id": "abc"}) as r:
            assert r.headers["X-Request-Id"] == "abc"
        async with s.get(daemon.base_url + "/healthz") as r:
            assert len(r.headers["X-Request-Id"]) == 32


async def test_body_must_be_a_json_object(daemon):
    status, body = await post(daemon, "/v1/chat/completions", ["not", "an", "object"])
    assert status == 400 and body["error"]["message"] == "the request body must be a JSON object"


async def start_slow_daemon(tmp_path, reply_delay: float, grace: str) -> Daemon:
    d = await start_daemon(tmp_path, functools.partial(FakeEngine, reply_delay=reply_delay), shutdownTimeout=grace)
    write(d, "a.yaml", "a")
    await serving(d, "a")
    return d


async def test_shutdown_lets_requests_in_flight_finish_then_stops_the_engines(tmp_path):
    d = await start_slow_daemon(tmp_path, reply_delay=1.0, grace="10s")
    engine = d.fleet.models["a"].engines[0]
    slow = asyncio.create_task(post(d, "/a/v1/chat/completions", {"slow": True, "messages": []}))
    await asyncio.sleep(0.3)
    await d.shutdown()
    assert (await slow)[0] == 200, "the request in flight was answered"
    assert engine.stopped


async def test_shutdown_is_bounded_by_its_timeout(tmp_path):
    d = await start_slow_daemon(tmp_path, reply_delay=60.0, grace="0.5s")
    engine = d.fleet.models["a"].engines[0]
    stuck = asyncio.create_task(post(d, "/a/v1/chat/completions", {"slow": True, "messages": []}))
    await asyncio.sleep(0.3)
    started = asyncio.get_running_loop().time()
    await d.shutdown()
    assert asyncio.get_running_loop().time() - started < 10 and engine.stopped
    with pytest.raises(aiohttp.ClientError):
        await stuck


async def test_a_requests_log_line_names_its_model_and_request_id(daemon, capsys):
    from gthreadd import logs

    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    logs.configure("info", {})
    try:
        write(daemon, "a.yaml", "a")
        await until(lambda: "a" in daemon.fleet.models and daemon.fleet.models["a"].engines, "a to serve")
        async with aiohttp.ClientSession() as s:
            async with s.post(daemon.base_url + "/a/v1/chat/completions", json={"messages": []},
                              headers={"X-Request-Id": "req-42"}) as r:
                assert r.status == 200
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
    lines = [line for line in capsys.readouterr().err.splitlines() if "POST /a/v1/chat/completions -> 200" in line]
    assert len(lines) == 1 and lines[0].endswith("[model=a request_id=req-42]"), lines


async def test_status_reports_the_memory_an_engine_really_holds(tmp_path):
    """FakeEngine stands in for an engine whose process is this test's own: on the CPU device its
    unique resident memory is what status reports, not the claim."""
    cpu = Device(0, "cpu-0", "cpu", 2**40, 2**39)

    def engine_of_this_process(config):
        engine = FakeEngine(config)
        engine.pids = [os.getpid()]
        return engine

    d = await start_daemon(tmp_path, engine_of_this_process, devices=[cpu])
    try:
        assert 0 < memory_held([os.getpid()], [cpu])[0] < 2**40
        write(d, "a.yaml", "a")
        await serving(d, "a")
        await until(lambda: d.fleet.models["a"].measured_memory, "a measurement")
        async with aiohttp.ClientSession() as s:
            async with s.get(d.base_url + "/apis/greenthread.ai/v1alpha1/models/a") as r:
                status = (await r.json())["status"]
        assert status["servingMemoryPerGPU"] == d.fleet.models["a"].measured_memory[0] != int(0.3 * 2**40)
    finally:
        await d.shutdown()


async def test_shutdown_during_a_boot_that_never_ends_is_bounded_by_shutdown_timeout(tmp_path):
    """scheduling.settle() once waited for boots and conversions with no limit, so systemd's stop
    timeout ended the daemon with SIGKILL."""
    gate = asyncio.Event()  # never opened: the boot would last forever
    d = await start_daemon(tmp_path, lambda config: FakeEngine(config, start_gate=gate), shutdownTimeout="1s")
    write(d, "m.yaml", "m")
    d.reload()
    await until(lambda: "m" in d.fleet.models and d.fleet.models["m"].ready_condition.reason == "EngineStarting",
                "the boot to begin")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(d.shutdown(), timeout=10)
    assert loop.time() - started < 3, "shutdownTimeout (1 s) plus the time to stop nothing"
    assert not d.fleet.models


async def test_a_cancelled_conversion_stops_its_thread_and_leaves_no_partial_copy(tmp_path, monkeypatch):
    """Converting runs in a worker thread, which cancelling the boot cannot interrupt: the
    conversion stops at its next progress report instead (a thread left running would also hold
    the interpreter's exit)."""
    import threading

    from gthreadd.runtime import served_model
    from gthreadd.runtime.served_model import ServedModel
    from tests.gthreadd.runtime.test_served_model import desired

    reporting, stopped = threading.Event(), threading.Event()

    def endless_convert(checkpoint, store, key, source, dtype, progress):
        """A test double for converter.convert: reports progress until told to stop."""
        try:
            while True:
                progress(0.5)
                reporting.set()
                threading.Event().wait(0.01)
        finally:
            stopped.set()

    monkeypatch.setattr(served_model, "convert", endless_convert)
    model = ServedModel(desired(tmp_path, loadFormat="gthread"), FakeEngine, store=tmp_path / "store")
    boot = asyncio.create_task(model.boot(0, ()))
    await asyncio.to_thread(reporting.wait, 10)
    boot.cancel()
    with pytest.raises(asyncio.CancelledError):
        await boot
    assert await asyncio.to_thread(stopped.wait, 10), "the conversion thread ended"
