"""The live views' feeds against an in-process daemon (FakeEngine): the watch stream, each model's
log lines, `gthread logs`, and the dashboard's files and key. tests/e2e/test_dashboard.py drives
the page in a real browser against real engines."""

import asyncio
import json
import os
import sys

import aiohttp
import pytest

from gthreadd.cli.client import ApiClient
from tests.inprocess_daemon import serving, start_daemon, until, write

API = "/apis/greenthread.ai/v1alpha1"


@pytest.fixture
async def daemon(tmp_path):
    d = await start_daemon(tmp_path)
    yield d
    await d.shutdown()


class Stream:
    """A server-sent event stream read with the CLI's own client (gthreadd/cli/client.py), whose
    blocking reads run on a thread: the daemon shares this event loop."""

    def __init__(self, d, path: str):
        self._events = ApiClient(server=d.base_url).events(path)

    async def next(self, kind: str) -> str:
        while True:
            event = await asyncio.wait_for(asyncio.to_thread(next, self._events, None), 10)
            assert event is not None, "the stream ended"
            if event[0] == kind:
                return event[1]

    async def snapshot(self) -> dict:
        return json.loads(await self.next("snapshot"))


async def test_the_watch_stream_sends_a_snapshot_at_once_and_another_when_something_changes(daemon):
    write(daemon, "a.yaml", "a")
    await serving(daemon, "a")
    await until(lambda: daemon.summary().startswith("1 model: 1 serving"), "a awake")
    async with aiohttp.ClientSession() as s:
        async with s.get(daemon.base_url + API + "/watch") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
        stream = Stream(daemon, API + "/watch")
        first = await stream.snapshot()
        assert first["states"] == {"a": "serving"} and [m["metadata"]["name"] for m in first["models"]] == ["a"]
        assert first["models"][0]["live"]["devices"] == [0]
        assert first["devices"][0]["claims"] == {"a": int(0.3 * 80 * 2**30)}
        assert [(o["model"], o["operation"], o["outcome"]) for o in first["operations"]] == [("a", "boot", "ok")]
        assert first["gpus"][0]["mode"] == "inference" and first["errors"] == []

        (daemon.settings.models_dir / "bad.yaml").write_text("kind: Model\nspec: [")
        daemon.reload()
        second = await stream.snapshot()
        assert any("bad.yaml" in e for e in second["errors"]), second["errors"]

        async with s.post(daemon.base_url + "/a/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "hi"}]}) as answer:
            assert answer.status == 200
        while (third := await stream.snapshot())["traffic"].get("a", {}).get("requests", 0) < 1:
            pass
        assert third["traffic"]["a"]["queueWaitCount"] == 1


async def test_a_models_log_lines_tail_and_follow_as_text_or_events(daemon):
    write(daemon, "a.yaml", "a")
    await serving(daemon, "a")
    logs = daemon.fleet.model_logs
    for i in range(3):
        logs.add(f"line {i} [model=a]")
    async with aiohttp.ClientSession() as s:
        async with s.get(daemon.base_url + API + "/models/a/logs?tailLines=2") as r:
            assert r.status == 200 and await r.text() == "line 1 [model=a]\nline 2 [model=a]\n"
        async with s.get(daemon.base_url + API + "/models/a/logs?tailLines=x") as r:
            assert r.status == 400 and "tailLines" in (await r.json())["error"]["message"]
        async with s.get(daemon.base_url + API + "/models/nope/logs") as r:
            assert r.status == 404 and "nope" in (await r.json())["error"]["message"]
    stream = Stream(daemon, API + "/models/a/logs?tailLines=1&follow=true")
    assert await stream.next("line") == json.dumps("line 2 [model=a]")
    await asyncio.to_thread(logs.add, "(EngineCore pid=7) from the engine")
    logs.own([7], "a")
    assert await stream.next("line") == json.dumps("(EngineCore pid=7) from the engine")


async def test_gthread_logs_prints_a_models_lines_and_follows_them(daemon):
    write(daemon, "a.yaml", "a")
    await serving(daemon, "a")
    daemon.fleet.model_logs.add("before [model=a]")
    cli = [sys.executable, "-m", "gthreadd.cli.main", "--socket", str(daemon.settings.socket_path), "logs", "a"]
    env = {**os.environ, "GTHREAD_SERVER": ""}
    proc = await asyncio.create_subprocess_exec(*cli, stdout=asyncio.subprocess.PIPE, env=env)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0 and out.decode() == "before [model=a]\n"

    proc = await asyncio.create_subprocess_exec(*cli, "-f", "--tail", "0", stdout=asyncio.subprocess.PIPE, env=env)
    try:
        await until(lambda: daemon.fleet.model_logs._followers, "the CLI to follow", 30)
        daemon.fleet.model_logs.add("after [model=a]")
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"after [model=a]\n"
    finally:
        proc.terminate()
        await proc.wait()


async def test_the_dashboard_is_served_from_the_package_and_asks_for_the_key(tmp_path):
    d = await start_daemon(tmp_path, apiKeys=["sk-ui"])
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(d.base_url + "/ui") as r:
                page = await r.text()
                assert r.status == 200 and "/ui/static/dashboard.js" in page
                assert "default-src 'self'" in r.headers["Content-Security-Policy"]
            async with s.get(d.base_url + "/ui/static/dashboard.js") as r:
                assert r.status == 200 and "EventSource" in await r.text()
            async with s.get(d.base_url + API + "/watch") as r:
                assert r.status == 401, "the data is behind the key"
            async with s.get(d.base_url + API + "/models", cookies={"gthread_api_key": "sk-ui"}) as r:
                assert r.status == 200, "the page's cookie, on a GET"
            async with s.post(d.base_url + API + "/models/x/sleep", cookies={"gthread_api_key": "sk-ui"}) as r:
                assert r.status == 401, "never for anything that acts"
    finally:
        await d.shutdown()


async def test_shutdown_ends_open_streams_instead_of_waiting_for_them(tmp_path):
    d = await start_daemon(tmp_path, shutdownTimeout="30s")
    stream = Stream(d, API + "/watch")
    await stream.snapshot()
    started = asyncio.get_running_loop().time()
    await d.shutdown()
    assert asyncio.get_running_loop().time() - started < 10, "not held for shutdownTimeout"
