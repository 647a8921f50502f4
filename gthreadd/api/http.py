"""The daemon's HTTP port: inference for every model, status, health.

Inference goes to the model's own vLLM application (engine/api_app.py) as an in-process ASGI call
(api/asgi_bridge.py); this layer routes (api/inference_routes.py), admits through the scheduler,
and keeps what is the daemon's: API keys, request ids, metrics, spec.endpoints, and its own
refusals in the shape of the API that was called. The runner is built with
`handler_cancellation=True`, so a client that disconnects cancels its handler, and the bridge
tells vLLM, which aborts the generation.
"""

import asyncio
import hmac
import json
import logging
import time
import uuid
from typing import Optional

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.results import anthropic_error, openai_error
from gthreadd.api.asgi_bridge import AsgiCall
from gthreadd.api.inference_routes import ROUTES, Api, InferenceRoute, api_of
from gthreadd.observe import logs
from gthreadd.spec.engine_config import served_names
from gthreadd.runtime.fleet import Fleet
from gthreadd.observe.metrics import Metrics
from gthreadd.spec.resource import API_PREFIX, Phase
from gthreadd.api.routing import RouteError, by_body, by_path
from gthreadd.api.upload import form_field, read_upload
from gthreadd.runtime.scheduling import Rejected, SchedulerLoop, Ticket
from gthreadd.runtime.served_model import ServedModel
from gthreadd.api.views import gpu_objects, host_object, model_object, sidecar_status
from gthreadd.tenants.charges import Charges
from gthreadd.tenants.keyring import Tenant
from gthreadd.tenants.keys_in_force import KeysInForce

log = logging.getLogger(__name__)

FLEET = web.AppKey("fleet", Fleet)
SCHEDULING = web.AppKey("scheduling", SchedulerLoop)
BASE_URL = web.AppKey("base_url", str)
READY = web.AppKey("ready", dict)
METRICS = web.AppKey("metrics", Metrics)
MAX_REQUEST_BYTES = web.AppKey("max_request_bytes", int)
MAX_AUDIO_BYTES = web.AppKey("max_audio_bytes", int)
REQUEST_ID_KEY = web.RequestKey("request_id", str)
CHARGES = web.AppKey("charges", Charges)
KEYS = web.AppKey("keys", KeysInForce)
TENANT = web.RequestKey("tenant", Tenant)
"""The caller's key (absent where the port needs none)."""


def error_response(status: int, message: str, param: Optional[str] = None,
                   headers: Optional[dict] = None, api: Api = Api.openai) -> web.Response:
    """The daemon's own refusal, in the shape of the API that was called."""
    if api == Api.anthropic:
        return web.json_response(anthropic_error(status, message).body, status=status, headers=headers)
    kind = {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError", 409: "ConflictError",
            422: "UnprocessableEntityError", 429: "RateLimitError", 503: "ServiceUnavailableError"}.get(
                status, "BadRequestError" if status < 500 else "InternalServerError")
    return web.json_response(openai_error(status, message, kind, param).body, status=status, headers=headers)


@web.middleware
async def request_context(request: web.Request, handler):
    """The caller's X-Request-Id, or a new one: on the response and on every log line the request
    causes (logs.REQUEST_ID is a context variable, so it follows the handler's task)."""
    rid = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    request[REQUEST_ID_KEY] = rid
    logs.REQUEST_ID.set(rid)
    logs.MODEL.set("")  # a keep-alive connection's earlier request may have set them
    logs.KEY.set("")
    return await handler(request)


