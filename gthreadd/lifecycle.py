"""A model's two lifecycles, each an enum with the transitions it allows.

Phase is what users see (seeds 000/002). Inside Ready, EngineState says what the engine is doing.
Only `ModelRecord.set_phase` / `set_engine_state` (served_model.py) change them, checked here.
"""

from enum import Enum

from gthreadd.resource import Phase


class EngineState(str, Enum):
    stopped = "stopped"
    starting = "starting"
    serving = "serving"
    stopping = "stopping"
    failed = "failed"


PHASE_TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.pending: frozenset({Phase.converting, Phase.staging, Phase.failed}),
    Phase.converting: frozenset({Phase.staging, Phase.failed, Phase.pending}),
    Phase.staging: frozenset({Phase.ready, Phase.failed, Phase.pending}),
    Phase.ready: frozenset({Phase.pending, Phase.failed}),
    Phase.failed: frozenset({Phase.pending}),
}

ENGINE_TRANSITIONS: dict[EngineState, frozenset[EngineState]] = {
    EngineState.stopped: frozenset({EngineState.starting}),
    EngineState.starting: frozenset({EngineState.serving, EngineState.failed, EngineState.stopping}),
    EngineState.serving: frozenset({EngineState.stopping, EngineState.failed}),
    EngineState.stopping: frozenset({EngineState.stopped}),
    EngineState.failed: frozenset({EngineState.stopping, EngineState.starting}),
}


class TransitionError(RuntimeError):
    pass


def check(table: dict, current: Enum, new: Enum) -> None:
    if new != current and new not in table[current]:
        raise TransitionError(f"{current.value} -> {new.value} is not allowed")
