"""One Model from models.d: its spec, the engines of its replicas, and what users see of it.

The scheduler decides when a replica's engine boots, sleeps, wakes or stops (scheduler/), and the
effects layer (scheduling.py) calls the operations here. This object owns the user-facing phase
and conditions, and turns engine errors into reasons: a failure that retrying cannot fix (bad
extraArgs, no checkpoint) is a PermanentFailure; anything else is retried with backoff.
"""

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from conversion.converter import ConversionError, convert
from conversion.resolve import SourceError, resolve_source
from engine.args import EngineArgsError
from engine.config import EngineConfig
from engine.interface import Engine, EngineStartError
from engine.results import error_message
from gthreadd.spec.conversion_key import conversion_key
from memory.store_format import ChecksumError, Manifest, converted, corruption, mark_corrupt
from gthreadd.spec.desired import DesiredModel
from gthreadd.spec.engine_config import (engine_config_for, extra_args_error, kv_cache_bytes, needs_restart,
                                         served_names, unservable)
from gthreadd.runtime.lifecycle import PHASE_TRANSITIONS, check
from gthreadd.runtime.lora import AdapterError, AdapterFile, check_adapter, fetch_adapter
from gthreadd.spec.manifests import ManifestError
from gthreadd.runtime.model_events import EventLog
from gthreadd.spec.resource import Condition, ConversionStatus, LoadFormat, ModelResource, Phase
from gthreadd.runtime.unit_ops import PermanentFailure
from memory.host_tier import HostTier
from memory import kvikio_reader
from memory.read_path import ReadPath, on_miss, read_path

log = logging.getLogger(__name__)

EngineFactory = Callable[[EngineConfig], Engine]
# Condition reasons that are also Warning events for `gthread describe`.
WARNING_REASONS = frozenset({"SourceUnavailable", "InvalidExtraArgs", "EngineStartFailed", "WakeFailed",
                             "ConversionFailed", "CorruptWeights", "InvalidManifest", "Unschedulable"})


