"""`/metrics`: the daemon's Prometheus metrics, in a registry of its own (vLLM's global one is
not shared: see engine/metrics.py, whose per-model engine metrics live in this registry too).

Two kinds: counters and histograms that the places where things happen update (wakes, sleeps,
boots, requests, queue waits), and gauges read from the daemon's state at scrape time (model
states, queue depths, device memory, the host tier), so a gauge can never drift from the truth.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gthreadd.spec.resource import ModelState
from memory.host_tier import TierUsage
from memory.read_path import ReadPath
from scheduler.snapshot import HostView, UnitView

_OPERATION = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)
_WAIT = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # The daemon process's own CPU time (process_cpu_seconds_total, its engine cores excluded):
        # it carries every model's front end, so its rate over the tokens generated
        # (vllm:generation_tokens_total) is the front end's cost per token, and its rate alone how
        # near the process is to the one core it can use.
        ProcessCollector(registry=r)
        self.operations = Counter("gthread_engine_operations", "Engine operations by kind and outcome",
                                  ("model", "operation", "outcome"), registry=r)
        self.operation_seconds = Histogram("gthread_engine_operation_seconds",
                                           "Duration of engine boots, wakes and sleeps (a wake's latency "
                                           "is operation=\"wake\")", ("model", "operation"),
                                           buckets=_OPERATION, registry=r)
        self.engine_crashes = Counter("gthread_engine_crashes", "Engine deaths found by supervision (the engine "
                                      "is restarted; a crash loop fails the model)", ("model",), registry=r)
        self.weight_bytes_read = Counter("gthread_weight_read_bytes", "Bytes of converted weights loaded into "
                                         "engines, by the tier they were read from (host-tier, kvikio, disk)",
                                         ("model", "path"), registry=r)
        self.requests = Counter("gthread_requests", "Inference requests by model, endpoint and HTTP status",
                                ("model", "endpoint", "code"), registry=r)
        self.queue_wait = Histogram("gthread_queue_wait_seconds", "Time a request waited to be admitted "
                                    "(a wake included, when its model slept)", ("model",), buckets=_WAIT, registry=r)
        self.ttft = Histogram("gthread_time_to_first_token_seconds", "A streamed request's time from arrival to "
                              "its first chunk, as its client sees it (queue wait and a wake included)",
                              ("model",), buckets=_WAIT, registry=r)
        self.key_refusals = Counter("gthread_key_refusals", "Requests a key's own limits refused before admission "
                                    "(model: a Model the key may not use; requests_per_minute, tokens_per_minute, "
                                    "max_concurrent: 429)", ("key", "reason"), registry=r)
        self.key_tokens = Counter("gthread_key_tokens", "Prompt and generated tokens of a key's finished requests, "
                                  "as vLLM counted them", ("key",), registry=r)
        self.key_requests = Counter("gthread_key_requests", "A key's inference requests by HTTP status (499: the "
                                    "client left)", ("key", "code"), registry=r)
        self.key_queue_wait = Histogram("gthread_key_queue_wait_seconds", "Time a key's request waited to be "
                                        "admitted (a wake, or its turn at a busy model)", ("key",), buckets=_WAIT,
                                        registry=r)

    def count_key_tokens(self, tenant, tokens: int) -> None:
        self.key_tokens.labels(tenant.name).inc(tokens)

    def track_models(self, endpoints: Mapping[str, Iterable[str]]) -> None:
        """The Models now served, each with the `endpoint` labels of the routes it answers: their
        series start at zero when a Model is added (Prometheus' advice for label sets known in
        advance, so that rate() and alert rules see a zero rather than nothing) and go when it is
        deleted, a late request's series included, at the next reconcile."""
        per_model = (self.requests, self.engine_crashes, self.queue_wait, self.ttft, self.weight_bytes_read,
                     self.operations, self.operation_seconds)
        for metric in per_model:
            present = {s.labels["model"] for family in metric.collect() for s in family.samples}
            for gone in present - endpoints.keys():
                metric.remove_by_labels({"model": gone})
        for model, labels in endpoints.items():
            for endpoint in labels:
                self.requests.labels(model, endpoint, "200")
            for histogram_or_counter in (self.engine_crashes, self.queue_wait, self.ttft):
                histogram_or_counter.labels(model)
            for path in ReadPath:
                self.weight_bytes_read.labels(model, path.value)

    def traffic(self) -> dict[str, dict[str, float]]:
        """Per model, the totals the dashboard turns into a rate and means between two snapshots:
        requests answered, queue waits and streamed TTFTs (sums and counts)."""
        out: dict[str, dict[str, float]] = {}

        def slot(model: str) -> dict[str, float]:
            return out.setdefault(model, {"requests": 0, "queueWaitSum": 0.0, "queueWaitCount": 0,
                                          "ttftSum": 0.0, "ttftCount": 0})

        for metric in self.requests.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    slot(sample.labels["model"])["requests"] += sample.value
        for histogram, prefix in ((self.queue_wait, "queueWait"), (self.ttft, "ttft")):
            for metric in histogram.collect():
                for sample in metric.samples:
                    for suffix in ("Sum", "Count"):
                        if sample.name.endswith("_" + suffix.lower()):
                            slot(sample.labels["model"])[prefix + suffix] += sample.value
        return out

    def add_state(self, read: Callable[[], "StateSnapshot"]) -> None:
        self.registry.register(_StateCollector(read))


