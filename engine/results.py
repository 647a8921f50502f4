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


def error_message(result: JsonResult) -> str:
    """The message of an OpenAI error body (vLLM's and ours), or the body itself."""
    body = result.body
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("message", str(body)) if isinstance(error, dict) else str(body)
