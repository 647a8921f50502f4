"""vLLM's serving metrics for every engine in the daemon, labelled by model.

vLLM's own Prometheus logger writes to the process-global registry and unregisters an earlier
engine's `vllm:` metrics when a new engine starts, so with several engines in one process only the
newest would be seen. Each engine here gets a stat logger in its place (vLLM's stat logger
interface) that records into a registry the daemon owns, under vLLM's metric names and its
`model_name` and `engine` labels, so dashboards built for `vllm serve` work per model.
"""

import contextlib
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from engine.compat import PrometheusStatLogger

LABELS = ("model_name", "engine")
_LATENCY = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
            20.0, 40.0, 80.0)


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry, on_finished: Callable[[str | None, int], None] = lambda rid, n: None):
        """`on_finished(request_id, tokens)`: each finished request, with its prompt and generated
        tokens (the daemon charges them to the request's API key)."""
        self.on_finished = on_finished
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
        self._engines: list[EngineSeries] = []

    def logger_factory(self, model_name: str) -> type:
        """What AsyncLLM's `stat_loggers` takes: a logger class for the model's engine. It is a
        PrometheusStatLogger, because vLLM adds its own one to every engine unless a stat logger
        given is one (StatLoggerManager), and that one would record every step a second time, into
        the process-global registry nobody exports (4% of the daemon's main thread in a streamed
        profile, more than this logger itself). It shares nothing with vLLM's but the type: none
        of its state is built, and every method of vLLM's that this one does not define does
        nothing here."""
        metrics = self

        class EngineStatLogger(PrometheusStatLogger):
            def __init__(self, vllm_config, engine_indexes: list[int] | None = None):
                self.series = {i: metrics.series((model_name, str(i))) for i in engine_indexes or [0]}

            def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int | None = None):
                self.series[engine_idx or 0].record(scheduler_stats, iteration_stats)

        for name, member in vars(PrometheusStatLogger).items():
            if callable(member) and not name.startswith("_") and name not in vars(EngineStatLogger):
                setattr(EngineStatLogger, name, _nothing)
        return EngineStatLogger

    def series(self, labels: tuple[str, str]) -> "EngineSeries":
        """One engine's series, bound to its labels once: `record` runs on the engine's output path
        for every step, and observes every token's latency, so it looks nothing up."""
        bound = EngineSeries(self, labels)
        self._engines.append(bound)
        return bound

    def forget(self, model_name: str) -> None:
        """A stopped engine's series go with it (a deleted model must not linger in dashboards)."""
        for engine in [e for e in self._engines if e.labels[0] == model_name]:
            engine.remove()
            self._engines.remove(engine)


def _nothing(*args, **kwargs) -> None:
    pass


class EngineSeries:
    def __init__(self, metrics: EngineMetrics, labels: tuple[str, str]):
        self.metrics, self.labels = metrics, labels
        self._gauges = [metric.labels(*labels) for metric in (metrics.running, metrics.waiting, metrics.kv_cache_usage)]
        self._prompt, self._generation, self._preemptions, self._ttft, self._inter_token, self._e2e = (
            metric.labels(*labels) for metric in (metrics.prompt_tokens, metrics.generation_tokens,
                                                  metrics.preemptions, metrics.ttft, metrics.inter_token, metrics.e2e))
        self._success: dict[str, object] = {}
        """Finished requests by reason, bound as reasons are first seen."""

    def record(self, scheduler_stats, iteration_stats) -> None:
        if scheduler_stats is not None:
            running, waiting, usage = self._gauges
            running.set(scheduler_stats.num_running_reqs)
            waiting.set(scheduler_stats.num_waiting_reqs)
            usage.set(scheduler_stats.kv_cache_usage)
        if iteration_stats is None:
            return
        self._prompt.inc(iteration_stats.num_prompt_tokens)
        self._generation.inc(iteration_stats.num_generation_tokens)
        if iteration_stats.num_preempted_reqs:
            self._preemptions.inc(iteration_stats.num_preempted_reqs)
        for seconds in iteration_stats.time_to_first_tokens_iter:
            self._ttft.observe(seconds)
        for seconds in iteration_stats.inter_token_latencies_iter:
            self._inter_token.observe(seconds)
        for finished in iteration_stats.finished_requests:
            reason = str(getattr(finished.finish_reason, "name", finished.finish_reason)).lower()
            if (success := self._success.get(reason)) is None:
                success = self._success[reason] = self.metrics.request_success.labels(*self.labels, reason)
            success.inc()
            self._e2e.observe(finished.e2e_latency)
            self.metrics.on_finished(finished.request_id, finished.num_prompt_tokens + finished.num_generation_tokens)

    def remove(self) -> None:
        """Another engine under the same labels (a replica, a restart) may have removed them first."""
        m = self.metrics
        for metric in (m.running, m.waiting, m.kv_cache_usage, m.prompt_tokens, m.generation_tokens, m.preemptions,
                       m.ttft, m.inter_token, m.e2e):
            with contextlib.suppress(KeyError):
                metric.remove(*self.labels)
        for reason in self._success:
            with contextlib.suppress(KeyError):
                m.request_success.remove(*self.labels, reason)
