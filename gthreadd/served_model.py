"""One Model from models.d and the engine that serves it.

Each ServedModel owns one task that applies its wanted spec: start, restart on an engine-relevant
edit, stop on delete. Edits arriving while an engine starts are applied once the start settles,
so operations on one model never overlap, and other models are never waited on.
"""

import asyncio
import logging
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Optional

from conversion.resolve import SourceError, resolve_source
from engine.args import EngineArgsError
from engine.config import EngineConfig
from engine.interface import Engine
from gthreadd.desired import DesiredModel
from gthreadd.engine_config import engine_config_for, needs_restart
from gthreadd.lifecycle import ENGINE_TRANSITIONS, PHASE_TRANSITIONS, EngineState, check
from gthreadd.manifests import ManifestError
from gthreadd.resource import Condition, ModelResource, Phase

log = logging.getLogger(__name__)

EngineFactory = Callable[[EngineConfig], Engine]


class ServedModel:
    def __init__(self, desired: DesiredModel, engine_factory: EngineFactory):
        self.resource: ModelResource = desired.resource
        self.source: str = desired.source
        self.phase = Phase.pending
        self.engine_state = EngineState.stopped
        self.engine: Optional[Engine] = None
        self.in_flight = 0
        self.conditions: dict[str, Condition] = {}
        self._engine_factory = engine_factory
        self._wanted: Optional[DesiredModel] = desired
        self._restart = True
        self._changed = asyncio.Event()
        self._changed.set()
        self._task: Optional[asyncio.Task] = None
        self._set_condition("Ready", "False", "Pending", "waiting to start")

    @property
    def name(self) -> str:
        return self.resource.metadata.name

    @property
    def ready_condition(self) -> Condition:
        return self.conditions["Ready"]

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"model:{self.name}")

    def update(self, desired: DesiredModel) -> None:
        """Take a new version of the spec: live fields now, engine fields by restarting."""
        if desired.resource == self.resource and desired.source == self.source:
            return
        restart = needs_restart(self.resource, desired.resource) or self.phase == Phase.failed
        self.resource, self.source, self._wanted = desired.resource, desired.source, desired
        if restart:
            log.info("model %s: spec changed, restarting its engine", self.name)
            self._restart = True
            self._changed.set()
        else:
            log.info("model %s: spec changed, applied without restart", self.name)

    async def remove(self) -> None:
        """Stop the engine and free its memory; returns when done."""
        self._wanted = None
        self._changed.set()
        if self._task is not None:
            await self._task

    def set_config_errors(self, errors: tuple[ManifestError, ...]) -> None:
        if errors:
            self._set_condition("ConfigValid", "False", "InvalidManifest",
                                "; ".join(str(e) for e in errors) + " (the last good version stays in force)")
        else:
            self._set_condition("ConfigValid", "True", "Valid", "")

    @contextmanager
    def track_request(self):
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def notice_engine_death(self) -> None:
        """Called when a request finds the engine gone: fail visibly, the user edits or restarts."""
        if self.engine is not None and not self.engine.running and self.phase == Phase.ready:
            self.set_engine_state(EngineState.failed)
            self._fail("EngineDied", "the vLLM engine process exited; see the daemon log")

    async def _run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._wanted is None:
                await self._stop_engine()
                return
            if self._restart:
                self._restart = False
                await self._stop_engine()
                await self._start_engine(self._wanted.resource)

    async def _start_engine(self, resource: ModelResource) -> None:
        if self.phase != Phase.pending:
            self.set_phase(Phase.pending)
        self.set_phase(Phase.staging)
        self._set_condition("Ready", "False", "Staging", f"resolving {resource.spec.model_name}")
        try:
            path = await asyncio.to_thread(resolve_source, resource.spec.model_name, resource.spec.revision)
        except SourceError as exc:
            return self._fail("SourceUnavailable", str(exc))
        engine = self._engine_factory(engine_config_for(resource, path))
        self.set_engine_state(EngineState.starting)
        self._set_condition("Ready", "False", "EngineStarting", "starting the vLLM engine")
        try:
            await engine.start()
        except EngineArgsError as exc:
            self.set_engine_state(EngineState.failed)
            return self._fail("InvalidExtraArgs", str(exc))
        except Exception as exc:
            log.exception("model %s: engine failed to start", self.name)
            self.set_engine_state(EngineState.failed)
            return self._fail("EngineStartFailed", f"{type(exc).__name__}: {exc}")
        self.engine = engine
        self.set_engine_state(EngineState.serving)
        self.set_phase(Phase.ready)
        self._set_condition("Ready", "True", "Serving", "")

    async def _stop_engine(self) -> None:
        engine, self.engine = self.engine, None
        if self.engine_state == EngineState.stopped:
            return
        self.set_engine_state(EngineState.stopping)
        if engine is not None:
            try:
                await engine.stop()
            except Exception:
                log.exception("model %s: error while stopping the engine", self.name)
        self.set_engine_state(EngineState.stopped)

    def _fail(self, reason: str, message: str) -> None:
        self.set_phase(Phase.failed)
        self._set_condition("Ready", "False", reason, message)
        log.error("model %s: %s: %s", self.name, reason, message)

    def set_phase(self, phase: Phase) -> None:
        check(PHASE_TRANSITIONS, self.phase, phase)
        if phase != self.phase:
            log.info("model %s: phase %s -> %s", self.name, self.phase.value, phase.value)
            self.phase = phase

    def set_engine_state(self, state: EngineState) -> None:
        check(ENGINE_TRANSITIONS, self.engine_state, state)
        if state != self.engine_state:
            log.info("model %s: engine %s -> %s", self.name, self.engine_state.value, state.value)
            self.engine_state = state

    def _set_condition(self, type_: str, status: str, reason: str, message: str) -> None:
        old = self.conditions.get(type_)
        if old is not None and (old.status, old.reason, old.message) == (status, reason, message):
            return
        changed = old is None or old.status != status
        self.conditions[type_] = Condition(
            type=type_, status=status, reason=reason, message=message,
            last_transition_time=datetime.now(timezone.utc) if changed else old.last_transition_time,
        )
