"""A multipart upload (an audio file for /v1/audio/...): read once, within its limit, and asked
for its `model` field without copying the file.

The body is refused by its Content-Length before it is read, and otherwise read into one buffer
that goes to vLLM as it is: aiohttp's `request.read()` would hold it twice while it is joined,
and parse the form into a copy. The field is found by python-multipart (the parser vLLM's own
application uses), fed slices of the buffer until the `model` part has ended, so an OpenAI
client's form, which puts its fields before the file, is parsed no further than its fields.
"""

from typing import Optional

from aiohttp import web
from python_multipart.multipart import MultipartParser, parse_options_header

from gthreadd.api.routing import RouteError

AUDIO_FILE_LIMIT = 25 * 2**20
"""OpenAI's limit on an audio file, and vLLM's by default (engine/compat.max_audio_file_bytes)."""

FORM_FIELDS_BYTES = 1 << 20
"""Room in an upload for the form's other fields (model, prompt, language...) beside the file."""

_SLICE = 1 << 20


async def read_upload(request: web.Request, file_limit: int) -> bytearray:
    """The whole body, or RouteError 413 once it is known to hold more than a file of
    `file_limit` bytes and the form's fields."""
    limit = file_limit + FORM_FIELDS_BYTES
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(file_limit)
    body = bytearray(length or 0)
    filled = 0
    async for chunk in request.content.iter_any():
        end = filled + len(chunk)
        if end > limit:
            raise _too_large(file_limit)
        if end <= len(body):
            body[filled:end] = chunk
        else:
            body[filled:] = chunk
        filled = end
    del body[filled:]
    return body


def _too_large(file_limit: int) -> RouteError:
    return RouteError(413, f"the upload is over the audio file limit of {file_limit / 2**20:g} MiB "
                           "(vLLM's VLLM_MAX_AUDIO_CLIP_FILESIZE_MB)", param="file")


def form_field(body: bytearray, content_type: str, name: str) -> Optional[str]:
    """The value of a multipart form's text field `name`, or None when the form has none;
    RouteError 400 when the body is no multipart form."""
    mime, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise RouteError(400, "the request body must be a multipart/form-data upload (a file and its fields)",
                         param=None)
    reader = _FieldReader(name.encode())
    parser = MultipartParser(boundary, callbacks=reader.callbacks())
    try:
        for start in range(0, len(body), _SLICE):
            parser.write(body[start:start + _SLICE])
            if reader.done:
                break
    except ValueError as exc:  # python-multipart's FormParserError and MultipartParseError
        raise RouteError(400, f"malformed multipart/form-data body: {exc}", param=None) from exc
    return reader.value.decode("utf-8", "replace") if reader.done else None


class _FieldReader:
    """python-multipart's callbacks, keeping the value of one field."""

    def __init__(self, name: bytes):
        self.name = name
        self.value = bytearray()
        self.done = False
        self._header = b""
        self._disposition = b""
        self._wanted = False

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
                "on_part_end": self._part_end}

    def _part_begin(self) -> None:
        self._header, self._disposition, self._wanted = b"", b"", False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition += data[start:end]

    def _header_end(self) -> None:
        self._header = b""

    def _headers_finished(self) -> None:
        self._wanted = not self.done and parse_options_header(self._disposition)[1].get(b"name") == self.name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._wanted:
            self.value += data[start:end]

    def _part_end(self) -> None:
        self.done = self.done or self._wanted
        self._wanted = False
