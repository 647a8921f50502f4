"""engine/metrics.py: what vLLM's stat logger interface hands an engine's logger ends up in the
daemon's registry under vLLM's names and the model's labels. The stats are test doubles shaped like
vLLM's SchedulerStats, IterationStats and FinishedRequestStats (the fields metrics.py reads)."""

from types import SimpleNamespace

from prometheus_client import CollectorRegistry

from engine.metrics import EngineMetrics


def scheduler_stats(running=2, waiting=1, usage=0.25):
    return SimpleNamespace(num_running_reqs=running, num_waiting_reqs=waiting, kv_cache_usage=usage)


def iteration_stats(prompt=0, generation=2, ttfts=(), itls=(0.02, 0.03), finished=()):
    return SimpleNamespace(num_prompt_tokens=prompt, num_generation_tokens=generation, num_preempted_reqs=0,
                           time_to_first_tokens_iter=list(ttfts), inter_token_latencies_iter=list(itls),
                           finished_requests=[SimpleNamespace(finish_reason=r, e2e_latency=1.5, request_id=f"chatcmpl-r{i}",
                                                              num_prompt_tokens=10, num_generation_tokens=i)
                                              for i, r in enumerate(finished)])


def value(registry, name, **labels):
    return registry.get_sample_value(name, {"model_name": "m", "engine": "0", **labels})


def test_an_engines_steps_are_counted_under_its_model():
    registry = CollectorRegistry()
    finished = []
    logger = EngineMetrics(registry, on_finished=lambda rid, n: finished.append((rid, n))).logger_factory("m")(
        vllm_config=None, engine_indexes=[0])
    logger.record(scheduler_stats(), iteration_stats(prompt=7, generation=1, ttfts=(0.2,), itls=()))
    logger.record(scheduler_stats(running=1, waiting=0), iteration_stats(generation=2, finished=("length", "stop")))
    logger.record(None, iteration_stats(generation=1, itls=(0.04,), finished=("stop",)))

    assert value(registry, "vllm:num_requests_running") == 1 and value(registry, "vllm:num_requests_waiting") == 0
    assert value(registry, "vllm:prompt_tokens_total") == 7
    assert value(registry, "vllm:generation_tokens_total") == 4
    assert value(registry, "vllm:time_to_first_token_seconds_count") == 1
    assert value(registry, "vllm:inter_token_latency_seconds_count") == 3
    assert value(registry, "vllm:request_success_total", finished_reason="stop") == 2
    assert value(registry, "vllm:request_success_total", finished_reason="length") == 1
    assert value(registry, "vllm:e2e_request_latency_seconds_count") == 3
    assert finished == [("chatcmpl-r0", 10), ("chatcmpl-r1", 11), ("chatcmpl-r0", 10)], "each one's tokens, for its key"


def test_a_stopped_models_series_are_forgotten_and_anothers_are_kept():
    registry = CollectorRegistry()
    metrics = EngineMetrics(registry)
    gone, kept = (metrics.logger_factory(name)(None, [0]) for name in ("m", "other"))
    again = metrics.logger_factory("m")(None, [0])  # a restart under the same labels, before the stop is seen
    for logger in (gone, kept, again):
        logger.record(scheduler_stats(), iteration_stats(finished=("stop",)))

    metrics.forget("m")

    assert value(registry, "vllm:generation_tokens_total") is None
    assert value(registry, "vllm:request_success_total", finished_reason="stop") is None
    assert registry.get_sample_value("vllm:generation_tokens_total", {"model_name": "other", "engine": "0"}) == 2


def test_vllm_adds_no_prometheus_logger_of_its_own_beside_the_engines(checkpoint):
    """Through the installed vLLM's StatLoggerManager, as AsyncLLM builds it: only the daemon's
    logger records (vLLM's own would record every step again into its global registry)."""
    from vllm.v1.metrics.loggers import PrometheusStatLogger, StatLoggerManager

    from engine.compat import AsyncEngineArgs

    config = AsyncEngineArgs(model=str(checkpoint), max_model_len=512).create_engine_config()
    registry = CollectorRegistry()
    ours = EngineMetrics(registry).logger_factory("m")
    manager = StatLoggerManager(config, custom_stat_loggers=[ours], enable_default_loggers=False)
    prometheus = [logger for logger in manager.stat_loggers if isinstance(logger, PrometheusStatLogger)]
    assert [type(logger) for logger in prometheus] == [ours], "ours stands in for vLLM's"
    manager.record(scheduler_stats(), iteration_stats(generation=3), engine_idx=0)
    manager.record_sleep_state(1, 1)
    manager.log()
    assert value(registry, "vllm:generation_tokens_total") == 3
