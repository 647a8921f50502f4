"""A model's user-facing phase (seeds 000/002) as an enum with the transitions it allows.

Only `ServedModel.set_phase` changes it, checked here. What each engine is doing (awake, asleep,
waking, draining) is the scheduler's unit state (scheduler/units.py).
"""

from enum import Enum

from gthreadd.spec.resource import Phase

PHASE_TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.pending: frozenset({Phase.converting, Phase.staging, Phase.failed}),
    Phase.converting: frozenset({Phase.staging, Phase.failed, Phase.pending}),
    Phase.staging: frozenset({Phase.ready, Phase.failed, Phase.pending}),
    Phase.ready: frozenset({Phase.pending, Phase.failed}),
    Phase.failed: frozenset({Phase.pending}),
}


class TransitionError(RuntimeError):
    pass


def check(table: dict, current: Enum, new: Enum) -> None:
    if new != current and new not in table[current]:
        raise TransitionError(f"{current.value} -> {new.value} is not allowed")
