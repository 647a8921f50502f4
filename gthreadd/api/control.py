"""Administration over the control socket: apply, delete, sleep, wake.

Served only on the unix socket (settings.socket_path), whose file mode decides who may administer;
the TCP port stays for inference and reading. models.d remains the one source of truth: `apply`
and `delete` validate, then write or remove files there atomically and wait for the rescan, so
what the daemon serves is always what the directory says, whoever changed it.
"""

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from engine.results import openai_error
from gthreadd.api.http import FLEET, SCHEDULING, error_response, path_model
from gthreadd.spec.manifests import is_manifest, parse_text
from gthreadd.spec.policy import policy_for
from gthreadd.runtime.scheduling import Rejected
from gthreadd.runtime.served_model import ServedModel
from gthreadd.api.views import engine_state
from gthreadd.spec.resource import ModelState
from gthreadd.spec.validate import engine_errors
from scheduler.messages import SleepRequested
from scheduler.placement import never_placeable


@dataclass(frozen=True)
class Control:
    models_dir: Path
    rescan: Callable[[], Awaitable[None]]
    """Rescan models.d now and apply it; returns once the fleet holds the result."""


CONTROL = web.AppKey("control", Control)


def add_control_routes(app: web.Application, control: Control, api_prefix: str) -> None:
    app[CONTROL] = control
    app.router.add_post(f"{api_prefix}/apply", apply)
    app.router.add_delete(api_prefix + "/models/{name}", delete)
    app.router.add_post("/{name}/sleep", sleep)
    app.router.add_post("/{name}/wake", wake)


async def apply(request: web.Request) -> web.Response:
    """Body: {"file": "NAME.yaml", "text": "...", "dryRun": false}. Writes models.d/NAME.yaml when
    every Model in it is valid, and reports each as created, configured or unchanged. A dry run
    writes nothing and says instead why this host could never place a Model (`unschedulable`,
    by name), which is how the Kubernetes shim asks whether a Model fits before taking its Lease."""
    control, fleet = request.app[CONTROL], request.app[FLEET]
    try:
        body = await request.json()
    except ValueError as exc:
        return error_response(400, f"apply needs a JSON body {{\"file\", \"text\"}}: {exc}")
    if not isinstance(body, dict):
        return error_response(400, "apply needs a JSON object {\"file\", \"text\"}")
    name, text = str(body.get("file", "")), body.get("text")
    if not isinstance(text, str) or "/" in name or not is_manifest(Path(name)):
        return error_response(400, f"apply needs a YAML file name without directories and its text, got {name!r}")
    target = control.models_dir / name
    parsed = parse_text(text, str(target))
    errors = [str(e) for e in parsed.errors]
    if not errors:
        errors = [str(e) for e in await asyncio.to_thread(engine_errors, parsed)]
    if not errors and not parsed.models:
        errors = [f"{name}: no Model in it"]
    for model in parsed.models:
        held = fleet.desired.models.get(model.metadata.name)
        if held is not None and held.source != str(target):
            errors.append(f"Model {model.metadata.name!r} is defined in {held.source}: apply that file, "
                          "or delete the Model first")
    if errors:
        body = openai_error(422, "; ".join(errors), "UnprocessableEntityError").body
        return web.json_response({**body, "errors": errors}, status=422)
    results = []
    for model in parsed.models:
        held = fleet.desired.models.get(model.metadata.name)
        verb = "created" if held is None else "unchanged" if held.resource == model else "configured"
        results.append(f"model.greenthread.ai/{model.metadata.name} {verb}")
    if body.get("dryRun"):
        devices = list(request.app[SCHEDULING].snapshot().devices.values())
        unschedulable = {}
        for model in parsed.models:
            if reason := never_placeable(devices, policy_for(model, devices)):
                unschedulable[model.metadata.name] = reason
        return web.json_response({"results": [r + " (dry run)" for r in results], "unschedulable": unschedulable})
    await asyncio.to_thread(_write_atomically, target, text)
    await control.rescan()
    return web.json_response({"results": results})


async def delete(request: web.Request) -> web.Response:
    """Remove the Model's file; a file that defines other Models too is left for a human to edit."""
    control, fleet = request.app[CONTROL], request.app[FLEET]
    name = request.match_info["name"]
    held = fleet.desired.models.get(name)
    if held is None:
        return error_response(404, f'models.greenthread.ai "{name}" not found')
    others = [m.metadata.name for m in fleet.desired.last_good.get(held.source, ()) if m.metadata.name != name]
    if others:
        return error_response(409, f"Model {name!r} shares {held.source} with {', '.join(others)}: edit that file")
    Path(held.source).unlink(missing_ok=True)
    await control.rescan()
    return web.json_response({"results": [f'model.greenthread.ai "{name}" deleted']})


def _state_reply(request: web.Request, model: ServedModel) -> web.Response:
    state = engine_state(model, request.app[SCHEDULING].snapshot())
    return web.json_response({"model": model.name, "state": state})


async def sleep(request: web.Request) -> web.Response:
    scheduling = request.app[SCHEDULING]
    model = path_model(request)
    if model.resource.spec.fairness.popular:
        return error_response(409, f"model {model.name} is popular (spec.fairness.popular): it is never slept")
    scheduling.submit(SleepRequested(model.name))
    deadline = scheduling.now + model.resource.spec.sleep.drain_timeout.total_seconds() + 120
    while engine_state(model, scheduling.snapshot()) in (ModelState.serving, ModelState.draining) \
            and scheduling.now < deadline:
        await asyncio.sleep(0.1)
    return _state_reply(request, model)


async def wake(request: web.Request) -> web.Response:
    """Wake the model as a request would (queueing and fairness included), without a request."""
    scheduling = request.app[SCHEDULING]
    model = path_model(request)
    try:
        ticket = await scheduling.admit(model.name)
    except Rejected as exc:
        return error_response(exc.status, exc.reason)
    scheduling.finished(ticket)
    return _state_reply(request, model)


def _write_atomically(target: Path, text: str) -> None:
    """A dotfile beside the target (the watcher ignores dotfiles), fsync'd, then renamed over it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
