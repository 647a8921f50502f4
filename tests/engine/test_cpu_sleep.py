"""engine/cpu_sleep.py's collection of the model a level-2 sleep drops. vLLM's EngineCore freezes its
startup heap (gc.freeze), the model's objects among it; a model's objects form reference cycles (a
parameter's weight_loader is bound to its module), and frozen cycles are never collected. The real
path (a level-2 engine's memory) is tests/e2e/test_time_sharing.py."""

import gc
import weakref

from engine.cpu_sleep import _collect_frozen_garbage


class Layer:
    """A module and its weight, in a cycle as vLLM's are."""

    def __init__(self) -> None:
        self.weight = bytearray(1 << 20)
        self.loader = self.load

    def load(self) -> None:
        pass


def test_a_dropped_model_frozen_with_the_startup_heap_is_collected_and_the_heap_frozen_again():
    was_frozen = gc.get_freeze_count()
    layer = Layer()
    gone = weakref.ref(layer)
    gc.freeze()
    try:
        del layer
        gc.collect()
        assert gone() is not None, "premise: a frozen cycle outlives a collection"
        _collect_frozen_garbage()
        assert gone() is None
        assert gc.get_freeze_count() > 0, "the rest of the heap is frozen again"
    finally:
        if not was_frozen:
            gc.unfreeze()
