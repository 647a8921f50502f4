"""Requests meeting faults, through a daemon in this event loop with FakeEngine (the test double
for vLLM engines; it answers a cancellation as vLLM's serving classes do): a scheduler abort is a
503 naming its cause, a dead engine is seen and restarted without any request.
tests/e2e/test_faults.py does the same with real engines."""

import asyncio

import aiohttp

from gthreadd.spec.resource import ModelState
from scheduler.messages import SleepRequested
from scheduler.units import UnitId
from tests.e2e.daemon_process import metric_samples
from tests.fake_engine import FakeEngine
from tests.inprocess_daemon import post, start_daemon, until, write


async def test_a_request_aborted_at_drain_timeout_is_a_503_naming_the_cause(tmp_path):
    d = await start_daemon(tmp_path, engine_factory=_slow)
    try:
        write(d, "a.yaml", "a", "  sleep:\n    drainTimeout: 1s\n")
        d.reload()
        await until(lambda: "a" in d.fleet.models and d.fleet.models["a"].engines, "a to serve")
        request = asyncio.create_task(post(d, "/a/v1/chat/completions", {"messages": [], "slow": True}))
        await until(lambda: d.scheduling.scheduler.units[UnitId("a", 0)].in_flight == 1, "the request in flight")
        d.scheduling.submit(SleepRequested("a"))
        status, body = await asyncio.wait_for(request, 10)
        assert status == 503, body
        assert body["error"]["type"] == "ServiceUnavailableError"
        assert "model a is going to sleep and its drainTimeout (1s) ran out" in body["error"]["message"]
        metrics = metric_samples(await _get_text(d, "/metrics"))
        assert metrics[("gthread_requests_total", (("code", "503"), ("endpoint", "chat/completions"),
                                                   ("model", "a")))] == 1
    finally:
        await d.shutdown()


async def test_a_dead_engine_is_seen_within_seconds_and_restarted_unprompted(tmp_path):
    d = await start_daemon(tmp_path)
    try:
        write(d, "a.yaml", "a")
        d.reload()
        await until(lambda: "a" in d.fleet.models and d.fleet.models["a"].engines, "a to serve")
        first = d.fleet.models["a"].engines[0]
        first.die("the vLLM engine process EngineCore_DP0 (pid 7) was killed by SIGKILL")
        status, body = await post(d, "/a/v1/chat/completions", {"messages": []})  # before supervision looks
        assert status == 503 and "model a's engine died (the vLLM engine process EngineCore_DP0 (pid 7) was " \
            "killed by SIGKILL); it is being restarted" == body["error"]["message"], body
        await until(lambda: d.fleet.models["a"].engines.get(0) not in (None, first), "a new engine", timeout=5)
        await until(lambda: d.fleet.models["a"].engines[0].running, "the new engine to run", timeout=5)
        events = [e for e in d.fleet.models["a"].events.to_json() if e["reason"] == "EngineDied"]
        assert events and "killed by SIGKILL" in events[0]["message"]
        metrics = metric_samples(await _get_text(d, "/metrics"))
        assert metrics[("gthread_engine_crashes_total", (("model", "a"),))] == 1
        status, _ = await post(d, "/a/v1/chat/completions", {"messages": []})
        assert status == 200
        assert (await _get_json(d, "/a/status"))["state"] == ModelState.serving
    finally:
        await d.shutdown()


def _slow(config):
    return FakeEngine(config, reply_delay=30)


async def _get_text(d, path: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(d.base_url + path) as r:
        return await r.text()


async def _get_json(d, path: str) -> dict:
    async with aiohttp.ClientSession() as s, s.get(d.base_url + path) as r:
        return await r.json()


async def test_an_engine_that_keeps_dying_is_given_up_and_its_model_failed(tmp_path):
    d = await start_daemon(tmp_path)
    try:
        write(d, "a.yaml", "a")
        d.reload()
        for death in range(5):
            await until(lambda: "a" in d.fleet.models and 0 in d.fleet.models["a"].engines
                        and d.fleet.models["a"].engines[0].running, f"engine {death + 1}", timeout=10)
            d.fleet.models["a"].engines[0].die(f"killed by SIGKILL ({death + 1})")  # supervision restarts it
        await until(lambda: d.fleet.models["a"].ready_condition.reason == "CrashLoop", "the crash loop", timeout=15)
        model = d.fleet.models["a"]
        assert model.phase.value == "Failed"
        assert "its engine died 5 times" in model.ready_condition.message
        assert "killed by SIGKILL (5)" in model.ready_condition.message
        status, body = await post(d, "/a/v1/chat/completions", {"messages": []})
        assert status == 503 and "CrashLoop" in body["error"]["message"]
    finally:
        await d.shutdown()
