"""The accelerators the scheduler hands out, as plain values (probing them is the daemon's job)."""

from dataclasses import dataclass


CPU_PRODUCT = "cpu"
"""The product of the CPU device a host without GPUs serves on."""


@dataclass(frozen=True)
class Device:
    index: int
    uuid: str
    product: str
    """In the `nvidia.com/gpu.product` form, e.g. NVIDIA-A40; `cpu` for the CPU device."""
    total_bytes: int
    """What a model's gpuMemoryUtilization is a fraction of (vLLM's own basis)."""
    capacity_bytes: int
    """What models may claim in all; below total_bytes for the CPU device (a share of RAM)."""
    healthy: bool = True
    engine_basis_bytes: int = 0
    """What the engine itself multiplies gpuMemoryUtilization by, where that differs from
    total_bytes (vLLM's CPU backend does not see the cgroup the daemon was put in); 0: total_bytes.
    The engine is then given the fraction rescaled, so that it allocates what the ledger counts."""
    mig: bool = False
    """MIG enabled: its memory belongs to MIG instances, which whole-GPU placement cannot use, so
    the device is reported and never placed on."""

    @property
    def engine_scale(self) -> float:
        """What a Model's gpuMemoryUtilization is multiplied by before the engine gets it."""
        return self.total_bytes / self.engine_basis_bytes if self.engine_basis_bytes else 1.0

    @property
    def usable(self) -> bool:
        return self.healthy and not self.mig

    @property
    def is_cpu(self) -> bool:
        return self.product == CPU_PRODUCT


def device_object_name(node: str, index: int, product: str) -> str:
    """A device's name as `gthread get gpus` and the GPU objects show it (seed 002: gpu-<node>-<index>);
    the CPU device of a host without GPUs is cpu-<node>-<index>."""
    return f"{'cpu' if product == CPU_PRODUCT else 'gpu'}-{node}-{index}"
