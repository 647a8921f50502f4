"""The inference routes a client of the daemon may call, and where each goes in the model's own
vLLM application (engine/api_app.py).

Each is served on two forms: `/<name>/<path>` (the Model named in the URL) and, where a request
names its model in its body (a JSON body's `model`, or an upload's form field `model`), `/<path>`. Nothing else of vLLM's
application is reachable.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from engine.api_app import ApiApp
from gthreadd.spec.resource import Endpoint, ModelSpec


class Api(str, Enum):
    """Whose API a route belongs to: its errors, the daemon's own included, take that API's shape."""

    openai = "openai"
    anthropic = "anthropic"


@dataclass(frozen=True)
class InferenceRoute:
    path: str
    """The public path, after `/<name>` on the path form (aiohttp's syntax for variables)."""
    method: str
    vllm_path: str
    """vLLM's route (its template) that serves it."""
    endpoint: Endpoint
    """The spec.endpoints entry that enables it."""
    api: Api = Api.openai
    by_body: bool = True
    """Also on `/<path>`, routed by the body's `model`. Not for a route without a body (a GET)."""
    upload: bool = False
    """The body is a multipart form with a file (an audio upload), not JSON: read up to vLLM's audio
    file limit rather than maxRequestBytes, and routed by the form's `model` field."""
    by_owner: bool = False
    """Also on `/<path>`, routed to the model that has the object the path names (a stored response)."""

    @property
    def label(self) -> str:
        """Its `endpoint` label in metrics: the path less `/v1/` (chat/completions, tokenize)."""
        return self.path.removeprefix("/v1/").lstrip("/")

    def served_by(self, api: ApiApp) -> bool:
        """Whether an engine's application has this route (vLLM serves it for the model's tasks)."""
        return (self.method, self.vllm_path) in api.routes

    def vllm_target(self, variables: dict[str, str]) -> str:
        return self.vllm_path.format(**variables)


def _r(path: str, vllm_path: Optional[str], endpoint: Endpoint, **more) -> InferenceRoute:
    return InferenceRoute(path, more.pop("method", "POST"), vllm_path or path, endpoint, **more)


ROUTES: tuple[InferenceRoute, ...] = (
    _r("/v1/chat/completions", None, Endpoint.chat_completions),
    _r("/v1/completions", None, Endpoint.completions),
    _r("/v1/responses", None, Endpoint.responses),
    _r("/v1/responses/{response_id}", None, Endpoint.responses, method="GET", by_body=False, by_owner=True),
    _r("/v1/responses/{response_id}/cancel", None, Endpoint.responses, by_body=False, by_owner=True),
    _r("/v1/messages", None, Endpoint.messages, api=Api.anthropic),
    _r("/v1/messages/count_tokens", None, Endpoint.messages, api=Api.anthropic),
    _r("/v1/embeddings", None, Endpoint.embeddings),
    _r("/pooling", None, Endpoint.pooling),
    _r("/classify", None, Endpoint.classify),
    # vLLM's /v1/score and /v1/rerank are deprecated aliases that log a warning per call: same handler
    _r("/score", None, Endpoint.score),
    _r("/v1/score", "/score", Endpoint.score),
    _r("/rerank", None, Endpoint.rerank),
    _r("/v1/rerank", "/rerank", Endpoint.rerank),
    _r("/v2/rerank", "/rerank", Endpoint.rerank),
    _r("/tokenize", None, Endpoint.tokenize),
    _r("/detokenize", None, Endpoint.tokenize),
    _r("/v1/audio/transcriptions", None, Endpoint.audio_transcriptions, upload=True),
    _r("/v1/audio/translations", None, Endpoint.audio_translations, upload=True),
)


def api_of(path: str) -> Api:
    """The API a path (a refused or unknown one too) belongs to, for the shape of its error."""
    return Api.anthropic if "/v1/messages" in path else Api.openai


def endpoint_labels(spec: ModelSpec) -> list[str]:
    """The `endpoint` labels of the routes a Model's spec.endpoints enable, as metrics count them."""
    enabled = set(spec.enabled_endpoints)
    return sorted({route.label for route in ROUTES if route.endpoint in enabled})