class StateSnapshot:
    """What the gauges read at scrape time; built by the daemon, which knows where each lives."""

    def __init__(self, model_states: dict[str, ModelState], queued: dict[str, int],
                 devices: list[tuple[str, int, int, int]], host_tier: TierUsage,
                 host: Optional[HostView] = None, replicas: Sequence[UnitView] = ()):
        self.model_states = model_states
        self.queued = queued
        self.devices = devices
        """(device label, total, claimed by models, held by other processes) in bytes."""
        self.host_tier = host_tier
        self.host = host
        """The host memory budget, as the scheduler keeps it."""
        self.replicas = replicas


class _StateCollector(Collector):
    def __init__(self, read: Callable[[], StateSnapshot]):
        self._read = read

    def collect(self) -> Iterator:
        snap = self._read()
        state = GaugeMetricFamily("gthread_model_state", "1 for the state each model is in",
                                  labels=("model", "state"))
        for model, current in sorted(snap.model_states.items()):
            for name in ModelState:
                state.add_metric((model, name.value), 1.0 if name == current else 0.0)
        yield state
        queued = GaugeMetricFamily("gthread_queue_depth", "Requests waiting for their model to wake",
                                   labels=("model",))
        for model in sorted(snap.model_states):
            queued.add_metric((model,), snap.queued.get(model, 0))
        yield queued
        memory = GaugeMetricFamily("gthread_device_memory_bytes", "Accelerator memory: total, claimed by "
                                   "awake models, held by other processes", labels=("device", "kind"))
        for device, total, claimed, foreign in snap.devices:
            memory.add_metric((device, "total"), total)
            memory.add_metric((device, "claimed"), claimed)
            memory.add_metric((device, "foreign"), foreign)
        yield memory
        if snap.host is not None:
            yield from _budgets(snap.host, snap.replicas)
        usage = snap.host_tier
        tier = GaugeMetricFamily("gthread_host_tier_bytes", "The host tier (pinned host memory): staged "
                                 "weights, engines' KV offload buffers, and its budget", labels=("kind",))
        tier.add_metric(("used",), usage.weights)
        tier.add_metric(("kv_cache",), usage.reserved)
        tier.add_metric(("budget",), usage.budget)
        yield tier
        moved = CounterMetricFamily("gthread_weight_bytes", "Bytes of weights moved, by tier: disk into "
                                    "the host tier, and from the host tier into engines", labels=("tier",))
        moved.add_metric(("disk",), usage.from_disk)
        moved.add_metric(("system",), usage.to_engines)
        yield moved


def _budgets(host: HostView, replicas: Sequence[UnitView]) -> Iterator:
    budget = GaugeMetricFamily("gthread_host_memory_bytes", "Host memory budget: its limit, what the ledger counts "
                               "(engines awake and asleep, plus other), and other (the daemon, the host tier)",
                               labels=("kind",))
    budget.add_metric(("limit",), host.limit)
    budget.add_metric(("used",), host.used)
    budget.add_metric(("other",), host.other)
    yield budget
    sleeping = GaugeMetricFamily("gthread_sleeping_engines", "Engines asleep, and maxSleepingEngines (0: no limit)",
                                 labels=("kind",))
    sleeping.add_metric(("asleep",), host.asleep)
    sleeping.add_metric(("limit",), host.max_sleeping)
    yield sleeping
    memory = GaugeMetricFamily("gthread_replica_memory_bytes", "What each replica's engine holds, by rung "
                               "(awake, asleep, stopped): host memory, and device memory per device",
                               labels=("model", "replica", "rung", "memory"))
    for unit in replicas:
        labels = (unit.id.model, str(unit.id.replica), unit.rung)
        memory.add_metric(labels + ("host",), unit.host_bytes)
        for index, held in unit.claims.items():
            memory.add_metric(labels + (f"device{index}",), held)
    yield memory
