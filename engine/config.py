"""What the daemon asks of an engine, in plain terms: no Model resource, no HTTP."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EngineConfig:
    name: str
    model_path: str
    served_model_names: tuple[str, ...]
    dtype: str = "bfloat16"
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    quantization: str = ""
    load_format: str = "auto"
    task: str = "generate"
    """generate, embed or classify: which of vLLM's runners the model needs."""
    devices: tuple[int, ...] = ()
    """Accelerator indices the engine may use (CUDA_VISIBLE_DEVICES); empty on the CPU."""
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    host_tier: str = ""
    """Directory of the daemon's host-tier segments, for the gthread loader; empty: read the disk."""
    max_lora_rank: int = 0
    """LoRA adapters up to this rank may be loaded at run time; 0: LoRA off (spec.lora)."""
    kv_offload_bytes: int = 0
    """Host memory for prefix KV blocks beyond the engine's own (vLLM's native KV offloading,
    spec.kvCache); 0: none. vLLM runs it on CUDA and XPU devices only."""
    on_miss: str = "disk"
    """Where the gthread loader reads when the host tier lacks the model: "kvikio" or "disk"."""
