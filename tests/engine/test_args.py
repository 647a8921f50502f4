"""extraArgs through vLLM's own parser (the real one; no engine is started)."""

import pytest

from engine.args import EngineArgsError, build_args, records_stats
from engine.config import EngineConfig


def config(*extra: str, **kw) -> EngineConfig:
    return EngineConfig(name="m", model_path="/models/m", served_model_names=("org/m", "m"),
                        extra_args=tuple(extra), **kw)


def test_spec_fields_become_engine_arguments():
    args = build_args(config("--max-model-len", "2048", dtype="float16", gpu_memory_utilization=0.5,
                             tensor_parallel_size=2, quantization="awq"))
    assert args.model == "/models/m" and args.served_model_name == ["org/m", "m"]
    assert (args.dtype, args.gpu_memory_utilization, args.tensor_parallel_size) == ("float16", 0.5, 2)
    assert (args.quantization, args.max_model_len) == ("awq", 2048)


def test_eager_by_default_on_the_cpu_and_extra_args_can_say_otherwise():
    assert build_args(config()).enforce_eager is True
    assert build_args(config("--no-enforce-eager")).enforce_eager is False


def test_stats_are_recorded_unless_extra_args_disable_them_as_for_vllm_serve():
    assert records_stats(config("--max-model-len", "2048"))
    assert not records_stats(config("--disable-log-stats"))
    assert build_args(config("--disable-log-stats")).disable_log_stats is True, "a flag the daemon passes too is accepted"


def test_unknown_flag_gets_vllms_message():
    with pytest.raises(EngineArgsError, match="unrecognized arguments: --no-such-flag"):
        build_args(config("--no-such-flag"))


def test_malformed_value_gets_vllms_message():
    with pytest.raises(EngineArgsError, match="max-model-len"):
        build_args(config("--max-model-len", "lots"))


def test_serve_checks_run_too():
    with pytest.raises(EngineArgsError, match="--enable-auto-tool-choice requires --tool-call-parser"):
        build_args(config("--enable-auto-tool-choice"))


@pytest.mark.parametrize("flag", ["--dtype", "--gpu-memory-utilization=0.5", "-tp", "--port"])
def test_flags_owned_by_the_spec_are_refused(flag):
    with pytest.raises(EngineArgsError, match="set it there"):
        build_args(config(flag, "1"))


def test_parser_names_are_checked_against_vllms_own():
    """vLLM looks them up only when an engine's serving layer is built: every boot would fail."""
    assert build_args(config("--enable-auto-tool-choice", "--tool-call-parser", "hermes")).tool_call_parser == "hermes"
    with pytest.raises(EngineArgsError, match="--tool-call-parser 'hermez' is not one of vLLM's parsers: .*hermes"):
        build_args(config("--enable-auto-tool-choice", "--tool-call-parser", "hermez"))
    with pytest.raises(EngineArgsError, match="--reasoning-parser 'deepseek' is not one of vLLM's parsers: .*deepseek_r1"):
        build_args(config("--reasoning-parser", "deepseek"))
    plugin = config("--tool-parser-plugin", "/opt/my_parser.py", "--enable-auto-tool-choice", "--tool-call-parser", "mine")
    assert build_args(plugin).tool_call_parser == "mine", "a plugin's names are the plugin's to check"


def test_kv_offloading_is_asked_for_only_where_vllm_runs_it(monkeypatch):
    from engine import args as engine_args

    config_with_cache = config(kv_offload_bytes=8 * 2**30)
    assert build_args(config_with_cache).kv_offloading_size is None, "vLLM refuses it on the CPU"
    monkeypatch.setattr(engine_args.current_platform, "is_cpu", lambda: False)
    monkeypatch.setattr(engine_args, "validate_parsed_serve_args", lambda args: None)
    assert build_args(config_with_cache).kv_offloading_size == 8.0
    with pytest.raises(EngineArgsError, match="spec.kvCache.maxSize"):
        build_args(config("--kv-offloading-size", "2"))
