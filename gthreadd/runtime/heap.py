"""The daemon's Python heap and the cycle collector.

The daemon carries every model's front end, and imports vLLM, torch and transformers for it: some
650,000 objects before the first engine starts, another 50,000 per engine. A full collection
walks them all (about 0.4 s on a 2-core host, the event loop and every stream stalled meanwhile),
and serving's short-lived objects set one off every few tens of seconds. Like `vllm serve`, which
freezes its heap once it has started, the daemon freezes what is alive when its engines change:
those objects are not walked again. A stopped engine's objects are thawed, so that the collector
can reclaim its cycles; the next freeze collects them first.
"""

import gc


def freeze() -> None:
    """Collect what is garbage now (what is frozen already is not walked again), then leave every
    live object out of later collections."""
    gc.collect()
    gc.freeze()


def thaw() -> None:
    """Give every frozen object back to the collector (an engine stopped: its cycles are garbage)."""
    gc.unfreeze()
