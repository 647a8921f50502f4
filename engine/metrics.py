"""vLLM's serving metrics for every engine in the daemon, labelled by model.

vLLM's own Prometheus logger writes to the process-global registry and unregisters an earlier
engine's `vllm:` metrics when a new engine starts, so with several engines in one process only the
newest would be seen. Each engine here gets a stat logger (vLLM's StatLoggerBase plugin interface)
that records into a registry the daemon owns, under vLLM's metric names and its `model_name` and
`engine` labels, so dashboards built for `vllm serve` work per model.
"""

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from engine.compat import StatLoggerBase

LABELS = ("model_name", "engine")
_LATENCY = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
            20.0, 40.0, 80.0)


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry):
        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, LABELS + extra, registry=registry)

        self.running = Gauge("vllm:num_requests_running", "Requests in model execution batches", LABELS,
                             registry=registry)
        self.waiting = Gauge("vllm:num_requests_waiting", "Requests waiting in the engine", LABELS,
                             registry=registry)
        self.kv_cache_usage = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage, 1 is full", LABELS,
                                    registry=registry)
        self.prompt_tokens = counter("vllm:prompt_tokens", "Prefill tokens processed")
        self.generation_tokens = counter("vllm:generation_tokens", "Generation tokens processed")
        self.preemptions = counter("vllm:num_preemptions", "Engine preemptions")
        self.request_success = counter("vllm:request_success", "Finished requests", ("finished_reason",))
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Time to first token", LABELS,
                              buckets=_LATENCY, registry=registry)
        self.inter_token = Histogram("vllm:inter_token_latency_seconds", "Inter-token latency", LABELS,
                                     buckets=_LATENCY, registry=registry)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "End-to-end request latency in the engine",
                             LABELS, buckets=_LATENCY, registry=registry)
        self._series: set[tuple[object, tuple[str, ...]]] = set()

    def logger_factory(self, model_name: str) -> Callable:
        """What AsyncLLM's `stat_loggers` takes: called with (vllm_config, engine_index)."""
        metrics = self

        class EngineStatLogger(StatLoggerBase):
            def __init__(self, vllm_config, engine_index: int = 0):
                self.labels = (model_name, str(engine_index))

            def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0):
                metrics.record(self.labels, scheduler_stats, iteration_stats)

            def log_engine_initialized(self):
                pass

        return EngineStatLogger

    def record(self, labels: tuple[str, str], scheduler_stats, iteration_stats) -> None:
        if scheduler_stats is not None:
            self._series_of(self.running, labels).set(scheduler_stats.num_running_reqs)
            self._series_of(self.waiting, labels).set(scheduler_stats.num_waiting_reqs)
            self._series_of(self.kv_cache_usage, labels).set(scheduler_stats.kv_cache_usage)
        if iteration_stats is None:
            return
        self._series_of(self.prompt_tokens, labels).inc(iteration_stats.num_prompt_tokens)
        self._series_of(self.generation_tokens, labels).inc(iteration_stats.num_generation_tokens)
        self._series_of(self.preemptions, labels).inc(iteration_stats.num_preempted_reqs)
        for seconds in iteration_stats.time_to_first_tokens_iter:
            self._series_of(self.ttft, labels).observe(seconds)
        for seconds in iteration_stats.inter_token_latencies_iter:
            self._series_of(self.inter_token, labels).observe(seconds)
        for finished in iteration_stats.finished_requests:
            reason = str(getattr(finished.finish_reason, "name", finished.finish_reason)).lower()
            self._series_of(self.request_success, (*labels, reason)).inc()
            self._series_of(self.e2e, labels).observe(finished.e2e_latency)

    def _series_of(self, metric, labels: tuple[str, ...]):
        self._series.add((metric, labels))
        return metric.labels(*labels)

    def forget(self, model_name: str) -> None:
        """A stopped engine's series go with it (a deleted model must not linger in dashboards)."""
        for metric, labels in [s for s in self._series if s[1][0] == model_name]:
            metric.remove(*labels)
            self._series.discard((metric, labels))
