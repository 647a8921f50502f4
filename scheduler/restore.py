"""Restoring what was serving: the claim a unit whose engine died while awake has on capacity.

A death frees the dead engine's memory at once, and the pass that follows it would otherwise hand
that memory to whatever asks first: a pre-wake of a sleeping model, a first boot. Then the model
that was serving stays down until its own next request (seen: a SIGKILLed EngineCore, another
model pre-woken into its memory, the crashed one down for minutes with no request pending).

The order of claims on capacity in a pass (fairness.py, `Scheduler._schedule`):
1. popular units: always up;
2. waiting requests, oldest first (a user is waiting on each; the restoring model's own requests
   are among them and are served by its restart);
3. restores: due ones (backoff over) start in free memory or in the room of idle units put to
   sleep, never preempting a busy one; those still in their backoff hold free memory, so that
   4 and 5 cannot take it;
4. first boots, and boots that failed, retried once their backoff is over;
5. pre-wakes.
Waiting requests come before restores: a restore is for requests that may come, and its model's
own waiting requests compete at 2, as any model's do.
"""

from collections.abc import Iterable

from scheduler.units import Unit, UnitState

REASON = "restore: its engine died while serving"


def claims(units: Iterable[Unit], now: float) -> tuple[list[Unit], list[Unit]]:
    """The units with a restore claim, (due, in backoff), each most recently used first: the
    model served last is the likeliest to be asked next."""
    restoring = sorted((u for u in units if u.restore and u.state == UnitState.restarting),
                       key=lambda u: -u.last_used)
    return [u for u in restoring if now >= u.retry_at], [u for u in restoring if now < u.retry_at]
