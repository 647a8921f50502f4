"""More Models than fit as sleeping engines, behind one daemon in a memory cgroup this test makes:
the cgroup's limit is what the daemon budgets against, sleepers are stopped least recently used
first to stay within it, and the kernel's OOM killer never has to choose.

Five Models on the demo checkpoint, each claiming 0.3 of a 6 GiB limit (1.8 GiB; awake an engine
holds about 2.2 GiB, asleep at level 1 about 1.4 GiB, measured), asked in turn, twice.
"""

import psutil
import pytest

from engine.process_tree import SHARED_MEMORY, shared_memory_of
from tests.e2e.memory_cgroup import MemoryCgroup

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

GIB = 2**30
LIMIT = 6 * GIB
NAMES = [f"m{i}" for i in range(5)]
POLICY = """\
  fairness: {minRuntime: 1s, maxWaitTime: 1s}
  sleep: {idleTimeout: 10m, drainTimeout: 30s, level: 1}
"""


@pytest.fixture(scope="module")
def limited(tmp_path_factory, checkpoint):
    from tests.e2e.daemon_process import DaemonProcess

    if why := MemoryCgroup.unavailable():
        pytest.skip(why)
    group = MemoryCgroup(LIMIT).create()
    segments_before = set(SHARED_MEMORY.glob("psm_*"))
    d = DaemonProcess(tmp_path_factory.mktemp("limited"), checkpoint, flags=("--cpu-memory-share", "0.9"),
                      join=group.join)
    for name in NAMES:
        d.write_model(f"{name}.yaml", name, utilization="0.30", more=POLICY)
    try:
        d.start()
        yield d, group, segments_before
    finally:
        d.kill()
        group.remove()


def test_more_models_than_fit_asleep_are_all_answered_within_the_cgroups_limit(limited):
    d, group, segments_before = limited
    status = d.status(NAMES[0])
    assert status["hostMemory"]["limitBytes"] == int(0.95 * LIMIT), "the budget is the cgroup's limit, not the RAM"
    gpus = d.get("/apis/greenthread.ai/v1alpha1/gpus")[1]
    assert gpus["items"][0]["totalBytes"] == LIMIT, "the CPU device is the cgroup's limit too"

    peaks = []
    for round_ in range(2):
        for name in NAMES:
            assert "Paris" in d.ask(name), f"round {round_ + 1}: {name}"
            host = d.status(name)["hostMemory"]
            peaks.append(host["usedBytes"])
            assert host["usedBytes"] <= host["limitBytes"], host

    assert group.oom_kills() == 0, "the kernel's OOM killer never chose"
    assert group.peak() <= LIMIT
    for name in NAMES:
        status = d.status(name)
        assert status["phase"] == "Ready", status
        assert not d.event_messages(name, "EngineDied"), name

    stopped = {name: d.event_messages(name, "Stopped") for name in NAMES}
    assert any(stopped.values()), "more Models than fit: some sleeping engines were stopped"
    assert all("least recently used" in m for ms in stopped.values() for m in ms), stopped
    restarted = [m for name in NAMES for m in d.event_messages(name, "Started") if "starting cold, it was stopped" in m]
    assert restarted, "a stopped Model was started again on demand, and said why it started cold"
    rungs = [r["rung"] for name in NAMES for r in d.status(name)["replicas"]]
    assert set(rungs) <= {"awake", "asleep", "stopped"} and "awake" in rungs, rungs

    engines = psutil.Process(d.proc.pid).children(recursive=True)
    left = set(SHARED_MEMORY.glob("psm_*")) - segments_before - shared_memory_of(p.pid for p in engines)
    assert not left, "stopped engines left their shared memory behind"
