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


async def test_a_models_series_are_there_from_its_add_and_gone_after_its_delete(tmp_path):
    """Issue 30: a fresh daemon's /metrics had none of a model's series until its first request or
    crash, so rate() and alert rules saw nothing rather than a zero."""
    import aiohttp

    from tests.inprocess_daemon import serving, start_daemon, until, write

    async def scrape(d) -> dict:
        async with aiohttp.ClientSession() as s, s.get(d.base_url + "/metrics") as r:
            return metric_samples(await r.text())

    def of(samples: dict, model: str) -> dict:
        return {(name, labels): v for (name, labels), v in samples.items() if ("model", model) in labels
                and name.startswith(("gthread_requests", "gthread_engine_crashes", "gthread_queue_wait",
                                     "gthread_time_to_first_token", "gthread_weight_read"))}

    d = await start_daemon(tmp_path)
    try:
        write(d, "m.yaml", "m")
        await serving(d, "m")
        series = of(await scrape(d), "m")
        chat = (("code", "200"), ("endpoint", "chat/completions"), ("model", "m"))
        assert series[("gthread_requests_total", chat)] == 0
        assert series[("gthread_engine_crashes_total", (("model", "m"),))] == 0
        assert series[("gthread_queue_wait_seconds_count", (("model", "m"),))] == 0
        assert series[("gthread_time_to_first_token_seconds_count", (("model", "m"),))] == 0
        assert series[("gthread_weight_read_bytes_total", (("model", "m"), ("path", "disk")))] == 0
        assert ("gthread_requests_total", (("code", "200"), ("endpoint", "embeddings"), ("model", "m"))) not in series, \
            "only the routes the Model's spec.endpoints enable"
        d.metrics.requests.labels("m", "chat/completions", "503").inc()  # as a request would
        (tmp_path / "models.d" / "m.yaml").unlink()
        d.reload()
        await until(lambda: "m" not in d.fleet.models, "the delete to be applied")
        assert of(await scrape(d), "m") == {}, "every series of the deleted model, a request's too"
    finally:
        await d.shutdown()
