"""engine/process_tree.py on real processes: a child that creates shared memory the way vLLM's
message queues do (multiprocessing.shared_memory), killed without a chance to unlink it; and the
processes below one, as the kernel lists them."""

import subprocess
import sys
import time
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path

import psutil
import pytest

from engine import process_tree
from engine.process_tree import descendants, kill_tree, shared_memory_of, unlink_shared_memory

CHILD = """
import sys, time
from multiprocessing import resource_tracker, shared_memory
segment = shared_memory.SharedMemory(create=True, size=1 << 20)
resource_tracker.unregister(segment._name, "shared_memory")  # as vLLM does: its owner unlinks it
print(segment.name, flush=True)
time.sleep(60)
"""


@pytest.fixture
def child():
    process = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    name = process.stdout.readline().strip()
    yield process, Path("/dev/shm") / name
    process.kill()
    process.wait()
    (Path("/dev/shm") / name).unlink(missing_ok=True)


def test_a_killed_processs_shared_memory_is_found_before_and_unlinked_after(child):
    process, segment = child
    assert segment.exists()
    found = shared_memory_of([process.pid])
    assert found == {segment}

    killed = kill_tree(process.pid)
    assert process.pid in [p.pid for p in killed]
    process.wait(timeout=10)
    assert segment.exists(), "a SIGKILLed owner leaves its segment behind"
    unlink_shared_memory(found)
    assert not segment.exists()


def test_a_segment_this_process_maps_too_is_not_theirs_alone(child):
    process, segment = child
    ours = shared_memory.SharedMemory(name=segment.name)
    resource_tracker.unregister(ours._name, "shared_memory")  # the child's to unlink, not ours
    try:
        assert shared_memory_of([process.pid]) == set()
    finally:
        ours.close()
    assert shared_memory_of([process.pid]) == {segment}


def test_a_process_that_is_gone_has_no_tree_and_no_segments():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert kill_tree(process.pid) == []
    assert shared_memory_of([process.pid]) == set()


@pytest.mark.parametrize("kernel_lists_children", [True, False], ids=["kernel lists", "psutil scan"])
def test_descendants_are_children_and_grandchildren_and_none_once_gone(monkeypatch, kernel_lists_children):
    monkeypatch.setattr(process_tree, "_kernel_lists_children", lambda: kernel_lists_children)
    shell = subprocess.Popen(["sh", "-c", "sleep 60 & (sleep 60; true) & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(tree := psutil.Process(shell.pid).children(recursive=True)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)  # until the subshell has started its sleep
        assert len(tree) == 3, "two children, one of them a subshell with its own sleep"
        assert sorted(descendants(shell.pid)) == sorted(p.pid for p in tree)
    finally:
        kill_tree(shell.pid)
        shell.wait()
    assert descendants(shell.pid) == []
