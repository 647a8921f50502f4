"""Model spec -> the scheduler's Policy, including whether this host can run the model at all."""

import socket

from gthreadd.spec.resource import ModelResource
from scheduler.inventory import Device
from scheduler.units import Policy


def host_labels(devices: list[Device]) -> dict[str, str]:
    """The node labels a nodeSelector may ask for, as Kubernetes and the GPU operator set them."""
    gpus = [d for d in devices if not d.is_cpu]
    labels = {"kubernetes.io/hostname": socket.gethostname(), "nvidia.com/gpu.present": str(bool(gpus)).lower()}
    if gpus:
        labels["nvidia.com/gpu.product"] = gpus[0].product
        labels["nvidia.com/gpu.count"] = str(len(gpus))
    return labels


ENGINE_HOST_MEMORY = {"cpu": 1 << 30, "gpu": 3 << 30}
"""Host memory a vLLM engine's processes hold beyond a CPU claim, for a model's first boot: until
that boot's peak is measured, what the host ledger reserves. On the CPU the worker's claim is its
whole allocation and the EngineCore and runtime add about 0.7 GiB (SmolLM2-135M: peak 5.4 GiB for
a 4.7 GiB claim, bench/README); a CUDA engine holds its runtime and pinned buffers in host memory."""


def host_estimate(memory_fraction: float, devices: list[Device]) -> int:
    cpu = [d for d in devices if d.is_cpu]
    if cpu:
        return int(memory_fraction * cpu[0].total_bytes) + ENGINE_HOST_MEMORY["cpu"]
    return ENGINE_HOST_MEMORY["gpu"]


def policy_for(resource: ModelResource, devices: list[Device]) -> Policy:
    spec = resource.spec
    labels = host_labels(devices)
    missing = {k: v for k, v in spec.node_selector.items() if labels.get(k) != v}
    reason = ""
    if missing:
        reason = "nodeSelector " + ", ".join(f"{k}={v}" for k, v in missing.items()) + \
                 f" does not match this host ({', '.join(f'{k}={v}' for k, v in labels.items())})"
    elif spec.product and not any(d.product == spec.product for d in devices):
        reason = f"product {spec.product} is not on this host (it has {', '.join(sorted({d.product for d in devices}))})"
    return Policy(
        tensor_parallel=spec.tensor_parallel,
        memory_fraction=spec.memory_fraction,
        popular=spec.fairness.popular,
        min_runtime=spec.fairness.min_runtime.total_seconds(),
        max_wait=spec.fairness.max_wait_time.total_seconds(),
        idle_timeout=spec.sleep.idle_timeout.total_seconds(),
        drain_timeout=spec.sleep.drain_timeout.total_seconds(),
        sleep_level=spec.sleep.level,
        product=spec.product,
        unschedulable_reason=reason,
        host_estimate=host_estimate(spec.memory_fraction, devices),
    )
