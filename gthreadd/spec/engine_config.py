"""Model spec -> EngineConfig: the one place where resource fields become engine settings."""

from pathlib import Path

from conversion.resolve import is_local
from engine.config import EngineConfig
from gthreadd.spec.byte_size import parse_size
from memory.host_limit import memory_limit
from gthreadd.spec.resource import ModelResource, ModelType

TASKS = {ModelType.chat: "generate", ModelType.asr: "generate", ModelType.embedding: "embed",
         ModelType.reranker: "classify"}
"""vLLM's runner for each modelType it serves: a Whisper (asr) model is a generating encoder-decoder."""
UNSERVED = {
    ModelType.tts: "text to speech: vLLM has no speech synthesis (vLLM-Omni's runs on GPUs, outside vLLM)",
}


def unservable(resource: ModelResource) -> str:
    """Why no engine gthreadd starts could serve this modelType, or "": refused at validation
    rather than accepted and broken at the first boot."""
    kind = resource.spec.model_type
    if kind in TASKS:
        return ""
    served = ", ".join(t.value for t in TASKS)
    return f"modelType {kind.value} ({UNSERVED[kind]}) cannot be served; gthreadd serves {served} models"


# Spec fields whose change needs new engines; the rest (sleep, fairness, staging, endpoints,
# replicas, placement hints) are applied live by the daemon and its scheduler.
ENGINE_FIELDS = frozenset({
    "model_name", "revision", "model_type", "dtype", "load_format", "gpu_memory_utilization",
    "quantization", "extra_args", "lora", "kv_cache",
})


def served_names(resource: ModelResource) -> tuple[str, ...]:
    """The names a request's `model` may use. The first is what responses report: the upstream id
    for a hub model, the Model's name for a local directory (a path makes a poor model id)."""
    name, upstream = resource.metadata.name, resource.spec.model_name
    if upstream == name:
        return (name,)
    return (name, upstream) if is_local(upstream) else (upstream, name)


KV_CACHE_DEFAULT = "4Gi"
"""spec.kvCache.maxSize when enabled without one."""


def kv_cache_bytes(resource: ModelResource) -> int:
    """The host memory an engine of this Model pins for offloaded KV blocks (spec.kvCache); 0: none."""
    kv_cache = resource.spec.kv_cache
    return parse_size(kv_cache.max_size or KV_CACHE_DEFAULT, memory_limit()) if kv_cache.enabled else 0


def engine_config_for(resource: ModelResource, model_path: Path, devices: tuple[int, ...] = (),
                      host_tier: str = "", on_miss: str = "disk", kv_offload_bytes: int = 0,
                      memory_scale: float = 1.0) -> EngineConfig:
    """`kv_offload_bytes`: what the daemon's ledger granted of kv_cache_bytes (0 on a CPU device,
    where vLLM refuses KV offloading, or when host memory has no room). `memory_scale`: the
    device's `engine_scale`, so that the engine allocates what the scheduler's ledger counts."""
    spec = resource.spec
    return EngineConfig(
        name=resource.metadata.name,
        model_path=str(model_path),
        served_model_names=served_names(resource),
        dtype=spec.dtype.value,
        gpu_memory_utilization=round(spec.memory_fraction * memory_scale, 4),
        tensor_parallel_size=spec.tensor_parallel,
        pipeline_parallel_size=spec.pipeline_parallel,
        quantization=spec.quantization.value,
        load_format=spec.load_format.value,
        task=TASKS[spec.model_type],
        devices=devices,
        extra_args=tuple(spec.extra_args),
        host_tier=host_tier if spec.load_format.value == "gthread" else "",
        on_miss=on_miss,
        max_lora_rank=spec.lora.max_rank if spec.lora.enabled else 0,
        kv_offload_bytes=kv_offload_bytes,
    )


def needs_restart(old: ModelResource, new: ModelResource) -> bool:
    a, b = old.spec, new.spec
    return (
        a.model_dump(include=ENGINE_FIELDS) != b.model_dump(include=ENGINE_FIELDS)
        or a.tensor_parallel != b.tensor_parallel
        or a.pipeline_parallel != b.pipeline_parallel
    )


def validation_config(resource: ModelResource) -> EngineConfig:
    """The EngineConfig a Model's extraArgs are checked in: its own flags, before any device or
    host tier is given to it."""
    return engine_config_for(resource, Path("/unresolved"), kv_offload_bytes=kv_cache_bytes(resource))


def extra_args_error(resource: ModelResource) -> str:
    """Why vLLM's own serve parser rejects the Model's extraArgs (or the flags they fight), "" when
    it accepts them: checked at validation and when the Model is applied, not when a device frees
    up. Imports vLLM, which takes seconds the first time (`gthread validate` asks vLLM's cached
    argument table first: gthreadd/spec/validate.py)."""
    from engine.args import EngineArgsError, build_args

    try:
        build_args(validation_config(resource))
    except EngineArgsError as exc:
        return str(exc)
    return ""
