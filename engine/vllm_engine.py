"""One model's vLLM engine: an `AsyncLLM` (its EngineCore in a child process) and vLLM's own API
application bound to it (engine/api_app.py).

Building an AsyncLLM blocks its calling thread for tens of seconds (process spawn, weight load,
KV-cache profiling), so it runs in a worker thread and the event loop keeps serving other models.
"""

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from typing import Any, Optional

from engine.args import build_args, records_stats
from engine.api_app import ApiApp, build_api
from engine.compat import (
    AsyncEngineArgs,
    AsyncLLM,
    ErrorResponse,
    LoadLoRAAdapterRequest,
    UnloadLoRAAdapterRequest,
    current_platform,
    engine_environment,
    forget_stopped_engines,
)
from engine import root_cause, vllm_settings
from engine.cpu_executor import run_model_in_engine_core
from engine.process_tree import descendants, kill_tree, process_tree, shared_memory_of, unlink_shared_memory
from engine.config import EngineConfig
from engine.interface import EngineStartError
from engine.metrics import EngineMetrics
from engine.results import JsonResult

log = logging.getLogger(__name__)


class EngineNotRunning(RuntimeError):
    pass


root_cause.install()


class VllmEngine:
    def __init__(self, config: EngineConfig, metrics: EngineMetrics | None = None):
        self.config = config
        self._metrics = metrics
        self._llm: AsyncLLM | None = None
        self._api: ApiApp | None = None
        self._processes: set[multiprocessing.process.BaseProcess] = set()
        self.asleep_level = 0
        """On the CPU a level-2 call deepens a level-1 sleep (engine/interface.py)."""
        self._paused = False
        """Requests were paused at its sleep (`keep`): its wake resumes vLLM's scheduler."""

    @property
    def running(self) -> bool:
        return self._llm is not None and not self._llm.errored

    @property
    def max_concurrency(self) -> int:
        return self._llm.vllm_config.scheduler_config.max_num_seqs if self._llm is not None else 0

    @property
    def exit_cause(self) -> str:
        for process in self._processes:
            code = process.exitcode
            if code is not None:
                how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                return f"the vLLM engine process {process.name} (pid {process.pid}) {how}"
        return "the vLLM engine stopped" if self._llm is not None and self._llm.errored else ""

    async def start(self) -> None:
        """Parse the arguments (EngineArgsError on bad extraArgs), then build the engine off-loop."""
        args = build_args(self.config)
        engine_args = AsyncEngineArgs.from_cli_args(args)
        async with _spawn_lock:
            before = set(multiprocessing.active_children())
            recording = self._metrics is not None and records_stats(self.config)
            loggers = [self._metrics.logger_factory(self.config.name)] if recording else []
            with root_cause.capturing() as cause:
                try:
                    llm = await asyncio.to_thread(_build, engine_args, self.config.devices, loggers)
                except asyncio.CancelledError:
                    # The daemon gave up on this boot (shutdown): the thread building the engine
                    # cannot be interrupted, but the processes it spawned can, and then it fails.
                    _kill(set(multiprocessing.active_children()) - before)
                    raise
                except Exception as exc:
                    if why := root_cause.read(cause):
                        raise EngineStartError(why) from exc
                    raise
                finally:
                    self._processes = set(multiprocessing.active_children()) - before
        self._llm = llm
        try:
            self._api = await build_api(llm, args)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop at once: vLLM's own shutdown aborts whatever is in flight (the daemon has drained
        or aborted it already), then gives the EngineCore a 5 s grace that an engine with workers
        overran on every stop (its workers take ~4 s to exit) before killing it anyway. A stop is
        on the path of the request that needs its memory, so the grace is 0: SIGTERM, then SIGKILL
        of the tree. The shared memory its processes alone held is unlinked once they are gone."""
        llm, self._llm, self._api = self._llm, None, None
        if llm is not None:
            processes, self._processes = self._processes, set()
            segments = _shared_memory_of(processes)
            await asyncio.to_thread(llm.shutdown, STOP_GRACE_S)
            # vLLM SIGKILLs the tree and returns without waiting for it: join it, or a daemon that
            # starts and stops engines for weeks collects zombies.
            await asyncio.to_thread(lambda: [p.join(timeout=30) for p in processes])
            unlink_shared_memory(segments)
            forget_stopped_engines()
            if self._metrics is not None:
                self._metrics.forget(self.config.name)

    async def sleep(self, level: int = 1, keep: bool = False) -> None:
        """With `keep`, vLLM's own pause ("keep") freezes the running requests and preempts them
        (their KV blocks freed, to be recomputed at the resume) before the KV cache goes."""
        llm = self._running()
        if current_platform.is_cpu():
            if not self.asleep_level:
                if keep:
                    await llm.pause_generation(mode="keep", clear_cache=True)
                    self._paused = True
                else:
                    await llm.reset_prefix_cache()  # the cached blocks are about to be freed
            await llm.collective_rpc("gthread_sleep", kwargs={"level": level})
            self.asleep_level = max(self.asleep_level, level)
            return
        if self.asleep_level:  # vLLM cannot deepen a CUDA sleep; nothing asks it to (no memory is held)
            return
        # A gthread model reloads its weights from the host tier: level 2, never a second copy in
        # the engine's own RAM as level 1 keeps.
        level = 2 if self.config.load_format == "gthread" else level
        if self._keeps_offloaded_kv:
            # vLLM's sleep would clear the KV connector's host copies too (engine/offload_sleep.py).
            await llm.pause_generation(mode="keep" if keep else "abort", clear_cache=False)
            await llm.reset_prefix_cache(reset_running_requests=True, reset_connector=False)
            await llm.collective_rpc("gthread_sleep_keeping_offload", kwargs={"level": level})
        else:
            if not keep:  # a "keep" pause resets the caches itself, after the requests are frozen
                await llm.reset_prefix_cache()
            await llm.sleep(level=level, mode="keep" if keep else "abort")  # its wake_up resumes
        self.asleep_level = level

    async def wake(self) -> None:
        """Wake the engine, and log what each step of the wake took: that is where a wake's time
        goes, and what bench/wake_latency.py sets against the copy of the same bytes."""
        llm = self._running()
        if self._keeps_offloaded_kv:  # the workers slept without vLLM's engine knowing: wake them alike
            def wake_up(tags: Optional[list[str]] = None):
                return llm.collective_rpc("wake_up", kwargs={"tags": tags})
        else:
            wake_up = llm.wake_up
        if current_platform.is_cpu():
            # level 2 reloads through the model's loader; level 1 has nothing to rebuild
            name = "reload" if self.asleep_level >= 2 else "level 1"
            steps = [(name, lambda: llm.collective_rpc("gthread_wake"))]
            if self._paused:
                steps.append(("resume", llm.resume_generation))
        elif self.asleep_level == 2:
            steps = [
                ("allocate weights", lambda: wake_up(tags=["weights"])),
                ("reload weights", lambda: llm.collective_rpc("reload_weights")),  # host tier or checkpoint
                ("allocate kv cache", lambda: wake_up(tags=["kv_cache"])),
            ]
        else:
            steps = [("wake_up", wake_up)]  # vLLM copies its CPU copy of the weights back
        if self._keeps_offloaded_kv:
            steps.append(("resume", llm.resume_generation))
        timings = []
        for name, step in steps:
            started = time.perf_counter()
            await step()
            timings.append(f"{name} {time.perf_counter() - started:.3f}s")
        self.asleep_level, self._paused = 0, False
        log.info("%s woke: %s", self.config.name, ", ".join(timings))

    @property
    def _keeps_offloaded_kv(self) -> bool:
        return bool(self.config.kv_offload_bytes) and not current_platform.is_cpu()

    def processes(self) -> list[int]:
        return [pid for process in self._processes if process.is_alive()
                for pid in (process.pid, *descendants(process.pid))]

    def _running(self) -> AsyncLLM:
        if self._llm is None:
            raise EngineNotRunning(f"engine for {self.config.name} is not running")
        return self._llm

    @property
    def api(self) -> ApiApp | None:
        return self._api

    def _serving(self, attribute: str) -> Any:
        if self._api is None:
            raise EngineNotRunning(f"engine for {self.config.name} is not running")
        return getattr(self._api.state, attribute, None)

    async def load_lora(self, name: str, path: str) -> JsonResult:
        models = self._serving("openai_serving_models")
        result = await models.load_lora_adapter(LoadLoRAAdapterRequest(lora_name=name, lora_path=path))
        if isinstance(result, ErrorResponse):
            return JsonResult(result.error.code, result.model_dump())
        return JsonResult(200, {"message": result})

    async def unload_lora(self, name: str) -> JsonResult:
        models = self._serving("openai_serving_models")
        result = await models.unload_lora_adapter(UnloadLoRAAdapterRequest(lora_name=name))
        if isinstance(result, ErrorResponse):
            return JsonResult(result.error.code, result.model_dump())
        return JsonResult(200, {"message": result})

    def lora_adapters(self) -> dict[str, str]:
        models = self._serving("openai_serving_models")
        return {name: request.lora_path for name, request in models.lora_requests.items()}


STOP_GRACE_S = 0.0
"""What vLLM's shutdown gives the EngineCore before it kills the process tree (engine.stop)."""

