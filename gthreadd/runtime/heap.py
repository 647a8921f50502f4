"""The daemon's Python heap and the cycle collector.

The daemon carries every model's front end, and imports vLLM, torch and transformers for it: some
650,000 objects before the first engine starts, another 50,000 per engine. A full collection
walks them all (about 0.4 s on a 2-core host, the event loop and every stream stalled meanwhile),
and serving's short-lived objects set one off every few tens of seconds. Like `vllm serve`, which
freezes its heap once it has started, the daemon freezes what is alive when its engines change:
those objects are not walked again. A stopped engine's objects are thawed, so that the collector
can reclaim its cycles; the next freeze collects them first.

A young collection comes when the tracked objects allocated less those freed pass a threshold,
700 by default. A streaming front end allocates and frees its per-token objects in balance, but
sixteen streams in flight keep a few thousand alive at once, so at 700 it collected three times a
second, walking those live objects into older generations and walking them again there: 2-3.5 us
of a streamed token's ~100 us of CPU, measured. At 10,000 a counted pass of 6,144 tokens set off
none, and garbage in cycles is still reclaimed, 10,000 objects later.
"""

import gc

YOUNG_THRESHOLD = 10_000
"""Tracked objects, net of those freed, that set off a young collection (Python's default: 700)."""


def tune() -> None:
    """The daemon's thresholds: the young generation's raised, the older ones' as Python has them."""
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def freeze() -> None:
    """Collect what is garbage now (what is frozen already is not walked again), then leave every
    live object out of later collections."""
    gc.collect()
    gc.freeze()


def thaw() -> None:
    """Give every frozen object back to the collector (an engine stopped: its cycles are garbage)."""
    gc.unfreeze()
