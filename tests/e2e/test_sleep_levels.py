"""Two real CPU engines that both sleep at level 1, on a capacity that fits one awake claim beside a
level-2 sleeper but not beside a level-1 one: the sleeper in the way is deepened to level 2.

Each model claims 0.20 of the CPU device and models may claim 0.2425 in all (the 0.0425 left is
about 1.0 GiB on a 24 GiB node). The checkpoint is loaded as float32, so that its weights (0.5 GiB)
set the two levels well apart: measured, a level-1 sleeper keeps about 1.2 GiB (its weights and
runtime), a level-2 one about 0.7 GiB, both counted on the device.
"""

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

POLICY = """\
  dtype: float32
  fairness: {minRuntime: 1s, maxWaitTime: 1s}
  sleep: {idleTimeout: 5m, drainTimeout: 30s, level: 1}
"""


@pytest.fixture(scope="module")
def tight(tmp_path_factory, checkpoint):
    from tests.e2e.daemon_process import DaemonProcess

    d = DaemonProcess(tmp_path_factory.mktemp("tight"), checkpoint, flags=("--cpu-memory-share", "0.2425"))
    d.write_model("alpha.yaml", "alpha", more=POLICY)
    d.write_model("beta.yaml", "beta", more=POLICY)
    d.start()
    yield d
    d.kill()


def test_a_level_one_sleeper_in_the_way_is_deepened_and_wakes_by_reloading(tight):
    tight.wait_state("alpha", "serving")
    assert tight.status("beta")["state"] == "pending", "only one claim fits"
    assert "Paris" in tight.ask("alpha")

    assert "Paris" in tight.ask("beta")
    slept = tight.event_messages("alpha", "Slept")
    assert any("asleep at level 1" in m for m in slept), slept
    assert any("asleep at level 2" in m for m in slept), f"deepened to make room for beta: {slept}"
    assert (tight.status("alpha")["state"], tight.status("beta")["state"]) == ("sleeping", "serving")

    assert "Paris" in tight.ask("alpha")
    woke = tight.event_messages("alpha", "Woke")
    assert len(woke) == 1 and "its weights read again" in woke[0], woke
    assert any("asleep at level 2" in m for m in tight.event_messages("beta", "Slept")), "beta deepened in turn"
