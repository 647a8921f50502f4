"""The argument table's verdicts against vLLM's own (build_args, the real parser): each is the same,
or there is none and vLLM is asked; the common cases get one."""

from pathlib import Path

import pytest

from engine.arg_table import extract
from engine.arg_table_check import ArgTableCheck
from engine.args import EngineArgsError, build_args
from engine.config import EngineConfig
from gthreadd.spec.engine_config import unservable, validation_config
from gthreadd.spec.manifests import load_file

SEEDS = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "seeds").glob("*.yaml"))


def config(*extra: str, **kw) -> EngineConfig:
    return EngineConfig(name="m", model_path="/models/m", served_model_names=("org/m", "m"),
                        extra_args=tuple(extra), **kw)


def seed_configs() -> list[EngineConfig]:
    return [validation_config(m) for path in SEEDS for m in load_file(path).models if not unservable(m)]


# Judged from the table: what a user writes most.
COMMON = [
    config(), config("--max-model-len", "2048", dtype="float16", gpu_memory_utilization=0.5,
                     tensor_parallel_size=2, quantization="awq"),
    config("--no-enforce-eager"), config("--enforce-eager", "--no-enforce-eager"), config("--disable-log-stats"),
    config("--no-such-flag"), config("--max-model-len", "lots"), config("--max-num-seqs", "x"),
    config("--dtype", "1"), config("--gpu-memory-utilization=0.5", "1"), config("-tp", "1"), config("--port", "1"),
    config("--kv-offloading-size", "2"), config("--api-key", "k"),
    config("--model-loader-extra-config", "{}", load_format="gthread", host_tier="/dev/shm/t"),
    config("--enable-auto-tool-choice", "--tool-call-parser", "hermes"),
    config("--enable_auto_tool_choice", "--tool_call_parser", "hermes"),
    config("--reasoning-parser", "deepseek"), config("--reasoning-parser", "deepseek_r1"),
    config("--tool-call-parser", "hermez"),
    config("--tool-parser-plugin", "/opt/my_parser.py", "--reasoning-parser", "mine"),
    config("--enable-auto-tool-choice"), config("--enable-log-outputs"),
    config("--enable-log-outputs", "--enable-log-requests"), config("--enable-per-request-metrics"),
    config("--max_model_len", "2048"), config("--max-model-len=2k"), config("--max-model-len", "auto"),
    config("--max-model-len", "1.5K"), config("--max-model-len", "1.5k"), config("--max-model-len", " 4K "),
    config("--max-model-len"), config("--max-num-batched-tokens", "8k"), config("--max-num-batched-tokens", "2.5G"),
    config("--kv-cache-dtype", "nonsense"), config("--kv-cache-dtype", "fp8"), config("--tokenizer-mode", "nope"),
    config("--limit-mm-per-prompt", '{"image": 2}'),
    config("--hf-overrides", '{"rope_scaling": {"rope_type": "linear", "factor": 2.0}}'),
    config("--hf-overrides", "org/config"), config("--speculative-config", '{"method": "ngram"}'),
    config("--speculative-config", "None"), config("--seed", "-1"), config("--seed", "1.5"),
    config("--max-model", "2048"), config("--max", "1"), config("--trust-remote-code"),
    config("--enable-prompt-embeds=1"), config("--max-num-seqs="), config("stray"), config("one", "two"),
    config("--", "x"), config("--generation-config", "vllm"), config("--max-model-len", "512", task="embed"),
    config("--max-model-len", "512", max_lora_rank=16), config("--max-model-len", "512", kv_offload_bytes=2**33),
    config("--max-model-len", "512", load_format="gthread", host_tier="/dev/shm/t", on_miss="kvikio"),
    config("--data-parallel-multi-port-external-lb"),
    *seed_configs(),
]
# vLLM is asked: what the table does not reproduce. Still never a different verdict.
OTHERS = [
    config("-O3"), config("-O", "3"), config("-O"), config("--compilation-config.mode", "3"),
    config("--compilation-config", '{"mode": 3}'), config("--config", "serve.yaml"), config("--help=all"),
    config("--lora-modules", "a=/x"), config("--chat-template", "/no/such/template.jinja"),
    config("--enable-auto-tool-choice", "--tool-call-parser", "hermez"), config("--moe-backend", "triton"),
    config("--seed", "-0.5"), config("--grpc-port", "1"), config("--sse-keep-alive-interval", "-1"),
    config("--limit-mm-per-prompt", "{bad"),  # vLLM's message shows json.loads's address in its process
    config("--tool-parser-plugin", "/opt/my_parser.py", "--enable-auto-tool-choice", "--tool-call-parser", "mine"),
]


def vllms_verdict(c: EngineConfig) -> str:
    try:
        build_args(c)
    except EngineArgsError as exc:
        return str(exc)
    return ""


@pytest.fixture(scope="module")
def check() -> ArgTableCheck:
    table = extract()
    assert table["actions"] is not None, "the rebuilt parser agrees with vLLM's on the base argv"
    return ArgTableCheck(table)


@pytest.mark.parametrize("c", COMMON + OTHERS, ids=lambda c: " ".join(c.extra_args) or "(none)")
def test_a_verdict_from_the_table_is_vllms(check, c):
    if (verdict := check.verdict(c)) is not None:
        assert verdict == vllms_verdict(c)


@pytest.mark.parametrize("c", COMMON, ids=lambda c: " ".join(c.extra_args) or "(none)")
def test_the_common_cases_are_judged_by_the_table(check, c):
    assert check.verdict(c) is not None


def test_the_verdicts_say_what_vllm_says(check):
    assert check.verdict(config("--no-such-flag")) == "unrecognized arguments: --no-such-flag"
    assert check.verdict(config("--max-model-len", "lots")) == (
        "argument --max-model-len: invalid human_readable_int_or_auto value: 'lots'")
    assert check.verdict(config("--enable-auto-tool-choice")) == (
        "Error: --enable-auto-tool-choice requires --tool-call-parser")
    assert check.verdict(config("--dtype", "float16")).startswith("extraArgs sets --dtype, which spec.dtype")
    assert check.verdict(config("--max_model_len", "2048")) == ""


def test_the_flags_the_platform_adds_are_those_of_the_platform_the_table_was_read_on(check, monkeypatch):
    """Sleep mode and KV offloading on CUDA, --enforce-eager on the CPU (engine/serve_argv.py)."""
    from engine import args as engine_args

    monkeypatch.setattr(engine_args.current_platform, "is_cpu", lambda: False)
    gpu = ArgTableCheck(check.table | {"platform": "other"})
    for c in (config("--max-model-len", "512", kv_offload_bytes=2**33), config("--enforce-eager"),
              config("--no-such-flag"), config("--enable-sleep-mode")):
        assert gpu.verdict(c) == vllms_verdict(c)
