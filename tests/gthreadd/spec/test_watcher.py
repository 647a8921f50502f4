"""Reasons to rescan models.d, on the one queue into reconciliation: file events (a real
watchfiles watcher on a temporary directory), the timer, and callers that wait for their rescan."""

import asyncio

from gthreadd.spec.watcher import RescanRequests, tick, watch_files


async def test_requests_queued_together_are_served_by_one_rescan_and_waiters_learn_its_outcome():
    requests = RescanRequests()
    requests.request("timer")
    first = asyncio.create_task(requests.request_and_wait("control socket"))
    await asyncio.sleep(0)
    reasons, waiters = await requests.take()
    assert reasons == ["timer", "control socket"] and len(waiters) == 1
    assert not first.done(), "a caller waits until its rescan is applied"
    waiters[0].set_result(None)
    await first


async def test_a_manifest_written_into_the_directory_is_a_request_and_other_files_are_not(tmp_path):
    requests, stop = RescanRequests(), asyncio.Event()
    watcher = asyncio.create_task(watch_files(tmp_path, requests, stop))
    try:
        for attempt in range(40):  # until the watcher has subscribed and sees a write
            (tmp_path / "notes.txt").write_text(f"not a Model {attempt}")
            (tmp_path / "m.yaml").write_text(f"kind: Model # {attempt}")
            try:
                reasons, _ = await asyncio.wait_for(requests.take(), 0.5)
                break
            except TimeoutError:
                continue
        assert reasons == ["files changed: m.yaml"]
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 10)


async def test_the_timer_requests_a_rescan_each_interval():
    requests = RescanRequests()
    timer = asyncio.create_task(tick(0.01, requests))
    try:
        reasons, _ = await asyncio.wait_for(requests.take(), 5)
        assert reasons[0] == "timer"
    finally:
        timer.cancel()