class ServedModel:
    def __init__(self, desired: DesiredModel, engine_factory: EngineFactory, store: Path = Path("/nonexistent"),
                 host_tier: Optional[HostTier] = None, adapter_file: Optional[AdapterFile] = None):
        self.resource: ModelResource = desired.resource
        self.source: str = desired.source
        self.phase = Phase.pending
        self.generation = 0
        self.engines: dict[int, Engine] = {}
        self.conditions: dict[str, Condition] = {}
        self._engine_factory = engine_factory
        self._store = store
        self._checkpoint: Optional[Path] = None
        self._weights: Optional[Path] = None
        self._host_tier = host_tier
        self._tier_owner = f"{self.name}@{id(self):x}"  # a re-added Model of the same name is another owner
        self.conversion: Optional[ConversionStatus] = None
        self._progress = 0.0
        self.events = EventLog()
        self._on_miss = ReadPath.disk
        self._weights_bytes = 0
        """Size of a gthread model's converted weights (0 for other formats): what each load reads."""
        self.read_path: Optional[ReadPath] = None
        """Where the last load of a gthread model read its weights from (memory/read_path.py)."""
        self.last_read: Optional[tuple[ReadPath, int]] = None
        self.bytes_read: dict[str, int] = {}
        self.kv_cache_grants: dict[int, int] = {}
        """Replica -> host memory its engine was granted for offloaded KV blocks (spec.kvCache)."""
        self.adapters: dict[str, str] = {}
        """LoRA adapters loaded at run time, name -> directory: loaded again into every new engine."""
        self._adapter_file = adapter_file
        self._adapters_recalled = adapter_file is None
        self.measured_memory: dict[int, int] = {}
        """Bytes the engine held per device when last awake, as the driver (or the OS) counts them."""
        self._set_condition("Ready", "False", "Pending", "waiting for a device")

    @property
    def name(self) -> str:
        return self.resource.metadata.name

    @property
    def ready_condition(self) -> Condition:
        return self.conditions["Ready"]

    def update(self, desired: DesiredModel) -> None:
        """Take a new version of the spec; a new generation when its engines must be replaced."""
        restart = needs_restart(self.resource, desired.resource) or self.phase == Phase.failed
        changed = desired.resource != self.resource
        self.resource, self.source = desired.resource, desired.source
        if self._host_tier is not None:
            self._host_tier.set_pinned(self._tier_owner, self.resource.spec.staging.pinned)
        if changed and restart:
            log.info("model %s: spec changed, its engines restart", self.name)
            self.generation += 1
            self._checkpoint = None
            if self.phase != Phase.pending:
                self.set_phase(Phase.pending)
            self._set_condition("Ready", "False", "Restarting", "the spec changed; new engines start")
        elif changed:
            log.info("model %s: spec changed, applied without restart", self.name)

    def check_engine_args(self) -> str:
        """Run extraArgs through vLLM's parser now, not when a device frees up: a model that can
        never start fails at once, with the parser's message. Returns the reason, or ""."""
        if not (why := extra_args_error(self.resource)):
            return ""
        if self.phase != Phase.failed:
            self._failed("InvalidExtraArgs", why)
        return f"InvalidExtraArgs: {why}"

    def set_config_errors(self, errors: tuple[ManifestError, ...]) -> None:
        if errors:
            self._set_condition("ConfigValid", "False", "InvalidManifest",
                                "; ".join(str(e) for e in errors) + " (the last good version stays in force)")
        else:
            self._set_condition("ConfigValid", "True", "Valid", "")

    def note_waiting(self, reason: str) -> None:
        if self.phase == Phase.pending and reason:
            self._set_condition("Ready", "False", "Unschedulable", reason)

    # -- operations for the scheduler's effects layer --------------------------------------------
    @property
    def conversion_status(self) -> Optional[ConversionStatus]:
        if self.conversion is not None and self.conversion.status == "Running":
            return self.conversion.model_copy(update={"progress": round(self._progress, 3)})
        return self.conversion

    async def boot(self, replica: int, devices: tuple[int, ...], on_gpu: bool = False,
                   memory_scale: float = 1.0) -> None:
        await self.stop(replica)  # a dead engine, when this boot is a retry
        if why := unservable(self.resource):
            raise self._failed("UnsupportedModelType", why)
        first = self.phase in (Phase.pending, Phase.failed)
        if self.phase == Phase.failed:
            self.set_phase(Phase.pending)
        if first:
            self._set_condition("Ready", "False", "Resolving", f"resolving {self.resource.spec.model_name}")
        try:
            if self._checkpoint is None:
                self._checkpoint = await asyncio.to_thread(
                    resolve_source, self.resource.spec.model_name, self.resource.spec.revision)
        except SourceError as exc:
            raise self._failed("SourceUnavailable", str(exc)) from None
        weights = self._checkpoint
        if self.resource.spec.load_format == LoadFormat.gthread:
            weights = await self._converted(self._checkpoint)
        if self.phase in (Phase.pending, Phase.converting):
            self.set_phase(Phase.staging)
        self._weights = weights
        host_tier = str(self._host_tier.directory) if self._host_tier is not None else ""
        self._on_miss, self._weights_bytes = ReadPath.disk, 0
        if self.resource.spec.load_format == LoadFormat.gthread:
            manifest = Manifest.read(weights)  # once per boot; every later load moves the same bytes
            self._on_miss = on_miss(on_gpu, kvikio_reader.installed(), bool(manifest.chunk_sum16))
            self._weights_bytes = manifest.total_bytes
        kv_offload = self.kv_cache_grants[replica] = self._reserve_kv_cache(replica, on_gpu)
        engine = self._engine_factory(
            engine_config_for(self.resource, weights, devices, host_tier, self._on_miss, kv_offload, memory_scale))
        if first:
            self._set_condition("Ready", "False", "EngineStarting", "starting the vLLM engine")
        try:
            async with self._loading(reconvert_from=self._checkpoint) as staged:
                await engine.start()
                self._read(staged)
        except EngineArgsError as exc:
            self._release_kv_cache(replica)
            raise self._failed("InvalidExtraArgs", str(exc)) from None
        except Exception as exc:
            self._release_kv_cache(replica)
            why = str(exc) if isinstance(exc, EngineStartError) else f"{type(exc).__name__}: {exc}"
            if why.startswith(f"{ChecksumError.__name__}:") and self.resource.spec.load_format == LoadFormat.gthread:
                # The engine read a corrupt chunk of the converted copy: the daemon, which owns the
                # store, takes it out of use, so the retry converts again.
                mark_corrupt(weights, why)
            self._set_condition("Ready", "False", "EngineStartFailed", f"{why}; retrying")
            raise
        self.engines[replica] = engine
        await self._restore_adapters(engine)
        if self.phase != Phase.ready:
            self.set_phase(Phase.ready)
        self._set_condition("Ready", "True", "Ready", "")

    def _reserve_kv_cache(self, replica: int, on_gpu: bool) -> int:
        """The host memory this replica's engine may pin for offloaded KV blocks, taken from the
        host tier's budget (the daemon's ledger of pinned RAM) before the engine starts."""
        wanted = kv_cache_bytes(self.resource)
        if not wanted:
            return 0
        if not on_gpu:
            self.events.add("Warning", "KVCacheUnsupported", "spec.kvCache has no effect on the CPU: vLLM's KV "
                            "offloading runs on CUDA and XPU devices only")
            return 0
        if self._host_tier is None:
            return wanted
        if not self._host_tier.reserve(self._kv_holder(replica), wanted):
            self.events.add("Warning", "KVCacheNoRoom", f"spec.kvCache.maxSize ({wanted / 2**30:.2f} GiB) does not "
                            f"fit the host memory budget (hostTierSize {self._host_tier.budget / 2**30:.2f} GiB, "
                            f"the rest pinned, leased or reserved); replica {replica} runs without KV offloading")
            return 0
        return wanted

    def _release_kv_cache(self, replica: int) -> None:
        self.kv_cache_grants.pop(replica, None)
        if self._host_tier is not None:
            self._host_tier.unreserve(self._kv_holder(replica))

    def _kv_holder(self, replica: int) -> str:
        return f"{self._tier_owner}/kv-cache/{replica}"

    def note_awake(self) -> None:
        """A wake succeeded: clear the reason a failed one left."""
        if self.phase == Phase.ready:
            self._set_condition("Ready", "True", "Ready", "")

    async def _converted(self, checkpoint: Path) -> Path:
        """The model in the gthread format, converting it first if the store lacks it (or holds a
        copy the loader found corrupt)."""
        key = conversion_key(self.resource, checkpoint)
        if (done := converted(self._store, key)) is not None:
            return done
        if reason := corruption(self._store, key):
            log.error("model %s: converted weights were corrupt (%s); converting again", self.name, reason)
            self._set_condition("Ready", "False", "CorruptWeights", f"{reason}; converting again")
        if self.phase == Phase.pending:
            self.set_phase(Phase.converting)
        self.conversion, self._progress = ConversionStatus(status="Running", progress=0.0), 0.0
        source = {"modelName": self.resource.spec.model_name, "revision": self.resource.spec.revision,
                  "checkpoint": str(checkpoint)}
        cancelled = threading.Event()

        def progress(done: float) -> None:
            """Called from the conversion thread (a float store is atomic); raising is how a
            cancelled conversion (shutdown) stops: the converter removes its partial output."""
            if cancelled.is_set():
                raise ConversionError("cancelled")
            self._progress = done

        try:
            path = await asyncio.to_thread(convert, checkpoint, self._store, key, source,
                                           self.resource.spec.dtype.value, progress)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        except (ConversionError, OSError) as exc:  # OSError: the store's disk filled up midway
            self.conversion = ConversionStatus(status="Failed")
            self._set_condition("Ready", "False", "ConversionFailed", f"{exc}; retrying")
            raise
        total = Manifest.read(path).total_bytes
        self.conversion = ConversionStatus(status="Complete", total_size_bytes=total, progress=1.0)
        log.info("model %s: converted to %s (%d bytes)", self.name, path, total)
        return path

    async def _stage(self, weights: Path) -> bool:
        """Whether the weights are resident (and leased)."""
        pinned = self.resource.spec.staging.pinned
        return await asyncio.to_thread(self._host_tier.stage, self._tier_owner, weights, pinned) is not None

    @contextlib.asynccontextmanager
    async def _loading(self, reconvert_from: Optional[Path] = None):
        """Stage the converted model in the host tier (again, if it was evicted) and hold it while
        an engine loads from it, so it is not evicted mid-load. Staging verifies every chunk: a
        corrupt copy is taken out of use and, at a boot, converted again before any engine sees it."""
        weights = self._weights
        if self._host_tier is None or self.resource.spec.load_format != LoadFormat.gthread or weights is None:
            yield False
            return
        try:
            staged = await self._stage(weights)
        except ChecksumError as exc:
            mark_corrupt(weights, str(exc))
            if reconvert_from is None:
                raise
            await self._converted(reconvert_from)
            staged = await self._stage(weights)
        try:
            yield staged
        finally:
            if staged:
                self._host_tier.release(weights)

    def _read(self, staged: bool) -> None:
        """Account a load of a gthread model's weights to the tier it was read from."""
        if not self._weights_bytes:
            return
        path = read_path(staged, self._on_miss)
        self.read_path, self.last_read = path, (path, self._weights_bytes)
        self.bytes_read[path] = self.bytes_read.get(path, 0) + self._weights_bytes

    @property
    def weights_on_host(self) -> bool:
        """Resolved (and converted, for loadFormat gthread) on this host."""
        return self._weights is not None

    @property
    def staging_tier(self) -> str:
        if self._host_tier is None or self.resource.spec.load_format != LoadFormat.gthread:
            return "disk"
        return self._host_tier.tier(self._tier_owner)

    def forget_staged(self) -> None:
        """The Model is gone: its host-tier copy may be freed."""
        if self._host_tier is not None:
            self._host_tier.forget(self._tier_owner)

    def wake_reloads(self, replica: int) -> bool:
        """Whether waking the replica reads its weights again (it sleeps at level 2)."""
        return self.engines[replica].asleep_level >= 2

    async def wake(self, replica: int) -> None:
        reloads = self.wake_reloads(replica)
        try:
            async with self._loading() if reloads else contextlib.nullcontext(False) as staged:
                await self.engines[replica].wake()
                if reloads:
                    self._read(staged)  # the wake read the weights again: from the host tier, or the disk
            await self._restore_adapters(self.engines[replica])
        except Exception as exc:
            self._set_condition("Ready", "False", "WakeFailed", f"{type(exc).__name__}: {exc}; retrying")
            raise

    async def load_adapter(self, name: str, source: str) -> str:
        """Load a LoRA adapter into every running engine and remember it; AdapterError says why not."""
        lora = self.resource.spec.lora
        if not lora.enabled:
            raise AdapterError(400, f"model {self.name} was not started for LoRA: set spec.lora.enabled")
        if name in served_names(self.resource):
            raise AdapterError(400, f"LoRA adapter name {name!r} is model {self.name}'s own name")
        path = await fetch_adapter(source, lora.cache_dir, lora.download_timeout.total_seconds())
        check_adapter(path, lora.max_rank)
        for engine in self.engines.values():
            result = await engine.load_lora(name, str(path))
            if result.status != 200:
                raise AdapterError(result.status, error_message(result))
        self.adapters[name] = str(path)
        self._remember_adapters()
        self.events.add("Normal", "AdapterLoaded", f"LoRA adapter {name} from {path}")
        return f"LoRA adapter {name} loaded into model {self.name} from {path}"

    async def unload_adapter(self, name: str) -> str:
        if self.adapters.pop(name, None) is None:
            raise AdapterError(404, f"model {self.name} has no LoRA adapter {name!r}")
        self._remember_adapters()
        for engine in self.engines.values():
            if name in engine.lora_adapters():
                await engine.unload_lora(name)
        self.events.add("Normal", "AdapterUnloaded", f"LoRA adapter {name}")
        return f"LoRA adapter {name} unloaded from model {self.name}"

    async def _restore_adapters(self, engine: Engine) -> None:
        """vLLM's runtime adapters do not outlive an engine (or, on the CPU, a wake): load again
        what the Model remembers (its file, at the first boot after a daemon restart). One that no
        longer loads is dropped with a Warning event."""
        if not self._adapters_recalled:
            self._adapters_recalled = True
            self.adapters = self._adapter_file.read() | self.adapters
        if self.adapters and not self.resource.spec.lora.enabled:
            self.events.add("Warning", "AdapterLost", f"LoRA adapters {', '.join(sorted(self.adapters))} are "
                            f"dropped: spec.lora.enabled is off")
            self.adapters.clear()
        for name, path in list(self.adapters.items()):
            if name in engine.lora_adapters():
                continue
            result = await engine.load_lora(name, path)
            if result.status != 200:
                del self.adapters[name]
                self.events.add("Warning", "AdapterLost",
                                f"LoRA adapter {name} from {path} no longer loads: {error_message(result)}")
        self._remember_adapters()

    def _remember_adapters(self) -> None:
        if self._adapter_file is not None and self._adapters_recalled:
            self._adapter_file.write(self.adapters)

    def forget_adapters(self) -> None:
        """The Model was deleted: a Model of the same name added later starts without adapters."""
        self.adapters.clear()
        if self._adapter_file is not None:
            self._adapter_file.remove()

    async def sleep(self, replica: int, level: int = 1, keep: bool = False) -> None:
        await self.engines[replica].sleep(level, keep)

    async def stop(self, replica: int) -> None:
        engine = self.engines.pop(replica, None)
        if engine is not None:
            await engine.stop()
        self._release_kv_cache(replica)

    def give_up(self, message: str) -> None:
        """Failed until an edit: the scheduler stopped retrying (its engine keeps dying)."""
        self._failed("CrashLoop", message)

    def _failed(self, reason: str, message: str) -> PermanentFailure:
        self.set_phase(Phase.failed)
        self._set_condition("Ready", "False", reason, message)
        log.error("model %s: %s: %s", self.name, reason, message)
        return PermanentFailure(f"{reason}: {message}")

    def set_phase(self, phase: Phase) -> None:
        check(PHASE_TRANSITIONS, self.phase, phase)
        if phase != self.phase:
            log.info("model %s: phase %s -> %s", self.name, self.phase.value, phase.value)
            self.events.add("Warning" if phase == Phase.failed else "Normal", phase.value,
                            f"phase {self.phase.value} -> {phase.value}")
            self.phase = phase

    def _set_condition(self, type_: str, status: str, reason: str, message: str) -> None:
        old = self.conditions.get(type_)
        if old is not None and (old.status, old.reason, old.message) == (status, reason, message):
            return
        changed = old is None or old.status != status
        if reason in WARNING_REASONS:
            self.events.add("Warning", reason, message)
        self.conditions[type_] = Condition(
            type=type_, status=status, reason=reason, message=message,
            last_transition_time=datetime.now(timezone.utc) if changed else old.last_transition_time,
        )
