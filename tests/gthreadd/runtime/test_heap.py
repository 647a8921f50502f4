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


@pytest.fixture
def collections_seen():
    """Each collection's generation, while the test runs; Python's thresholds put back after."""
    seen = []

    def count(phase, info):
        if phase == "start":
            seen.append(info["generation"])

    thresholds = gc.get_threshold()
    gc.callbacks.append(count)
    yield seen
    gc.callbacks.remove(count)
    gc.set_threshold(*thresholds)


def test_live_objects_of_streams_in_flight_set_off_no_collection(collections_seen):
    gc.set_threshold(700)
    gc.collect()
    collections_seen.clear()
    in_flight = [[] for _ in range(5000)]
    assert collections_seen, "at Python's default threshold, a few thousand live objects collect"
    del in_flight
    heap.tune()
    gc.collect()
    collections_seen.clear()
    in_flight = [[] for _ in range(5000)]
    assert collections_seen == []
    del in_flight


def test_cycles_are_still_reclaimed_under_the_daemons_threshold(collections_seen):
    heap.tune()
    gc.collect()
    collections_seen.clear()
    refs = []
    for _ in range(heap.YOUNG_THRESHOLD + 100):
        garbage = Node()
        refs.append(weakref.ref(garbage))
        del garbage
    assert 0 in collections_seen
    assert refs[0]() is None, "the first cycles made were reclaimed by the young collection"
