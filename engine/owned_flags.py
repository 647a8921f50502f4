"""Flags that a Model's spec or the daemon owns, refused in extraArgs: two sources for one value is a
trap. No vLLM import: `gthread validate` checks them from vLLM's argument table (engine/arg_table_check.py)."""

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


def owned_flag_error(extra_args: tuple[str, ...], load_format: str) -> str:
    """Why the first owned flag in extra_args is refused, "" when none is there."""
    owned = OWNED_FLAGS | (GTHREAD_OWNED_FLAGS if load_format == "gthread" else {})
    for arg in extra_args:
        flag = arg.split("=", 1)[0]
        if flag in owned:
            return f"extraArgs sets {flag}, which {owned[flag]} controls; set it there"
    return ""
