"""One aiohttp request handed to an ASGI application in-process: how the daemon calls each engine's
own vLLM API app (its FastAPI app, built by vLLM's `build_app`).

Written here rather than taken from aiohttp-asgi: its `receive` returns at once forever and never
reports a disconnect, and vLLM's handlers listen on `receive` for the client leaving (their
`with_cancellation` and Starlette's StreamingResponse), so that loop would spin and hold the event
loop. The contract this one keeps:
- `receive` gives the whole body once, then waits until the call is over or the client is gone,
  and then says `http.disconnect` to every caller: vLLM aborts the generation itself.
- When the daemon's handler is cancelled (the client left, or the scheduler aborted the request),
  the app is told the client is gone and given `ABORT_GRACE_S` to finish, rather than cancelled
  from outside, which would leave vLLM's inner handler task running the generation to the end.
- ASGI spec version 2.3, so Starlette's StreamingResponse listens for the disconnect.
- A write to a client that has gone ends the call quietly; so does an exception the app raises
  after it has answered (Starlette's error middleware re-raises after sending its 500).
- A client that closes as soon as it has read a stream's last event (openai's client does, after
  `data: [DONE]`) has had the whole answer, though its handler is cancelled before the app's
  closing message arrives. So the app's next message decides: the end of the body (the call is
  complete, not abandoned), or more of it (the client left early: the app is told).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Optional

from aiohttp import web

log = logging.getLogger(__name__)

ABORT_GRACE_S = 10.0
"""How long an app may take to wind down after its client is gone, before it is cancelled."""

LAST_WORD_S = 1.0
"""How long a client that is gone waits for the app's next message, which tells whether it had
read the whole answer: an app ends a body it has finished at once, one still generating sends
its next token within a step."""

_winding_down: set[asyncio.Task] = set()
"""Apps still finishing after their response was complete (kept referenced until they end)."""

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class AsgiCall:
    """One call. `accept(status)` is asked before anything is sent: False keeps the app's answer
    from the client (the daemon answers instead, e.g. a 503 for a dead engine); `on_first_body` is
    told when the first chunk of the body has been written (a stream's time to first token), and
    `on_chunk` when any has (a stream's progress)."""

    def __init__(self, app: ASGIApp, request: web.Request, path: str, body: bytes | bytearray,
                 headers: list[tuple[bytes, bytes]], accept: Callable[[int], bool] = lambda status: True,
                 on_first_body: Callable[[web.StreamResponse], None] = lambda response: None,
                 on_chunk: Callable[[], None] = lambda: None):
        self.app = app
        self.request = request
        self.path = path
        self.body = body
        self.headers = headers
        self.accept = accept
        self.on_first_body = on_first_body
        self.on_chunk = on_chunk
        self.status: Optional[int] = None
        """The app's status, whether or not it was accepted."""
        self.response: Optional[web.StreamResponse] = None
        """What was sent to the client, once the app began answering (None if it was refused)."""
        self._over = asyncio.Event()
        """The call is over for the app: the response is complete, or the client is gone."""
        self._complete: Optional[asyncio.Future[None]] = None
        """Resolved when the app has sent the whole response (a future, not an event: waiting on
        it needs no task of its own)."""
        self._body_sent = False
        self._written = False
        self._last_word: Optional[asyncio.Future[bool]] = None
        """Set once the client is gone: resolved by the app's next message (True: its body ended)."""

    async def run(self) -> Optional[web.StreamResponse]:
        """Call the app; the response sent, or None when the app's answer was refused. Returns as
        soon as the response is complete: the app winds down by itself (its handlers see the
        disconnect that follows), and a client that closes its connection at once is not counted
        as one that left early."""
        self._complete = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(self.app(self._scope(), self._receive, self._send))
        try:
            await asyncio.wait({task, self._complete}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            if not await self._had_it_all(task):
                self._over.set()  # the app sees the client gone, and aborts its work itself
                await asyncio.wait({task}, timeout=ABORT_GRACE_S)
                if not task.done():
                    task.cancel()
                raise
            asyncio.current_task().uncancel()
        finally:
            self._over.set()
        if not task.done():
            _winding_down.add(task)
            task.add_done_callback(self._wound_down)
        elif (error := task.exception()) is not None:
            if self.response is None and self.status is None:
                raise error  # it failed before answering: the daemon answers
            self._log(error)
        return self.response

    async def _had_it_all(self, task: asyncio.Task) -> bool:
        """The client is gone: had it been sent the whole answer? The app's next message says."""
        if self.response is None or self._complete.done():
            return self._complete.done()
        self._last_word = asyncio.get_running_loop().create_future()
        await asyncio.wait({task, self._last_word}, timeout=LAST_WORD_S)
        return self._last_word.done() and self._last_word.result()

    def _wound_down(self, task: asyncio.Task) -> None:
        _winding_down.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._log(error)

    def _log(self, error: BaseException) -> None:
        log.error("the engine's API raised after answering %s %s", self.request.method, self.path, exc_info=error)

    def _scope(self) -> dict[str, Any]:
        request = self.request
        server = request.transport.get_extra_info("sockname") if request.transport is not None else None
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": f"{request.version.major}.{request.version.minor}",
            "method": request.method,
            "scheme": request.scheme,
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "query_string": request.query_string.encode(),
            "headers": self.headers,
            "client": (request.remote or "", 0),
            "server": tuple(server[:2]) if server else None,
            "state": {},
        }

    async def _receive(self) -> dict:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self._over.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict) -> None:
        """A stream's body chunks are most of the calls: they are tested for first."""
        kind = message["type"]
        try:
            if kind == "http.response.body":
                if self._last_word is not None:
                    if not self._last_word.done():
                        self._last_word.set_result(not message.get("more_body", False))
                elif self.response is not None and not self._over.is_set():
                    if chunk := message.get("body", b""):
                        await self.response.write(chunk)
                        if not self._written:
                            self._written = True
                            self.on_first_body(self.response)
                        self.on_chunk()
                    if not message.get("more_body", False):
                        await self.response.write_eof()
                        self._complete.set_result(None)
                        self._over.set()
            elif kind == "http.response.start":
                if self._over.is_set() and self.response is None:
                    return  # the client is gone before anything was sent
                self.status = message["status"]
                if not self.accept(self.status):
                    return
                response = web.StreamResponse(status=self.status)
                for name, value in message.get("headers", ()):
                    key = name.decode("latin-1").lower()
                    if key == "content-length":
                        response.content_length = int(value)
                    elif key not in ("transfer-encoding", "connection"):
                        response.headers.add(key, value.decode("latin-1"))
                await response.prepare(self.request)
                self.response = response
        except (ConnectionResetError, ConnectionError):
            self._over.set()  # the client is gone: the app hears it from receive
