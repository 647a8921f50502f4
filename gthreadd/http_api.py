"""The daemon's HTTP port: OpenAI-compatible inference for every model, status, health.

Inference goes to vLLM's own serving classes through the model's engine; this layer only routes,
admits, and writes the result (JSON, or server-sent events as they are produced). The runner is
built with `handler_cancellation=True`, so a client that disconnects cancels its handler, and
cancellation inside vLLM's generator aborts the generation.
"""

import json
import logging
import time
import uuid
from contextlib import aclosing
from typing import Optional

from aiohttp import web

from engine.results import JsonResult, StreamResult
from gthreadd.engine_config import served_names
from gthreadd.fleet import Fleet
from gthreadd.lifecycle import EngineState
from gthreadd.resource import Endpoint, Phase
from gthreadd.router import RouteError, by_body, by_path
from gthreadd.served_model import ServedModel
from gthreadd.status import model_object, sidecar_status

log = logging.getLogger(__name__)

API_PREFIX = "/apis/greenthread.ai/v1alpha1"
# URL tail -> (the spec.endpoints entry that enables it, the engine method serving it)
INFERENCE = {
    "chat/completions": (Endpoint.chat_completions, "chat_completion"),
    "completions": (Endpoint.completions, "completion"),
    "embeddings": (Endpoint.embeddings, "embedding"),
}
FLEET = web.AppKey("fleet", Fleet)
BASE_URL = web.AppKey("base_url", str)
READY = web.AppKey("ready", dict)


def error_response(status: int, message: str, param: Optional[str] = None,
                   headers: Optional[dict] = None) -> web.Response:
    kind = {400: "BadRequestError", 404: "NotFoundError", 429: "RateLimitError",
            503: "ServiceUnavailableError"}.get(status, "InternalServerError")
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return web.json_response(body, status=status, headers=headers)


async def request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Echo the caller's X-Request-Id, or give one, on every response, streams included."""
    response.headers["X-Request-Id"] = request.headers.get("X-Request-Id") or uuid.uuid4().hex


def create_app(fleet: Fleet, base_url: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.on_response_prepare.append(request_id)
    app[FLEET], app[BASE_URL], app[READY] = fleet, base_url, {"ready": False}
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get(f"{API_PREFIX}/models", get_model_objects)
    app.router.add_get(API_PREFIX + "/models/{name}", get_model_object)
    app.router.add_get("/{name}/status", model_status)
    app.router.add_get("/{name}/v1/models", model_models)
    for tail in INFERENCE:
        app.router.add_post(f"/v1/{tail}", infer_by_body)
        app.router.add_post("/{name}/v1/" + tail, infer_by_path)
    return app


def mark_ready(app: web.Application) -> None:
    app[READY]["ready"] = True


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready once the first models.d scan is applied (models may still be loading)."""
    if not request.app[READY]["ready"]:
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response({"status": "ready"})


async def list_models(request: web.Request) -> web.Response:
    """Every Model that can answer, asleep or awake, under the id responses will carry."""
    models = request.app[FLEET].models.values()
    data = [
        {"id": served_names(m.resource)[0], "object": "model", "created": int(time.time()), "owned_by": "gthreadd",
         "name": m.name}
        for m in models if m.phase != Phase.failed
    ]
    return web.json_response({"object": "list", "data": data})


async def get_model_objects(request: web.Request) -> web.Response:
    fleet = request.app[FLEET]
    items = [model_object(m, request.app[BASE_URL]) for m in fleet.models.values()]
    errors = [str(e) for e in fleet.desired.errors]
    return web.json_response({"apiVersion": "v1", "kind": "List", "items": items, "errors": errors})


async def get_model_object(request: web.Request) -> web.Response:
    try:
        model = by_path(request.app[FLEET].models, request.match_info["name"])
    except RouteError as exc:
        return error_response(exc.status, exc.message)
    return web.json_response(model_object(model, request.app[BASE_URL]))


async def model_status(request: web.Request) -> web.Response:
    try:
        model = by_path(request.app[FLEET].models, request.match_info["name"])
    except RouteError as exc:
        return error_response(exc.status, exc.message)
    return web.json_response(sidecar_status(model))


async def model_models(request: web.Request) -> web.StreamResponse:
    try:
        model = by_path(request.app[FLEET].models, request.match_info["name"])
    except RouteError as exc:
        return error_response(exc.status, exc.message)
    if (refusal := _unavailable(model)) is not None:
        return refusal
    return _json(await model.engine.models())


async def infer_by_path(request: web.Request) -> web.StreamResponse:
    body = await _read_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        model = by_path(request.app[FLEET].models, request.match_info["name"])
    except RouteError as exc:
        return error_response(exc.status, exc.message)
    body.setdefault("model", served_names(model.resource)[0])
    return await _infer(request, model, body)


async def infer_by_body(request: web.Request) -> web.StreamResponse:
    body = await _read_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        model = by_body(request.app[FLEET].models, body)
    except RouteError as exc:
        return error_response(exc.status, exc.message, exc.param)
    return await _infer(request, model, body)


async def _read_body(request: web.Request) -> dict | web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return error_response(400, f"malformed JSON in the request body: {exc}")
    if not isinstance(body, dict):
        return error_response(400, "the request body must be a JSON object")
    return body


def _unavailable(model: ServedModel) -> Optional[web.Response]:
    if model.phase == Phase.ready and model.engine_state == EngineState.serving:
        return None
    ready = model.ready_condition
    if model.phase == Phase.failed:
        return error_response(503, f"model {model.name} failed: {ready.reason}: {ready.message}")
    return error_response(503, f"model {model.name} is not ready ({model.phase.value}: {ready.message})",
                          headers={"Retry-After": "5"})


async def _infer(request: web.Request, model: ServedModel, body: dict) -> web.StreamResponse:
    tail = request.path.split("/v1/", 1)[1]
    endpoint, method = INFERENCE[tail]
    if endpoint not in model.resource.spec.enabled_endpoints:
        enabled = ", ".join(e.value for e in model.resource.spec.enabled_endpoints)
        return error_response(404, f"{endpoint.value} is not enabled for model {model.name} "
                                   f"(spec.endpoints: {enabled})", "model")
    if (refusal := _unavailable(model)) is not None:
        return refusal
    with model.track_request():
        result = await getattr(model.engine, method)(body)
        if isinstance(result, JsonResult):
            if result.status >= 500:
                model.notice_engine_death()
            return _json(result)
        return await _stream(request, result)


def _json(result: JsonResult) -> web.Response:
    return web.json_response(result.body, status=result.status)


async def _stream(request: web.Request, result: StreamResult) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    async with aclosing(result.chunks) as chunks:
        async for chunk in chunks:
            await response.write(chunk.encode())
    await response.write_eof()
    return response
