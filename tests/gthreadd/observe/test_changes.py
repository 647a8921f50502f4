import asyncio

import pytest

from gthreadd.observe.changes import Changes


async def test_a_waiter_wakes_on_the_next_bump_and_not_before():
    changes = Changes()
    waiter = asyncio.create_task(changes.wait(changes.version, timeout=5))
    await asyncio.sleep(0.01)
    assert not waiter.done(), "nothing changed yet"
    changes.bump()
    assert await asyncio.wait_for(waiter, 1) == 1


async def test_a_waiter_behind_the_version_returns_at_once_and_a_quiet_one_times_out():
    changes = Changes()
    changes.bump()
    assert await asyncio.wait_for(changes.wait(0, timeout=5), 0.5) == 1, "it missed a change: no wait"
    assert await changes.wait(1, timeout=0.01) == 1, "quiet: the same version after the timeout"


async def test_a_waiter_cancelled_as_a_change_comes_is_cancelled():
    """Python 3.11's asyncio.wait_for returns the result when its task is cancelled in the same
    turn of the loop as the wait ends, and the cancel is lost: a live view's task would go on."""
    changes = Changes()
    waiter = asyncio.create_task(changes.wait(changes.version, timeout=5))
    await asyncio.sleep(0)
    changes.bump()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
