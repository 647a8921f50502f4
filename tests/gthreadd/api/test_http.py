"""The HTTP listener with the in-process daemon and FakeEngine: routing by path and body, the
answers for Models it does not have, request ids, OpenAI-shaped errors for bad bodies, and the log
line of a request. tests/e2e runs the same routes with real vLLM engines."""

import logging

import aiohttp
import pytest

from gthreadd.daemon import Daemon
from tests.inprocess_daemon import post, start_daemon, until, write


async def get(d: Daemon, path: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.get(d.base_url + path) as r:
            return r.status, await r.json()


@pytest.mark.parametrize("method, path", [
    ("GET", "/nope/status"), ("GET", "/nope/v1/models"), ("POST", "/nope/v1/chat/completions"),
    ("GET", "/apis/greenthread.ai/v1alpha1/models/nope"), ("GET", "/apis/greenthread.ai/v1alpha1/models/nope/events"),
])
async def test_every_route_answers_a_model_this_host_lacks_with_the_same_404(daemon, method, path):
    status, body = await (get(daemon, path) if method == "GET" else post(daemon, path, {"messages": []}))
    assert status == 404 and body["error"] == {"message": "no Model named 'nope' on this host",
                                               "type": "NotFoundError", "param": None, "code": 404}


async def test_a_v1_body_must_name_its_model(daemon):
    status, body = await post(daemon, "/v1/chat/completions", {"messages": []})
    assert status == 400 and body["error"]["param"] == "model" and "needs a 'model'" in body["error"]["message"]
    status, body = await post(daemon, "/v1/chat/completions", {"model": "nope", "messages": []})
    assert status == 404 and body["error"]["message"] == "The model `nope` does not exist."


async def test_malformed_json_is_a_400_that_says_so(daemon):
    async with aiohttp.ClientSession() as s:
        async with s.post(daemon.base_url + "/v1/chat/completions", data=b"{not json") as r:
            body = await r.json()
    assert r.status == 400 and body["error"]["message"].startswith("malformed JSON in the request body")


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


async def test_a_requests_log_line_names_its_model_and_request_id(daemon, capsys):
    from gthreadd.observe import logs

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


async def test_unknown_routes_wrong_methods_and_big_bodies_get_openai_errors(tmp_path):
    d = await start_daemon(tmp_path, maxRequestBytes="1Ki")
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(d.base_url + "/v2/nothing") as r:
                body = await r.json()
            assert r.status == 404 and body["error"]["message"] == "no such route: GET /v2/nothing"
            async with s.get(d.base_url + "/v1/chat/completions") as r:
                body = await r.json()
            assert r.status == 405 and r.headers["Allow"] == "POST"
            assert body["error"]["message"] == "GET is not allowed on /v1/chat/completions (allowed: POST)"
            async with s.post(d.base_url + "/v1/chat/completions", json={"model": "x", "pad": "x" * 2048}) as r:
                body = await r.json()
            assert r.status == 413 and body["error"] == {
                "message": "the request body is over 1024 bytes (maxRequestBytes)", "type": "BadRequestError",
                "param": None, "code": 413}
    finally:
        await d.shutdown()


@pytest.mark.parametrize("method, path, vllm_path", [
    ("POST", "/v1/score", "/score"), ("POST", "/a/v1/score", "/score"), ("POST", "/v2/rerank", "/rerank"),
    ("POST", "/a/rerank", "/rerank"), ("POST", "/tokenize", "/tokenize"), ("POST", "/a/detokenize", "/detokenize"),
    ("POST", "/v1/messages", "/v1/messages"), ("POST", "/a/v1/messages/count_tokens", "/v1/messages/count_tokens"),
    ("GET", "/a/v1/responses/resp_1", "/v1/responses/resp_1"),
    ("POST", "/a/v1/responses/resp_1/cancel", "/v1/responses/resp_1/cancel"),
])
async def test_each_route_reaches_its_vllm_route_in_the_models_engine(daemon, method, path, vllm_path):
    write(daemon, "a.yaml", "a", "  endpoints: [chat_completions, responses, messages, tokenize, score, rerank]\n")
    await until(lambda: "a" in daemon.fleet.models and daemon.fleet.models["a"].engines, "a to serve")
    engine = daemon.fleet.models["a"].engines[0]
    engine.stored_responses.add("resp_1")
    async with aiohttp.ClientSession() as s:
        body = None if method == "GET" or path.endswith("/cancel") else {"model": "a", "prompt": "x"}
        async with s.request(method, daemon.base_url + path, json=body,
                             headers={"Authorization": "Bearer client-secret", "X-Request-Id": "rid-7"}) as r:
            assert r.status == 200, await r.text()
    got_method, got_path, got_body, headers = engine.received[-1]
    assert (got_method, got_path) == (method, vllm_path)
    assert body is None or got_body["model"] == "a", "the path form fills in the model"
    assert headers["x-request-id"] == "rid-7" and "authorization" not in headers, "the daemon's credentials stay"


async def test_a_route_the_models_engine_does_not_serve_is_a_404_naming_both(daemon):
    write(daemon, "a.yaml", "a", "  endpoints: [chat_completions, embeddings]\n")
    await until(lambda: "a" in daemon.fleet.models and daemon.fleet.models["a"].engines, "a to serve")
    engine = daemon.fleet.models["a"].engines[0]
    engine.routes = frozenset({("POST", "/v1/chat/completions")})  # a generate model: vLLM serves no embeddings
    status, body = await post(daemon, "/a/v1/embeddings", {"input": "x"})
    assert status == 404 and body["error"]["message"].startswith("model a does not serve POST /v1/embeddings")


async def test_the_messages_apis_refusals_are_in_anthropics_shape(daemon):
    status, body = await post(daemon, "/v1/messages", {"model": "nope", "messages": [], "max_tokens": 1})
    assert status == 404 and body == {"type": "error", "error": {"type": "not_found_error",
                                                                  "message": "The model `nope` does not exist."}}
    status, body = await post(daemon, "/nope/v1/messages", {"messages": []})
    assert status == 404 and body["error"]["type"] == "not_found_error"
    status, body = await post(daemon, "/v1/messages/nothing-here", {})
    assert status == 404 and body["type"] == "error"


async def test_a_stored_response_is_found_on_the_model_that_has_it(daemon):
    for name in ("a", "b"):
        write(daemon, f"{name}.yaml", name, "  endpoints: [chat_completions, responses]\n")
    await until(lambda: all(n in daemon.fleet.models and daemon.fleet.models[n].engines for n in "ab"), "a and b")
    a, b = daemon.fleet.models["a"].engines[0], daemon.fleet.models["b"].engines[0]
    b.stored_responses.add("resp_b")
    assert (await get(daemon, "/v1/responses/resp_b")) == (200, {"object": "response"})
    assert b.received[-1][:2] == ("GET", "/v1/responses/resp_b")
    assert (await post(daemon, "/v1/responses/resp_b/cancel", {}))[0] == 200
    status, body = await get(daemon, "/v1/responses/resp_x")
    assert status == 404 and "no model on this host has response 'resp_x'" in body["error"]["message"]
    assert all(r[1].startswith("/v1/responses/resp_") for r in a.received), "a lookup, no generation"
