"""The set of served models, brought in line with each new desired state, and the engine
operations the scheduler asks for (Fleet is the scheduler loop's UnitOps).

Adds and edits become ModelUpserted events (a new generation when engines must restart),
deletes become ModelRemoved; the scheduler then boots, stops, sleeps and wakes engines. A
removed model is kept until its engines are stopped, so its memory is really freed.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Optional

from engine.interface import Engine

from gthreadd.spec.desired import DesiredState
from gthreadd.spec.engine_config import served_names
from gthreadd.runtime import heap
from gthreadd.runtime.devices import memory_held, peak_resident, private_memory
from gthreadd.observe.metrics import Metrics
from gthreadd.observe.model_logs import ModelLogs
from gthreadd.spec.policy import policy_for
from gthreadd.runtime.lora import AdapterFile
from gthreadd.runtime.operation_log import OperationLog
from gthreadd.runtime.served_model import EngineFactory, ServedModel
from gthreadd.runtime.unit_ops import Footprint
from memory.host_tier import HostTier
from scheduler.inventory import Device
from scheduler.messages import Event, ModelRemoved, ModelUpserted
from scheduler.units import UnitId

log = logging.getLogger(__name__)
_EVENT_REASONS = {"boot": "Started", "wake": "Woke", "sleep": "Slept", "stop": "Stopped"}


def _why(reason: str) -> str:
    """The scheduler's reason for a boot or wake, in its event: an operator reading `describe`
    sees a model woken ahead of its traffic (a pre-wake) told apart from one a request woke."""
    return f" ({reason})" if reason else ""


class Fleet:
    def __init__(self, engine_factory: EngineFactory, devices: list[Device], submit: Callable[[Event], None],
                 store: Path, host_tier: Optional[HostTier] = None, metrics: Optional[Metrics] = None,
                 lora_dir: Optional[Path] = None, model_logs: Optional[ModelLogs] = None):
        self.models: dict[str, ServedModel] = {}
        self.desired = DesiredState()
        self.devices = devices
        self._retired: dict[str, ServedModel] = {}
        self._engine_factory = engine_factory
        self._submit = submit
        self._store = store
        self._host_tier = host_tier
        self._metrics = metrics or Metrics()
        self._lora_dir = lora_dir
        """Where each Model's loaded LoRA adapters are remembered across daemon restarts."""
        self.model_logs = model_logs or ModelLogs()
        self.operations = OperationLog()

    def apply(self, desired: DesiredState) -> None:
        """Bring the models in line with `desired`. Errors are logged when they appear, not on
        every rescan."""
        for error in set(desired.errors) - set(self.desired.errors):
            log.error("models.d: %s", error)
        self.desired = desired
        for name in [n for n in self.models if n not in desired.models]:
            log.info("model %s: removed", name)
            self._retired[name] = self.models.pop(name)
            self._retired[name].forget_adapters()
            self.model_logs.forget(name)
            self._submit(ModelRemoved(name))
        for name, wanted in desired.models.items():
            model = self.models.get(name)
            if model is None:
                log.info("model %s: added from %s", name, wanted.source)
                adapter_file = AdapterFile(self._lora_dir / f"{name}.json") if self._lora_dir else None
                model = self.models[name] = ServedModel(wanted, self._engine_factory, self._store, self._host_tier,
                                                        adapter_file)
                self._upsert(model)
            elif wanted.resource != model.resource or wanted.source != model.source:
                model.update(wanted)
                self._upsert(model)
            model.set_config_errors(desired.errors_for(wanted.source))

    def _upsert(self, model: ServedModel) -> None:
        """A Model added or edited: tell the scheduler, and its log lines which name its engines use."""
        self.model_logs.serves(model.name, served_names(model.resource)[0])
        policy = policy_for(model.resource, self.devices)
        if invalid := model.check_engine_args():
            policy = replace(policy, unschedulable_reason=invalid)
        model.note_waiting(policy.unschedulable_reason)
        self._submit(ModelUpserted(model.name, policy, model.resource.spec.replicas, model.generation))

    def engine(self, unit: UnitId) -> Optional[Engine]:
        """The unit's engine, where requests and supervision find it; None when it has none."""
        model = self.models.get(unit.model) or self._retired.get(unit.model)
        return model.engines.get(unit.replica) if model is not None else None

    def any_engine(self, model: str) -> Optional[Engine]:
        """One of the model's engines, for what any replica can answer (its model listing)."""
        served = self.models.get(model)
        return next(iter(served.engines.values()), None) if served is not None else None

    def _model(self, unit: UnitId) -> ServedModel:
        return self.models.get(unit.model) or self._retired[unit.model]

    async def boot(self, unit: UnitId, devices: tuple[int, ...], reason: str = "") -> Footprint:
        model = self._model(unit)
        cpu = {d.index for d in self.devices if d.is_cpu}
        gpus = [str(i) for i in devices if i not in cpu]
        on = f"GPU {', '.join(gpus)}" if gpus else "the CPU"
        done = f"replica {unit.replica}: vLLM engine started on {on}{_why(reason)}"
        scale = min((d.engine_scale for d in self.devices if d.index in devices), default=1.0)
        async with self._operation(model, unit, "boot", done):
            await model.boot(unit.replica, devices, on_gpu=bool(gpus), memory_scale=scale)
        heap.freeze()  # the new front end's objects, alive as long as the engine
        if (engine := model.engines.get(unit.replica)) is not None:
            self.model_logs.own(engine.processes(), model.name)
        self._count_read(model)
        return await self._measure(model, unit, boot=True)

    async def wake(self, unit: UnitId, reason: str = "") -> Footprint:
        model = self._model(unit)
        reread = ", its weights read again" if model.wake_reloads(unit.replica) else ""
        async with self._operation(model, unit, "wake", f"replica {unit.replica}: awake{reread}{_why(reason)}"):
            await model.wake(unit.replica)
        model.note_awake()
        self._count_read(model)
        return await self._measure(model, unit)

    def _count_read(self, model: ServedModel) -> None:
        if model.last_read is not None:
            path, size = model.last_read
            self._metrics.weight_bytes_read.labels(model.name, path).inc(size)
            model.last_read = None

    async def _measure(self, model: ServedModel, unit: UnitId, boot: bool = False) -> Footprint:
        """What the awake engine really holds: on its devices, for status (the scheduler places by
        claims), and in host memory, with the peak of its boot, for the host ledger."""
        engine = model.engines.get(unit.replica)
        if engine is None or not (pids := engine.processes()):
            return Footprint()

        def measure() -> Footprint:
            model.measured_memory = memory_held(pids, self.devices)
            return Footprint(private_memory(pids), peak_resident(pids) if boot else 0)
        return await asyncio.to_thread(measure)

    async def sleep(self, unit: UnitId, level: int, keep: bool = False) -> Footprint:
        model = self._model(unit)
        engine = model.engines.get(unit.replica)
        kept = "KV cache freed, weights kept" if level == 1 else "KV cache and weights freed"
        done = f"replica {unit.replica}: asleep at level {level} ({kept})"
        async with self._operation(model, unit, "sleep", done):
            await model.sleep(unit.replica, level, keep)
        if engine is None or not (pids := engine.processes()):
            return Footprint()

        def measure() -> Footprint:
            return Footprint(private_memory(pids), held=tuple(sorted(memory_held(pids, self.devices).items())))
        return await asyncio.to_thread(measure)

    @contextlib.asynccontextmanager
    async def _operation(self, model: ServedModel, unit: UnitId, operation: str, done: str):
        """Time an engine operation into the metrics, the operation log and the model's events."""
        started = time.monotonic()
        try:
            yield
        except BaseException:
            self._metrics.operations.labels(model.name, operation, "failed").inc()
            self.operations.add(model.name, unit.replica, operation, started, "failed")
            raise
        elapsed = time.monotonic() - started
        self.operations.add(model.name, unit.replica, operation, started, "ok")
        self._metrics.operations.labels(model.name, operation, "ok").inc()
        self._metrics.operation_seconds.labels(model.name, operation).observe(elapsed)
        model.events.add("Normal", _EVENT_REASONS[operation], f"{done} in {elapsed:.2f}s")

    async def stop(self, unit: UnitId, reason: str = "") -> None:
        model = self.models.get(unit.model) or self._retired.get(unit.model)
        if model is None:
            return
        if reason:  # a budget stops a sleeping engine: an operation of the model's, with its reason
            async with self._operation(model, unit, "stop", f"replica {unit.replica}: engine {reason}"):
                await model.stop(unit.replica)
            heap.thaw()
            return
        await model.stop(unit.replica)
        heap.thaw()
        if unit.model in self._retired and not model.engines:
            del self._retired[unit.model]
            model.forget_staged()

    def died(self, unit: UnitId, cause: str) -> None:
        model = self.models.get(unit.model)
        if model is not None:
            self._metrics.engine_crashes.labels(unit.model).inc()
            model.events.add("Warning", "EngineDied", f"replica {unit.replica}: {cause}; restarting it")

    def give_up(self, unit: UnitId, reason: str) -> None:
        model = self.models.get(unit.model)
        if model is not None:
            model.give_up(reason)

    async def shutdown(self) -> None:
        models = list(self.models.values()) + list(self._retired.values())
        self.models, self._retired = {}, {}
        await asyncio.gather(*(m.stop(r) for m in models for r in list(m.engines)))
