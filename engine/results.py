"""What a serving call hands back to the HTTP layer: a JSON body with its status, or a stream."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Union


@dataclass(frozen=True)
class JsonResult:
    status: int
    body: Any


@dataclass(frozen=True)
class StreamResult:
    """Server-sent events exactly as vLLM formats them (`data: {...}\\n\\n` lines)."""

    chunks: AsyncIterator[str]


ServingResult = Union[JsonResult, StreamResult]


def openai_error(status: int, message: str, type_: str, param: str | None = None) -> JsonResult:
    return JsonResult(status, {"error": {"message": message, "type": type_, "param": param, "code": status}})


_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}


def anthropic_error(status: int, message: str) -> JsonResult:
    """An error in Anthropic's Messages API shape, its type by status as vLLM 0.33 maps them."""
    kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return JsonResult(status, {"type": "error", "error": {"type": kind, "message": message}})


def error_message(result: JsonResult) -> str:
    """The message of an OpenAI error body (vLLM's and ours), or the body itself."""
    body = result.body
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("message", str(body)) if isinstance(error, dict) else str(body)