_spawn_lock = asyncio.Lock()
"""Engines are built one at a time: each takes its devices from the environment it is spawned in."""


def _build(engine_args: AsyncEngineArgs, devices: tuple[int, ...], stat_loggers: list) -> AsyncLLM:
    environment = engine_environment()
    if devices:
        environment["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
    with vllm_settings.read_afresh(), _environment(environment):
        vllm_config = engine_args.create_engine_config()
        run_model_in_engine_core(vllm_config, asked=engine_args.distributed_executor_backend)
        return AsyncLLM.from_vllm_config(vllm_config, stat_loggers=stat_loggers,
                                         enable_log_requests=engine_args.enable_log_requests,
                                         disable_log_stats=engine_args.disable_log_stats)


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """Set variables for the engine processes spawned inside (they copy the environment at
    spawn), and put the daemon's own back afterwards."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def _kill(processes: set[multiprocessing.process.BaseProcess]) -> None:
    """SIGKILL each process and everything it started, reap them, and unlink the shared memory
    that was theirs alone."""
    segments = _shared_memory_of(processes)
    for process in processes:
        kill_tree(process.pid)
    for process in processes:
        process.join(timeout=10)
    unlink_shared_memory(segments)


def _shared_memory_of(processes: set[multiprocessing.process.BaseProcess]):
    """The shared memory of the engine's processes (EngineCore and its workers) and no other's."""
    return shared_memory_of(p.pid for root in processes for p in process_tree(root.pid))
