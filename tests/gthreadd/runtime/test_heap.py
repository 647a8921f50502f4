"""gthreadd/runtime/heap.py with Python's real collector: a frozen heap is left out of collections,
and a stopped engine's cycles (thawed) are reclaimed."""

import gc
import weakref

import pytest

from gthreadd.runtime import heap


class Node:
    """A cycle, as an engine's front end is full of (objects that point back at their owner)."""

    def __init__(self):
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen():
    yield
    gc.unfreeze()


def test_frozen_objects_are_left_out_and_garbage_is_collected_first():
    gone = Node()
    gone_ref = weakref.ref(gone)
    del gone
    kept = Node()
    heap.freeze()
    assert gone_ref() is None, "garbage was collected before the freeze, not frozen with the rest"
    assert gc.get_freeze_count() > 0
    assert not any(o is kept for g in range(3) for o in gc.get_objects(generation=g)), "frozen: in no generation"


def test_a_thawed_cycle_is_reclaimed_and_a_frozen_one_is_not():
    engine = Node()
    ref = weakref.ref(engine)
    heap.freeze()
    del engine
    gc.collect()
    assert ref() is not None, "a frozen cycle outlives a collection: thaw exists for this"
    heap.thaw()
    gc.collect()
    assert ref() is None, "thawed, the stopped engine's cycle is reclaimed"
