"""The daemon's lifecycle in-process with FakeEngine, in milliseconds: models.d events and SIGHUP,
bounded shutdown, measured memory. The same paths run with real vLLM engines in tests/e2e; the
HTTP routes are tests/gthreadd/api/test_http.py."""

import asyncio
import functools
import gc
import os
from pathlib import Path

import aiohttp
import pytest

from gthreadd.daemon import Daemon
from gthreadd.runtime import heap
from gthreadd.runtime.devices import memory_held
from scheduler.inventory import Device
from tests.fake_engine import FakeEngine
from tests.inprocess_daemon import post, serving, start_daemon, until, write

async def test_file_events_add_and_remove_models(daemon):
    write(daemon, "a.yaml", "a")
    await until(lambda: "a" in daemon.fleet.models and daemon.fleet.models["a"].engines, "a to serve")
    assert await post(daemon, "/v1/chat/completions", {"model": "a", "messages": []}) == (
        200, {"object": "chat.completion", "model": "a", "choices": [{"message": {"role": "assistant", "content": "fake"}}]})
    (Path(daemon.settings.models_dir) / "a.yaml").unlink()
    await until(lambda: "a" not in daemon.fleet.models, "a to be removed")


async def test_sighup_rescans(daemon):
    """With the file watcher ended and the timer at an hour, only the reload can find the file."""
    watcher = next(t for t in daemon._tasks if t.get_name() == "watch")
    watcher.cancel()
    await until(watcher.done, "the file watcher to end")
    write(daemon, "b.yaml", "b")
    daemon.reload()
    await until(lambda: "b" in daemon.fleet.models, "b after SIGHUP")


async def test_startup_raises_the_young_generations_threshold(tmp_path):
    thresholds = gc.get_threshold()
    gc.set_threshold(700, *thresholds[1:])
    try:
        d = await start_daemon(tmp_path)
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *thresholds[1:])
        await d.shutdown()
    finally:
        gc.set_threshold(*thresholds)


def in_flight(d: Daemon, model: str) -> int:
    return sum(u.in_flight for u in d.scheduling.scheduler.units_of(model))


async def start_slow_daemon(tmp_path, reply_delay: float, grace: str) -> Daemon:
    d = await start_daemon(tmp_path, functools.partial(FakeEngine, reply_delay=reply_delay), shutdownTimeout=grace)
    write(d, "a.yaml", "a")
    await serving(d, "a")
    return d


async def test_shutdown_lets_requests_in_flight_finish_then_stops_the_engines(tmp_path):
    d = await start_slow_daemon(tmp_path, reply_delay=1.0, grace="10s")
    engine = d.fleet.models["a"].engines[0]
    slow = asyncio.create_task(post(d, "/a/v1/chat/completions", {"slow": True, "messages": []}))
    await until(lambda: in_flight(d, "a") == 1, "the request to be in flight")
    await d.shutdown()
    assert (await slow)[0] == 200, "the request in flight was answered"
    assert engine.stopped


async def test_shutdown_is_bounded_by_its_timeout(tmp_path):
    d = await start_slow_daemon(tmp_path, reply_delay=60.0, grace="0.5s")
    engine = d.fleet.models["a"].engines[0]
    stuck = asyncio.create_task(post(d, "/a/v1/chat/completions", {"slow": True, "messages": []}))
    await until(lambda: in_flight(d, "a") == 1, "the request to be in flight")
    started = asyncio.get_running_loop().time()
    await d.shutdown()
    assert asyncio.get_running_loop().time() - started < 10 and engine.stopped
    with pytest.raises(aiohttp.ClientError):
        await stuck


async def test_status_reports_the_memory_an_engine_really_holds(tmp_path):
    """FakeEngine stands in for an engine whose process is this test's own: on the CPU device its
    unique resident memory is what status reports, not the claim."""
    cpu = Device(0, "cpu-0", "cpu", 8 * 2**30, 4 * 2**30)  # a claim must fit this host's memory budget

    def engine_of_this_process(config):
        engine = FakeEngine(config)
        engine.pids = [os.getpid()]
        return engine

    d = await start_daemon(tmp_path, engine_of_this_process, devices=[cpu])
    try:
        assert 0 < memory_held([os.getpid()], [cpu])[0] < 8 * 2**30
        write(d, "a.yaml", "a")
        await serving(d, "a")
        await until(lambda: d.fleet.models["a"].measured_memory, "a measurement")
        async with aiohttp.ClientSession() as s:
            async with s.get(d.base_url + "/apis/greenthread.ai/v1alpha1/models/a") as r:
                status = (await r.json())["status"]
        assert status["servingMemoryPerGPU"] == d.fleet.models["a"].measured_memory[0] != int(0.3 * 8 * 2**30)
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
