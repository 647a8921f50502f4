"""The live views' feeds: the watch stream (server-sent events of the whole picture, sent when it
changes) that `/ui` and `gthread get -w` follow, and each model's log lines (`gthread logs`).

A snapshot is rendered when the daemon's change counter moves (observe/changes.py), at most
every MIN_INTERVAL_S per client, and sent only when it differs from the last one sent; a comment
line every HEARTBEAT_S keeps proxies from closing a quiet stream.
"""

import asyncio
import json
import time

from aiohttp import web

from gthreadd.api.http import BASE_URL, FLEET, METRICS, SCHEDULING, error_response, path_model
from gthreadd.api.views import engine_state, gpu_objects, host_object, model_object, sidecar_status
from gthreadd.spec.resource import API_PREFIX

MIN_INTERVAL_S = 0.25
HEARTBEAT_S = 15.0
DEFAULT_TAIL = 200


CLOSING = web.AppKey("closing", asyncio.Event)
"""Set at shutdown: open streams never end by themselves, and the listener would wait for them
for shutdownTimeout. They end instead; a dashboard's EventSource reconnects later."""


def add_watch_routes(app: web.Application) -> None:
    app[CLOSING] = asyncio.Event()
    app.router.add_get(f"{API_PREFIX}/watch", watch)
    app.router.add_get(API_PREFIX + "/models/{name}/logs", model_logs)
    app.on_shutdown.append(_close_streams)


async def _close_streams(app: web.Application) -> None:
    app[CLOSING].set()


async def _unless_closing(app: web.Application, awaitable, timeout: float):
    """`awaitable`'s result; None after `timeout` seconds or when the daemon is shutting down."""
    waiting = asyncio.ensure_future(awaitable)
    closing = asyncio.ensure_future(app[CLOSING].wait())
    await asyncio.wait((waiting, closing), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in (waiting, closing):
        task.cancel()
    return waiting.result() if waiting.done() and not waiting.cancelled() else None


def snapshot(app: web.Application) -> dict:
    """Everything the dashboard shows, in one document."""
    fleet, scheduler = app[FLEET], app[SCHEDULING].snapshot()
    models = []
    for model in fleet.models.values():
        obj = model_object(model, scheduler, app[BASE_URL])
        obj["live"] = sidecar_status(model, scheduler)
        obj["live"]["devices"] = sorted({i for u in scheduler.units_of(model.name) if u.claiming for i in u.devices})
        models.append(obj)
    devices = []
    for index, device in scheduler.devices.items():
        claims = {}
        for unit in scheduler.units:
            if index in unit.claims:
                claims[unit.id.model] = claims.get(unit.id.model, 0) + unit.claims[index]
        devices.append({"index": index, "product": device.product, "totalBytes": device.total_bytes,
                        "capacityBytes": device.capacity_bytes, "foreignBytes": scheduler.foreign.get(index, 0),
                        "claims": claims})
    return {
        "time": time.time(),
        "models": models,
        "states": {m.name: engine_state(m, scheduler) for m in fleet.models.values()},
        "errors": [str(e) for e in fleet.desired.errors],
        "gpus": gpu_objects(scheduler),
        "host": host_object(scheduler.host),
        "devices": devices,
        "operations": fleet.operations.to_json(),
        "traffic": app[METRICS].traffic(),
    }


async def watch(request: web.Request) -> web.StreamResponse:
    app = request.app
    changes = app[SCHEDULING].changes
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    seen, sent, quiet_since = -1, "", time.monotonic()
    while not app[CLOSING].is_set():
        version = await _unless_closing(app, changes.wait(seen, HEARTBEAT_S), HEARTBEAT_S + 1)
        if version is not None and version != seen:
            seen = version
            body = json.dumps(snapshot(app), separators=(",", ":"))
            if body != sent:
                sent, quiet_since = body, time.monotonic()
                await response.write(f"event: snapshot\ndata: {body}\n\n".encode())
            await asyncio.sleep(MIN_INTERVAL_S)  # coalesce a burst of changes into one snapshot
        if time.monotonic() - quiet_since >= HEARTBEAT_S:
            quiet_since = time.monotonic()
            await response.write(b": keep-alive\n\n")
    await response.write_eof()
    return response


async def model_logs(request: web.Request) -> web.StreamResponse:
    """`?tailLines=N` (default 200) of the model's lines; `?follow=true` keeps sending new ones.
    Plain text, or server-sent events (`event: line`) for a client that accepts them."""
    model = path_model(request)
    logs = request.app[FLEET].model_logs
    try:
        tail = int(request.query.get("tailLines", DEFAULT_TAIL))
    except ValueError:
        return error_response(400, f"tailLines must be a whole number, not {request.query['tailLines']!r}",
                              "tailLines")
    follow = request.query.get("follow", "").lower() in ("1", "true", "yes")
    events = "text/event-stream" in request.headers.get("Accept", "")

    def encode(line: str) -> bytes:
        return f"event: line\ndata: {json.dumps(line)}\n\n".encode() if events else (line + "\n").encode()

    kind = "text/event-stream" if events else "text/plain; charset=utf-8"
    response = web.StreamResponse(headers={"Content-Type": kind, "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    queue = logs.follow(model.name) if follow else None
    try:
        await response.prepare(request)
        await response.write(b"".join(encode(line) for line in logs.tail(model.name, tail)))
        while queue is not None and not request.app[CLOSING].is_set():
            line = await _unless_closing(request.app, queue.get(), HEARTBEAT_S)
            if line is not None:
                await response.write(encode(line))
            elif events:
                await response.write(b": keep-alive\n\n")
        await response.write_eof()
        return response
    finally:
        if queue is not None:
            logs.unfollow(model.name, queue)
