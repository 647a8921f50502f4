"""What the daemon needs of an engine. VllmEngine is the product's; tests may pass fakes."""

from typing import Optional, Protocol

from engine.api_app import ApiApp
from engine.config import EngineConfig
from engine.results import JsonResult


class EngineStartError(RuntimeError):
    """The engine's processes failed to start; the message is the root cause they logged."""


class Engine(Protocol):
    config: EngineConfig
    asleep_level: int
    """The level the engine sleeps at now, 0 when awake: 2 means its wake reads the weights again
    (a CUDA engine of a gthread model sleeps at 2 whatever it is asked)."""

    @property
    def running(self) -> bool: ...

    @property
    def max_concurrency(self) -> int:
        """Requests the engine runs at once (vLLM's max_num_seqs); 0 when not known."""

    @property
    def exit_cause(self) -> str:
        """Why an engine that was running stopped on its own (an exit code or a signal), or "" """

    async def start(self) -> None:
        """Raises EngineArgsError for bad arguments, EngineStartError with the root cause when the
        engine's processes fail."""

    async def stop(self) -> None: ...

    async def sleep(self, level: int = 1, keep: bool = False) -> None:
        """Free the engine's KV cache, and at level 2 its weights too. Requests still running are
        paused with `keep` (they resume at the next wake, their KV cache recomputed); without it
        there must be none. Asleep at level 1, a call at level 2 frees the weights."""

    async def wake(self) -> None: ...

    def processes(self) -> list[int]:
        """The pids of the engine's processes (EngineCore and its workers): what memory they hold is
        what the model costs."""

    @property
    def api(self) -> Optional[ApiApp]:
        """The engine's HTTP API (vLLM's own application) while it runs; None otherwise."""

    async def load_lora(self, name: str, path: str) -> JsonResult:
        """Load a LoRA adapter (a local directory) into the running engine under `name`."""

    async def unload_lora(self, name: str) -> JsonResult: ...

    def lora_adapters(self) -> dict[str, str]:
        """The adapters the engine holds now, name -> path (vLLM forgets them with the engine)."""
