"""Pre-wake through the real path: a model asked on a fixed beat, idling out to sleep between beats,
is woken by the scheduler before its next request arrives (scheduler/prewake.py).

The beat is the traffic under test, so the test keeps time itself; everything it checks it waits
for as a condition.
"""

import time

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PERIOD = 7.0
"""Long enough for an answer, the 2 s idleTimeout and a sleep between beats."""


@pytest.fixture(scope="module")
def beating(tmp_path_factory, checkpoint):
    from tests.e2e.daemon_process import DaemonProcess

    d = DaemonProcess(tmp_path_factory.mktemp("prewake"), checkpoint, flags=("--cpu-memory-share", "0.3"))
    d.write_model("tick.yaml", "tick", more="  sleep: {idleTimeout: 2s, drainTimeout: 30s}\n")
    d.start()
    yield d
    d.kill()


def wakes(daemon) -> list[str]:
    return daemon.event_messages("tick", "Woke")


def test_a_periodic_model_is_woken_before_its_next_beat(beating):
    beating.wait_state("tick", "serving")
    start = time.monotonic()
    for beat in range(4):  # three equal gaps make the traffic periodic
        time.sleep(max(0.0, start + beat * PERIOD - time.monotonic()))
        assert "Paris" in beating.ask("tick", max_tokens=16)
        beating.wait_state("tick", "sleeping", PERIOD)
    before = wakes(beating)
    assert not any("pre-wake" in m for m in before), before

    beating.wait_for(lambda: len(wakes(beating)) > len(before), 2 * PERIOD, "a wake before the next beat is sent")
    (woke,) = wakes(beating)[len(before):]
    assert "pre-wake: due at" in woke and "(periodic)" in woke, woke
    assert beating.status("tick")["state"] == "serving"

    time.sleep(max(0.0, start + 4 * PERIOD - time.monotonic()))
    assert "Paris" in beating.ask("tick", max_tokens=16)
    assert len(wakes(beating)) == len(before) + 1, "the beat found it awake: no wake of its own"
