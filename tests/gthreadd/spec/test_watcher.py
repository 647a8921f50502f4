"""Reasons to rescan models.d, on the one queue into reconciliation: file events (a real
inotify watch on a temporary directory), the timer, and callers that wait for their rescan."""

import asyncio
import logging
import os
import threading

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


async def watching(directory, requests):
    """A watcher on `directory`, subscribed by the time this returns (it subscribes before its
    first wait)."""
    watcher = asyncio.create_task(watch_files(directory, requests))
    await asyncio.sleep(0)
    return watcher


async def stopped(watcher):
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)


async def test_a_manifest_written_into_the_directory_is_a_request_and_other_files_are_not(tmp_path):
    requests = RescanRequests()
    threads = threading.active_count()
    watcher = await watching(tmp_path, requests)
    try:
        (tmp_path / "notes.txt").write_text("not a Model")
        (tmp_path / ".m.yaml.swp").write_text("an editor's")
        (tmp_path / "m.yaml").write_text("kind: Model")
        reasons, _ = await asyncio.wait_for(requests.take(), 5)
        assert reasons == ["files changed: m.yaml"]
        assert threading.active_count() == threads, "events are read on the event loop, no thread polls"
    finally:
        await stopped(watcher)


async def test_a_burst_of_writes_renames_and_deletes_is_one_request_naming_each_manifest(tmp_path):
    requests = RescanRequests()
    (tmp_path / "old.yaml").write_text("kind: Model")
    watcher = await watching(tmp_path, requests)
    try:
        for change in (lambda: (tmp_path / "a.yaml").write_text("kind: Model"),
                       lambda: (tmp_path / "tmp-b").write_text("kind: Model"),
                       lambda: os.rename(tmp_path / "tmp-b", tmp_path / "b.yml"),  # an atomic write, as editors do
                       lambda: (tmp_path / "old.yaml").unlink()):
            change()
            for _ in range(3):  # the watcher reads each change before the next is made
                await asyncio.sleep(0)
        reasons, _ = await asyncio.wait_for(requests.take(), 5)
        assert reasons == ["files changed: a.yaml, b.yml, old.yaml"]
    finally:
        await stopped(watcher)


async def test_a_removed_directory_is_a_request_and_a_warning_and_the_watcher_ends(tmp_path, caplog):
    directory, requests = tmp_path / "models.d", RescanRequests()
    directory.mkdir()
    watcher = await watching(directory, requests)
    directory.rmdir()
    with caplog.at_level(logging.WARNING):
        await asyncio.wait_for(watcher, 5)
    reasons, _ = await requests.take()
    assert reasons == [f"{directory} removed"]
    assert "periodic rescan only" in caplog.text


async def test_a_missing_directory_is_logged_and_not_fatal(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(watch_files(tmp_path / "absent", RescanRequests()), 5)
    assert f"watching {tmp_path / 'absent'} failed" in caplog.text


async def test_the_timer_requests_a_rescan_each_interval():
    requests = RescanRequests()
    timer = asyncio.create_task(tick(0.01, requests))
    try:
        reasons, _ = await asyncio.wait_for(requests.take(), 5)
        assert reasons[0] == "timer"
    finally:
        timer.cancel()
