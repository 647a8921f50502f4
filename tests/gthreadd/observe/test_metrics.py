"""/metrics gauges are read from a snapshot at scrape time: every state of the one vocabulary per
model, queue depths, device memory and the host tier, parsed with prometheus_client's parser."""

from prometheus_client import generate_latest

from gthreadd.observe.metrics import Metrics, StateSnapshot
from gthreadd.spec.resource import ModelState
from memory.host_tier import TierUsage
from tests.e2e.daemon_process import metric_samples


def test_gauges_show_what_the_snapshot_holds_at_scrape_time():
    metrics = Metrics()
    snapshot = StateSnapshot({"a": ModelState.starting, "b": ModelState.sleeping}, {"b": 3},
                             [("gpu0", 80, 20, 5)], TierUsage(1, 2, 10, 7, 14))
    metrics.add_state(lambda: snapshot)
    samples = metric_samples(generate_latest(metrics.registry).decode())
    states = {(dict(labels)["model"], dict(labels)["state"]): v
              for (name, labels), v in samples.items() if name == "gthread_model_state"}
    assert {k for k, v in states.items() if v == 1} == {("a", "starting"), ("b", "sleeping")}
    assert len(states) == 2 * len(ModelState), "every state of each model, 0 or 1"
    assert samples[("gthread_queue_depth", (("model", "a"),))] == 0
    assert samples[("gthread_queue_depth", (("model", "b"),))] == 3
    memory = {dict(labels)["kind"]: v for (name, labels), v in samples.items() if name == "gthread_device_memory_bytes"}
    assert memory == {"total": 80, "claimed": 20, "foreign": 5}
    assert samples[("gthread_host_tier_bytes", (("kind", "used"),))] == 1
    assert samples[("gthread_host_tier_bytes", (("kind", "kv_cache"),))] == 2
    assert samples[("gthread_weight_bytes_total", (("tier", "disk"),))] == 7
    assert samples[("gthread_weight_bytes_total", (("tier", "system"),))] == 14
