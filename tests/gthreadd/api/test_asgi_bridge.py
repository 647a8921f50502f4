"""The aiohttp -> ASGI bridge with small ASGI apps standing in for vLLM's (test doubles, named so
here): answers, streams, a client that leaves, a refused answer, an app that fails. The real app
(vLLM's, built per engine) is exercised through it in tests/e2e."""

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from gthreadd.api.asgi_bridge import AsgiCall


async def json_app(scope, receive, send):
    """Echoes what it was given."""
    body = (await receive())["body"]
    echo = json.dumps({"path": scope["path"], "query": scope["query_string"].decode(), "method": scope["method"],
                       "body": body.decode(), "headers": {k.decode(): v.decode() for k, v in scope["headers"]}})
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(echo)).encode()),
                            (b"x-vllm", b"1")]})
    await send({"type": "http.response.body", "body": echo.encode()})


class StreamingApp:
    """Streams a chunk at a time until told the client left, as vLLM's generators do."""

    def __init__(self):
        self.disconnected = asyncio.Event()
        self.chunks = 0

    async def __call__(self, scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})

        async def listen():
            while (await receive())["type"] != "http.disconnect":
                pass
            self.disconnected.set()

        listener = asyncio.create_task(listen())
        while not self.disconnected.is_set() and self.chunks < 1000:
            self.chunks += 1
            await send({"type": "http.response.body", "body": f"data: {self.chunks}\n\n".encode(), "more_body": True})
            await asyncio.sleep(0.01)
        listener.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@pytest.fixture
async def serve(unused_tcp_port_factory):
    runners = []

    async def start(handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        port = unused_tcp_port_factory()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def bridge(app, **hooks):
    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = [(b"content-type", b"application/json"), (b"x-request-id", b"r-1")]
        response = await AsgiCall(app, request, "/inner" + request.path, body, headers, **hooks).run()
        return response if response is not None else web.json_response({"refused": True}, status=503)
    return handler


async def test_an_answer_comes_back_with_its_status_headers_and_body(serve):
    url = await serve(bridge(json_app))
    async with aiohttp.ClientSession() as s, s.post(url + "/v1/x?a=1", data=b'{"q": 1}') as r:
        echo = await r.json()
        assert r.status == 201 and r.headers["x-vllm"] == "1" and r.headers["Content-Length"] == str(len(await r.read()))
    assert echo == {"path": "/inner/v1/x", "query": "a=1", "method": "POST", "body": '{"q": 1}',
                    "headers": {"content-type": "application/json", "x-request-id": "r-1"}}


async def test_a_stream_arrives_chunk_by_chunk_and_a_client_that_leaves_is_heard_by_the_app(serve):
    app = StreamingApp()
    url = await serve(bridge(app))
    async with aiohttp.ClientSession() as s, s.get(url + "/stream") as r:
        first = await r.content.readuntil(b"\n\n")
        assert first == b"data: 1\n\n", "the first chunk arrives before the stream ends"
    await asyncio.wait_for(app.disconnected.wait(), 5)
    assert app.chunks < 1000, "the app stopped when its client left"


async def test_a_refused_answer_is_not_sent_and_the_daemon_answers_instead(serve):
    statuses = []
    url = await serve(bridge(json_app, accept=lambda status: statuses.append(status) or False))
    async with aiohttp.ClientSession() as s, s.post(url + "/x", data=b"{}") as r:
        assert r.status == 503 and await r.json() == {"refused": True} and statuses == [201]


async def test_an_app_that_fails_before_answering_raises_and_after_answering_is_only_logged(serve, caplog):
    async def fails_first(scope, receive, send):
        raise RuntimeError("boom")

    async def fails_after(scope, receive, send):
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"internal"})
        raise RuntimeError("re-raised by the error middleware")

    async def handler(request):
        try:
            return await bridge(fails_first)(request)
        except RuntimeError as exc:
            return web.Response(text=f"daemon: {exc}", status=502)

    url, after = await serve(handler), await serve(bridge(fails_after))
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/x") as r:
            assert r.status == 502 and await r.text() == "daemon: boom"
        async with s.get(after + "/x") as r:
            assert r.status == 500 and await r.text() == "internal"
    assert "raised after answering" in caplog.text


class LastEventApp:
    """Sends a stream's last event, then ends its body only when told: the client closes in between,
    as openai's client does once it has read `data: [DONE]`."""

    def __init__(self):
        self.end = asyncio.Event()

    async def __call__(self, scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
        await self.end.wait()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def recorded(app, outcomes: list, calls: list):
    """The bridge's handler, recording each call and how the handler ended: a status, or cancelled."""
    async def handler(request: web.Request) -> web.StreamResponse:
        call = AsgiCall(app, request, request.path, await request.read(), [])
        calls.append(call)
        try:
            response = await call.run()
        except asyncio.CancelledError:
            outcomes.append("cancelled")
            raise
        outcomes.append(response.status)
        return response
    return handler


async def wait_for(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_client_that_closes_after_the_last_event_had_the_whole_answer(serve):
    app, outcomes, calls = LastEventApp(), [], []
    url = await serve(recorded(app, outcomes, calls))
    async with aiohttp.ClientSession() as s, s.get(url + "/stream") as r:
        assert await r.content.readuntil(b"\n\n") == b"data: [DONE]\n\n"
    await wait_for(lambda: calls and calls[0]._last_word is not None)  # the handler heard the client go
    app.end.set()
    await wait_for(lambda: outcomes)
    assert outcomes == [200], "a complete answer is not counted as one the client abandoned"


async def test_a_client_that_leaves_mid_stream_is_one_that_left(serve):
    app, outcomes, calls = StreamingApp(), [], []
    url = await serve(recorded(app, outcomes, calls))
    async with aiohttp.ClientSession() as s, s.get(url + "/stream") as r:
        await r.content.readuntil(b"\n\n")
    await wait_for(lambda: outcomes)
    assert outcomes == ["cancelled"] and app.disconnected.is_set()
