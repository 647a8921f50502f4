"""The chaos soak (bench/chaos.py), short: load over three Models on capacity for two while one
fault of each kind is injected in turn (SIGKILL and SIGSTOP of an EngineCore, a live edit, an edit
into new engines, a deletion and its re-add, SIGHUP, the host tier filled and emptied). Nothing may
be lost or answered wrongly, every refusal is a 429/503 with Retry-After (or a 404 while a Model
is deleted), every engine taken away comes back, and /status never says `failed`."""

import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))  # last: bench/trace.py must not shadow the stdlib

from chaos import Config, soak  # noqa: E402

from tests.e2e.daemon_process import DaemonProcess  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

EVERY_FAULT = ("kill", "stop", "edit-live", "edit-restart", "delete", "sighup", "fill", "fill")


def test_a_fault_of_each_kind_under_load_loses_nothing(tmp_path_factory, checkpoint):
    config = Config(faults=EVERY_FAULT, fault_every=6, clients=3, seed=1)
    daemon = DaemonProcess(tmp_path_factory.mktemp("chaos"), checkpoint,
                           flags=("--cpu-memory-share", config.share, "--host-tier-size", config.host_tier_size))
    try:
        report = soak(daemon, config)
    finally:
        daemon.kill()
    summary = report.summary()
    print("chaos soak:", summary)
    assert report.ok, summary
    assert report.outcomes["answered"] > 0 and report.outcomes["lost"] == report.outcomes["wrong"] == 0
    assert sorted(f.kind for f in report.faults) == sorted(EVERY_FAULT + ("readd",)), report.faults
    taken_away = [f for f in report.faults if f.kind in ("kill", "edit-restart", "readd")]
    assert all(f.recovered_s is not None for f in taken_away), taken_away
    assert report.engines_after == config.models, "one engine per Model, none leaked"