async def request_id(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Request-Id"] = request.get(REQUEST_ID_KEY) or uuid.uuid4().hex


KEY_COOKIE = "gthread_api_key"
"""The dashboard's way to send an API key (a browser's EventSource cannot set headers); taken on
GET requests only, and the page sets it SameSite=Strict, so another site cannot act with it."""
PUBLIC_PREFIX = "/ui"
"""The dashboard's page and scripts: no data in them, so a browser can load the page that asks
for the key. Everything they show comes from routes behind the key."""


def presented_key(request: web.Request) -> str:
    """`Authorization: Bearer KEY`, or `x-api-key: KEY` (how Anthropic's SDK sends it), or for a GET
    the dashboard's cookie; "" when none."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return given.strip()
    if "X-Api-Key" in request.headers:
        return request.headers["X-Api-Key"].strip()
    if request.method == "GET" and KEY_COOKIE in request.cookies:
        return request.cookies[KEY_COOKIE].strip()
    return ""


CLIENT_ROUTES = frozenset({r.path for r in ROUTES if r.by_body or r.by_owner} | {"/{name}" + r.path for r in ROUTES}
                          | {"/v1/models", "/{name}/v1/models"})
"""What any key may call (each within its models); every other route (the status and metrics
views, the Model objects, the dashboard's data, LoRA loading) is for admin keys."""


def authenticate(keys: KeysInForce):
    """Every route but the health probes and the dashboard's static files needs a key the keyring
    knows (401); a key that is not `admin` reaches only the client routes (403). The key's tenant
    goes with the request (its models and limits are checked before admission), and its name on
    the request's log lines; the key itself is never logged."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.path in ("/healthz", "/readyz") or request.path.startswith(PUBLIC_PREFIX):
            return await handler(request)
        api = api_of(request.path)
        given = presented_key(request)
        tenant = keys.keyring.identify(given) if given else None
        if tenant is None:
            return error_response(401, "a valid API key is required: Authorization: Bearer KEY (or x-api-key)",
                                  headers={"WWW-Authenticate": "Bearer"}, api=api)
        request[TENANT] = tenant
        logs.KEY.set(tenant.name)
        resource = request.match_info.route.resource
        if not tenant.admin and resource is not None and resource.canonical not in CLIENT_ROUTES:
            return error_response(403, f"key {tenant.name} may not read {request.path}: it is for admin keys",
                                  api=api)
        return await handler(request)

    return middleware


@web.middleware
async def routing_errors(request: web.Request, handler):
    """A request for a Model this host does not have (or a /v1 body that names none) is answered
    here, for every route, with the router's status and message; so are aiohttp's own refusals
    (no such route, a method the route lacks, a body over maxRequestBytes), in the shape of the API
    the path belongs to (OpenAI's, or Anthropic's for /v1/messages)."""
    api = api_of(request.path)
    try:
        return await handler(request)
    except RouteError as exc:
        return error_response(exc.status, exc.message, exc.param, api=api)
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, f"the request body is over {request.app[MAX_REQUEST_BYTES]} bytes (maxRequestBytes)",
                              api=api)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return error_response(405, f"{request.method} is not allowed on {request.path} (allowed: {allowed})",
                              headers={"Allow": allowed}, api=api)
    except web.HTTPNotFound:
        return error_response(404, f"no such route: {request.method} {request.path}", api=api)


def path_model(request: web.Request) -> ServedModel:
    """The Model named by the route's {name}; raises RouteError (answered by routing_errors)."""
    return by_path(request.app[FLEET].models, request.match_info["name"])


def create_app(fleet: Fleet, scheduling: SchedulerLoop, base_url: str, metrics: Metrics, max_request_bytes: int,
               max_audio_bytes: int, keys: Optional[KeysInForce] = None, check_keys: bool = False,
               charges: Optional[Charges] = None) -> web.Application:
    """`max_audio_bytes`: the largest audio file an upload may carry (vLLM's own limit, which its
    transcription handler checks again). `keys`: the keys in force (listed at /apis/.../keys);
    `check_keys`: this listener requires one (the TCP port; the control socket's file mode is its
    access control). `charges`: where a key's requests are remembered until vLLM counts their tokens."""
    keys = keys or KeysInForce()
    middlewares = [request_context] + ([authenticate(keys)] if check_keys and keys.required else []) + \
        [routing_errors]
    app = web.Application(client_max_size=max_request_bytes, middlewares=middlewares)
    app[MAX_REQUEST_BYTES], app[MAX_AUDIO_BYTES] = max_request_bytes, max_audio_bytes
    app[CHARGES], app[KEYS] = charges or Charges(), keys
    app.on_response_prepare.append(request_id)
    app[FLEET], app[SCHEDULING], app[BASE_URL], app[READY] = fleet, scheduling, base_url, {"ready": False}
    app[METRICS] = metrics
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get(API_PREFIX + "/models/{name}/events", get_model_events)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get(f"{API_PREFIX}/models", get_model_objects)
    app.router.add_get(API_PREFIX + "/models/{name}", get_model_object)
    app.router.add_get(f"{API_PREFIX}/gpus", get_gpus)
    app.router.add_get(f"{API_PREFIX}/keys", get_keys)
    app.router.add_get("/{name}/status", model_status)
    app.router.add_get("/{name}/v1/models", model_models)
    for route in ROUTES:  # routed by the body first: /v1/score is not the path form of a Model "v1"
        if route.by_body:
            app.router.add_route(route.method, route.path, _by_body(route))
        elif route.by_owner:
            app.router.add_route(route.method, route.path, _by_owner(route))
    for route in ROUTES:
        app.router.add_route(route.method, "/{name}" + route.path, _by_path(route))
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
    """Every Model that can answer, asleep or awake, under the id responses will carry; only those
    the caller's key may use."""
    tenant = request.get(TENANT)
    models = [m for m in request.app[FLEET].models.values() if tenant is None or tenant.may_use(model_names(m))]
    data = [
        {"id": served_names(m.resource)[0], "object": "model", "created": int(time.time()), "owned_by": "gthreadd",
         "name": m.name}
        for m in models if m.phase != Phase.failed
    ] + [
        {"id": adapter, "object": "model", "created": int(time.time()), "owned_by": "gthreadd", "name": m.name,
         "parent": served_names(m.resource)[0]}
        for m in models if m.phase != Phase.failed for adapter in sorted(m.adapters)
    ]
    return web.json_response({"object": "list", "data": data})


async def get_metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def get_model_events(request: web.Request) -> web.Response:
    model = path_model(request)
    return web.json_response({"kind": "EventList", "items": model.events.to_json()})


async def get_gpus(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULING].snapshot()
    return web.json_response({"kind": "List", "items": gpu_objects(scheduler), "host": host_object(scheduler.host)})


async def get_keys(request: web.Request) -> web.Response:
    """The keys in force by name, with their models, limits and last minute's use (never a key or
    its digest)."""
    now = request.app[SCHEDULING].now
    items = [tenant.to_json(now) for tenant in request.app[KEYS].keyring.tenants]
    return web.json_response({"kind": "List", "items": items})


async def get_model_objects(request: web.Request) -> web.Response:
    fleet, scheduler = request.app[FLEET], request.app[SCHEDULING].snapshot()
    items = [model_object(m, scheduler, request.app[BASE_URL]) for m in fleet.models.values()]
    errors = [str(e) for e in fleet.desired.errors]
    return web.json_response({"apiVersion": "v1", "kind": "List", "items": items, "errors": errors})


async def get_model_object(request: web.Request) -> web.Response:
    model = path_model(request)
    return web.json_response(model_object(model, request.app[SCHEDULING].snapshot(), request.app[BASE_URL]))


async def model_status(request: web.Request) -> web.Response:
    model = path_model(request)
    return web.json_response(sidecar_status(model, request.app[SCHEDULING].snapshot()))


async def model_models(request: web.Request) -> web.StreamResponse:
    """vLLM's own listing of the model (and its LoRA adapters), from any of its engines, asleep
    or awake: a listing needs no admission."""
    model = path_model(request)
    if (refused := _not_for(request, model)) is not None:
        return refused
    engine = request.app[FLEET].any_engine(model.name)
    if engine is None or engine.api is None:
        return error_response(503, f"model {model.name} has not started yet ({model.ready_condition.message})",
                              headers={"Retry-After": "5"})
    response = await AsgiCall(engine.api.asgi, request, "/v1/models", b"", _forwarded(request, b"", False)).run()
    return response if response is not None else error_response(503, f"model {model.name}'s engine is not running")


def _by_path(route: InferenceRoute):
    async def handler(request: web.Request) -> web.StreamResponse:
        model = path_model(request)
        if route.upload:
            body = await read_upload(request, request.app[MAX_AUDIO_BYTES])
            return await _infer(request, route, model, body, rewritten=False)
        if not route.by_body:
            return await _infer(request, route, model, await request.read(), rewritten=False)
        body = await read_body(request, route.api)
        if isinstance(body, web.Response):
            return body
        body.setdefault("model", served_names(model.resource)[0])
        return await _infer(request, route, model, json.dumps(body).encode(), rewritten=True)
    return handler


def _by_body(route: InferenceRoute):
    async def handler(request: web.Request) -> web.StreamResponse:
        if route.upload:
            upload = await read_upload(request, request.app[MAX_AUDIO_BYTES])
            named = form_field(upload, request.headers.get("Content-Type", ""), "model")
            model = by_body(request.app[FLEET].models, {"model": named})
            return await _infer(request, route, model, upload, rewritten=False)
        body = await read_body(request, route.api)
        if isinstance(body, web.Response):
            return body
        model = by_body(request.app[FLEET].models, body)
        return await _infer(request, route, model, await request.read(), rewritten=False)
    return handler


def _by_owner(route: InferenceRoute):
    """A stored response (`/v1/responses/{id}`, vLLM keeps them with VLLM_ENABLE_RESPONSES_API_STORE)
    names no model: it is asked of each running model that serves the Responses API, and the one
    that has it answers. A lookup, not a generation: nothing is admitted or woken."""
    async def handler(request: web.Request) -> web.StreamResponse:
        fleet = request.app[FLEET]
        target = route.vllm_target(dict(request.match_info))
        for model in fleet.models.values():
            engine = fleet.any_engine(model.name)
            if (route.endpoint not in model.resource.spec.enabled_endpoints or engine is None or engine.api is None
                    or not route.served_by(engine.api)):
                continue
            logs.MODEL.set(model.name)
            response = await AsgiCall(engine.api.asgi, request, target, b"", _forwarded(request, b"", False),
                                      accept=lambda status: status != 404).run()
            if response is not None:
                return response
        logs.MODEL.set("")
        return error_response(404, f"no model on this host has response {request.match_info['response_id']!r} "
                                   "(vLLM keeps them only with VLLM_ENABLE_RESPONSES_API_STORE=1)")
    return handler


async def read_body(request: web.Request, api: Api = Api.openai) -> dict | web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return error_response(400, f"malformed JSON in the request body: {exc}", api=api)
    if not isinstance(body, dict):
        return error_response(400, "the request body must be a JSON object", api=api)
    return body


async def _infer(request: web.Request, route: InferenceRoute, model: ServedModel, body: bytes | bytearray,
                 rewritten: bool) -> web.StreamResponse:
    """Serve, and count the outcome: 499 (nginx's "client closed request") for a client that left."""
    logs.MODEL.set(model.name)
    code, started = "499", time.monotonic()
    try:
        response = await _serve(request, route, model, body, rewritten)
        code = str(response.status)
        return response
    finally:
        request.app[METRICS].requests.labels(model.name, route.label, code).inc()
        if (tenant := request.get(TENANT)) is not None:
            request.app[METRICS].key_requests.labels(tenant.name, code).inc()
        log.info("%s %s -> %s in %.3fs", request.method, request.path, code, time.monotonic() - started)


async def _serve(request: web.Request, route: InferenceRoute, model: ServedModel, body: bytes | bytearray,
                 rewritten: bool) -> web.StreamResponse:
    """Check the caller's key (may it use the model; is it within its limits: a refusal never
    queues or wakes anything), admit the request through the scheduler (it may wait for a wake),
    then hand it to the engine's vLLM application; if the scheduler aborts it (drainTimeout),
    answer 503 or end the stream with an error event."""
    api = route.api
    if route.endpoint not in model.resource.spec.enabled_endpoints:
        enabled = ", ".join(e.value for e in model.resource.spec.enabled_endpoints)
        return error_response(404, f"{route.endpoint.value} is not enabled for model {model.name} "
                                   f"(spec.endpoints: {enabled})", "model", api=api)
    if (refused := _not_for(request, model, api)) is not None:
        return refused
    if model.phase == Phase.failed:
        ready = model.ready_condition
        return error_response(503, f"model {model.name} failed: {ready.reason}: {ready.message}", api=api)
    known = request.app[FLEET].any_engine(model.name)
    if known is not None and known.api is not None and not route.served_by(known.api):
        return _unserved(model, route)  # known from an engine it has: refused without waking it
    scheduling = request.app[SCHEDULING]
    arrived = scheduling.now
    tenant = request.get(TENANT)
    if tenant is not None and (refusal := tenant.admit(arrived)) is not None:
        request.app[METRICS].key_refusals.labels(tenant.name, refusal.kind).inc()
        return error_response(refusal.status, refusal.reason, headers={"Retry-After": str(refusal.retry_after)},
                              api=api)
    if tenant is None:
        return await _admitted(request, route, model, body, rewritten, arrived, None)
    charges, request_id = request.app[CHARGES], request[REQUEST_ID_KEY]
    charges.expect(request_id, tenant)
    try:
        return await _admitted(request, route, model, body, rewritten, arrived, tenant)
    finally:
        tenant.release()
        charges.done(request_id)


async def _admitted(request: web.Request, route: InferenceRoute, model: ServedModel, body: bytes | bytearray,
                    rewritten: bool, arrived: float, tenant: Optional[Tenant]) -> web.StreamResponse:
    """The request, within its key's limits, through the scheduler to the engine."""
    api = route.api
    scheduling = request.app[SCHEDULING]
    try:
        ticket = await scheduling.admit(model.name, tenant.name if tenant is not None else "")
        waited = scheduling.now - arrived
        request.app[METRICS].queue_wait.labels(model.name).observe(waited)
        if tenant is not None:
            request.app[METRICS].key_queue_wait.labels(tenant.name).observe(waited)
    except Rejected as exc:
        headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else None
        return error_response(exc.status, exc.reason, headers=headers, api=api)
    call: Optional[AsgiCall] = None
    try:
        engine = request.app[FLEET].engine(ticket.unit)
        if engine is None or engine.api is None:
            return error_response(503, f"model {model.name} stopped while the request was admitted",
                                  headers={"Retry-After": "5"}, api=api)
        if not route.served_by(engine.api):
            return _unserved(model, route)
        ttft = request.app[METRICS].ttft.labels(model.name)

        def first_chunk(response: web.StreamResponse) -> None:
            if response.content_type == "text/event-stream":
                ttft.observe(scheduling.now - arrived)

        call = AsgiCall(engine.api.asgi, request, route.vllm_target(dict(request.match_info)), body,
                        _forwarded(request, body, rewritten),
                        accept=lambda status: status < 500 or engine.running, on_first_body=first_chunk,
                        on_chunk=lambda: scheduling.token(ticket))
        response = await call.run()
        if response is None:  # vLLM answered 5xx for an engine that has died
            cause = engine.exit_cause or "the engine stopped"
            return error_response(503, f"model {model.name}'s engine died ({cause}); it is being restarted",
                                  headers={"Retry-After": "10"}, api=api)
        return response
    except asyncio.CancelledError:
        if not ticket.aborted:
            raise
        asyncio.current_task().uncancel()
        return await _aborted(request, ticket, call.response if call is not None else None, api)
    finally:
        scheduling.finished(ticket)


def model_names(model: ServedModel) -> tuple[str, ...]:
    return (model.name,) + served_names(model.resource)


def _not_for(request: web.Request, model: ServedModel, api: Api = Api.openai) -> Optional[web.Response]:
    """A 403 when the caller's key may not use this Model."""
    tenant = request.get(TENANT)
    if tenant is None or tenant.may_use(model_names(model)):
        return None
    request.app[METRICS].key_refusals.labels(tenant.name, "model").inc()
    return error_response(403, f"key {tenant.name} may not use model {model.name}", "model", api=api)


def _unserved(model: ServedModel, route: InferenceRoute) -> web.Response:
    return error_response(404, f"model {model.name} does not serve {route.method} {route.path}: vLLM serves it "
                               f"for other kinds of model", api=route.api)


_NOT_FORWARDED = {"authorization", "x-api-key", "cookie", "content-length", "transfer-encoding", "connection",
                  "keep-alive", "expect", "x-request-id"}
"""The daemon's credentials stay with it; the body's length and the request id are the daemon's."""


def _forwarded(request: web.Request, body: bytes | bytearray, rewritten: bool) -> list[tuple[bytes, bytes]]:
    """The client's headers for vLLM, with the daemon's request id (vLLM names its engine request
    after it) and the body's length; a body the daemon rewrote is JSON."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()
               if k.lower() not in _NOT_FORWARDED and not (rewritten and k.lower() == "content-type")]
    headers.append((b"x-request-id", request[REQUEST_ID_KEY].encode("latin-1")))
    headers.append((b"content-length", str(len(body)).encode()))
    if rewritten:
        headers.append((b"content-type", b"application/json"))
    return headers


async def _aborted(request: web.Request, ticket: Ticket, response: Optional[web.StreamResponse],
                   api: Api) -> web.StreamResponse:
    if response is None:
        return error_response(503, ticket.aborted, headers={"Retry-After": "5"}, api=api)
    if api == Api.anthropic:
        event = f"event: error\ndata: {json.dumps(anthropic_error(503, ticket.aborted).body)}\n\n"
    else:
        error = openai_error(503, ticket.aborted, "ServiceUnavailableError").body
        event = f"data: {json.dumps(error)}\n\ndata: [DONE]\n\n"
    await response.write(event.encode())
    await response.write_eof()
    return response
