"""FakeEngine: a test double for engine.interface.Engine, for the daemon's own logic.

It records what it was asked and can be told to fail or to take time; it never runs a model.
Every feature it stands in for is also tested through real vLLM engines in tests/e2e.
"""

import asyncio
import json

from engine.api_app import SERVED_PATHS, ApiApp
from engine.args import EngineArgsError
from engine.config import EngineConfig
from engine.results import JsonResult


class FakeEngine:
    def __init__(self, config: EngineConfig, *, fail_with: Exception | None = None, start_delay: float = 0,
                 reply_delay: float = 0, start_gate: asyncio.Event | None = None):
        self.config = config
        self._fail_with = fail_with
        self._start_delay = start_delay
        self._start_gate = start_gate
        self._reply_delay = reply_delay
        self.max_concurrency = 0
        """What it reports it runs at once (vLLM's max_num_seqs); 0: no limit."""
        self.is_running = False
        self.stopped = False
        self.asleep = False
        self.asleep_level = 0
        self.pids: list[int] = []
        self.died = ""
        self.adapters: dict[str, str] = {}
        self.received: list[tuple[str, str, dict, dict[str, str]]] = []
        """(method, vLLM path, JSON body, headers) of every call its API got."""
        self.aborted = 0
        """Slow requests whose client left before the answer."""
        self.stored_responses: set[str] = set()
        """Response ids its API has stored (vLLM's VLLM_ENABLE_RESPONSES_API_STORE)."""
        self.routes = frozenset({("POST", p) for p in SERVED_PATHS} | {("GET", p) for p in SERVED_PATHS})
        """What its API serves: every route vLLM may serve, unless a test says otherwise."""

    @property
    def running(self) -> bool:
        return self.is_running

    @property
    def exit_cause(self) -> str:
        return self.died

    def die(self, cause: str = "killed by SIGKILL") -> None:
        """What an EngineCore's death looks like from the daemon."""
        self.is_running, self.died = False, cause

    async def start(self) -> None:
        """Takes start_delay seconds, and waits for start_gate to open when one is given."""
        await asyncio.sleep(self._start_delay)
        if self._start_gate is not None:
            await self._start_gate.wait()
        if "--invalid" in self.config.extra_args:
            raise EngineArgsError("unrecognized arguments: --invalid")
        if self._fail_with is not None:
            raise self._fail_with
        self.is_running = True

    async def stop(self) -> None:
        self.is_running = False
        self.stopped = True

    async def sleep(self, level: int = 1, keep: bool = False) -> None:
        self.asleep, self.asleep_level = True, max(self.asleep_level, level)

    async def wake(self) -> None:
        self.asleep, self.asleep_level = False, 0

    def processes(self) -> list[int]:
        """None of its own; `pids` stands in when a test wants memory measured."""
        return self.pids

    @property
    def api(self) -> ApiApp | None:
        """A small ASGI app standing in for vLLM's: it answers every inference route, and a body with
        "slow" waits reply_delay seconds or until its client is gone, as vLLM's handlers listen."""
        if not self.is_running and not self.died:
            return None
        return ApiApp(self._asgi, None, self.routes)

    async def _asgi(self, scope, receive, send) -> None:
        raw = (await receive())["body"]
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if headers.get("content-type", "").startswith("multipart/"):
            body = {"upload": raw}  # an audio upload, kept as the engine was given it
        else:
            body = json.loads(raw) if raw else {}
        self.received.append((scope["method"], scope["path"], body, headers))
        if scope["path"].startswith("/v1/responses/"):
            found = scope["path"].split("/")[3] in self.stored_responses
            status, reply = (200, {"object": "response"}) if found else (404, {"error": {"code": 404}})
        elif scope["path"] == "/v1/models":
            status, reply = 200, {"object": "list", "data": [{"id": n} for n in self.config.served_model_names]}
        elif self.died:  # as vLLM answers when its EngineCore is gone (EngineDeadError)
            status, reply = 500, {"error": {"message": "EngineCore encountered an issue. See stack trace (above) "
                                                       "for the root cause.", "type": "InternalServerError",
                                            "code": 500}}
        else:
            if body.get("slow"):
                gone = asyncio.ensure_future(receive())
                await asyncio.wait({gone}, timeout=self._reply_delay)
                if gone.done():  # the client left: vLLM aborts, and its answer goes nowhere
                    self.aborted += 1
                    return
                gone.cancel()
            status, reply = 200, {"object": "chat.completion", "model": body.get("model"),
                                  "choices": [{"message": {"role": "assistant", "content": "fake"}}]}
        data = json.dumps(reply).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    async def load_lora(self, name: str, path: str) -> JsonResult:
        self.adapters[name] = path
        return JsonResult(200, {"message": f"Success: LoRA adapter '{name}' added successfully."})

    async def unload_lora(self, name: str) -> JsonResult:
        if self.adapters.pop(name, None) is None:
            return JsonResult(404, {"error": {"message": f"The lora adapter '{name}' cannot be found.",
                                              "type": "NotFoundError", "code": 404}})
        return JsonResult(200, {"message": f"Success: LoRA adapter '{name}' removed successfully."})

    def lora_adapters(self) -> dict[str, str]:
        return dict(self.adapters)
