"""Predicting a model's next request from its recent arrivals, for pre-waking it into free capacity.

Two shapes of traffic, told apart by the regularity of the gaps between arrivals:
- periodic (a cron job, a dashboard refresh): the last gaps agree (coefficient of variation below
  PERIODIC_CV), so the next request is due one median gap after the last; the model is woken a
  wake's time before that.
- anything else: a rate over the window of recent arrivals, and the chance of at least one
  request within a horizon under a Poisson assumption.

Pure functions of times; the scheduler core keeps the arrivals and decides what to do with them.
"""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

HISTORY = 16
"""Arrivals kept per model."""
PERIODIC_CV = 0.25
MIN_GAPS = 3
"""Gaps needed before traffic is called periodic (the last five are judged)."""
STALE_PERIODS = 3
"""Periodic traffic silent for this many periods has stopped: judged by its rate from then on."""
DEFAULT_WAKE_S = 5.0
"""A unit's wake time until one is measured: what a pre-wake leads a periodic request by (x1.5)."""
MIN_LEAD_S = 1.0
"""The least a pre-wake leads a periodic request by. A level-1 CPU wake takes milliseconds, and
1.5x that left a window of a few milliseconds around the due time for the pass to fall in: a
timer of the event loop (uvloop's are in milliseconds) could miss it, and then the beat too."""
LIKELY = 0.5
"""A non-periodic model is pre-woken only when a request within the horizon is at least this likely."""


@dataclass(frozen=True)
class Forecast:
    due: Optional[float]
    """When the next request is expected, for periodic traffic; None otherwise."""
    likelihood: float
    """Chance of at least one request within the horizon asked about."""


def forecast(arrivals: Sequence[float], now: float, horizon: float) -> Forecast:
    """`arrivals`: a model's recent request times, oldest first."""
    arrivals = list(arrivals)
    if len(arrivals) < 2:
        return Forecast(None, 0.0)
    recent = [b - a for a, b in zip(arrivals, arrivals[1:])][-5:]
    period = statistics.median(recent)
    periodic = len(recent) >= MIN_GAPS and period > 0 and statistics.pstdev(recent) / period < PERIODIC_CV
    if periodic and now - arrivals[-1] <= STALE_PERIODS * period:  # silent longer: the beat stopped
        due = arrivals[-1] + period
        while due + horizon < now:  # a beat missed by more than the horizon: the next on the same grid
            due += period
        return Forecast(due, 1.0 if due - now <= horizon else 0.0)
    span = now - arrivals[0]
    rate = (len(arrivals) - 1) / span if span > 0 else 0.0
    return Forecast(None, 1.0 - math.exp(-rate * horizon))
