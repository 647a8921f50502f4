"""LoRA adapters at run time, as vLLM's API server offers them (`/v1/load_lora_adapter`,
`/v1/unload_lora_adapter`), under the Model's path: `POST /<name>/v1/load_lora_adapter`.

Loading goes through the scheduler like a request: a sleeping Model is woken for it, and the
adapter is in its engine when the reply comes. The Model remembers it for every later engine.
"""

from aiohttp import web

from gthreadd.api.http import SCHEDULING, error_response, path_model, read_body
from gthreadd.runtime.lora import AdapterError
from gthreadd.runtime.scheduling import Rejected


def add_lora_routes(app: web.Application) -> None:
    app.router.add_post("/{name}/v1/load_lora_adapter", load)
    app.router.add_post("/{name}/v1/unload_lora_adapter", unload)


async def load(request: web.Request) -> web.Response:
    """Body: {"lora_name", "lora_path"}: a local adapter directory or a Hugging Face repo id."""
    body = await read_body(request)
    if isinstance(body, web.Response):
        return body
    name, source = body.get("lora_name"), body.get("lora_path")
    if not isinstance(name, str) or not name or not isinstance(source, str) or not source:
        return error_response(400, "load_lora_adapter needs 'lora_name' and 'lora_path'")
    return await _with_model_awake(request, lambda model: model.load_adapter(name, source))


async def unload(request: web.Request) -> web.Response:
    body = await read_body(request)
    if isinstance(body, web.Response):
        return body
    name = body.get("lora_name")
    if not isinstance(name, str) or not name:
        return error_response(400, "unload_lora_adapter needs 'lora_name'")
    return await _with_model_awake(request, lambda model: model.unload_adapter(name))


async def _with_model_awake(request: web.Request, operation) -> web.Response:
    model = path_model(request)
    scheduling = request.app[SCHEDULING]
    try:
        ticket = await scheduling.admit(model.name)
    except Rejected as exc:
        return error_response(exc.status, exc.reason)
    try:
        message = await operation(model)
    except AdapterError as exc:
        return error_response(exc.status, exc.message)
    finally:
        scheduling.finished(ticket)
    return web.json_response({"message": message, "adapters": sorted(model.adapters)})
