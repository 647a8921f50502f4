"""What accelerators this host has: NVIDIA GPUs through NVML, or else one CPU device.

The CPU device stands for the RAM that vLLM's CPU backend draws from (the first NUMA node, which
is what it multiplies gpuMemoryUtilization by); models may claim `cpu_share` of it in all, so the
same scheduler time-shares CPU engines.
"""

import logging
import re
from pathlib import Path
from typing import Optional

import psutil

from memory.host_limit import cgroup_limit
from scheduler.inventory import CPU_PRODUCT, Device

log = logging.getLogger(__name__)


def probe(cpu_share: float) -> list[Device]:
    gpus = nvml_devices()
    return gpus if gpus else [cpu_device(cpu_share)]


def nvml_devices() -> list[Device]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        log.info("no NVIDIA driver (%s): using the CPU device", exc)
        return []
    devices = []
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        total = pynvml.nvmlDeviceGetMemoryInfo(handle).total
        product = gpu_product(pynvml.nvmlDeviceGetName(handle))
        mig = _mig_enabled(pynvml, handle)
        if mig:
            log.warning("GPU %d (%s) has MIG enabled: gthreadd places models on whole GPUs only, so none "
                        "will run there (disable MIG with nvidia-smi -i %d -mig 0)", index, product, index)
        devices.append(Device(index, pynvml.nvmlDeviceGetUUID(handle), product, total, total,
                              healthy=_healthy(pynvml, handle), mig=mig))
    return devices


def free_bytes(index: int) -> Optional[int]:
    """NVML's free memory of a GPU, None without NVML."""
    try:
        import pynvml

        return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).free
    except Exception:
        return None


def memory_held(pids: list[int], devices: list[Device]) -> dict[int, int]:
    """Bytes that these processes hold on each device: NVML's per-process accounting on GPUs; on
    the CPU device, their private memory. Devices where they hold nothing are left out."""
    held: dict[int, int] = {}
    for device in devices:
        used = private_memory(pids) if device.is_cpu else _gpu_memory(device.index, set(pids))
        if used:
            held[device.index] = used
    return held


def private_memory(pids) -> int:
    """The processes' anonymous resident memory (RssAnon), in all: what they allocated themselves
    (heaps, tensors, the KV cache, weights they loaded), which stopping them gives back; not the
    pages of shared libraries or of shared memory (the host tier's segments, counted once by the
    tier). Measured against USS on real engines (awake, asleep at level 1 and 2: within 2%), and
    a counter the kernel keeps: reading it costs microseconds, where USS walks every page table
    (17-50 ms per engine process idle, several times that while it serves) and was a tenth of
    the daemon's CPU under streamed load, polled every 5 s."""
    return _status_bytes(pids, "RssAnon:")


def unique_memory(pids) -> int:
    """The processes' unique resident memory (USS; RSS where USS may not be read), in all: the
    reference the benchmarks hold `private_memory` against. Slow: see there."""
    total = 0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            try:
                total += process.memory_full_info().uss
            except psutil.AccessDenied:
                total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def peak_resident(pids) -> int:
    """The sum of the processes' peak resident sets (VmHWM): what their start took at its most,
    the same pages of a shared library counted per process (the safe side)."""
    return _status_bytes(pids, "VmHWM:")


def _status_bytes(pids, field: str) -> int:
    """A /proc/PID/status field (kB) summed over the processes, in bytes; a process gone counts 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                total += next((int(line.split()[1]) * 1024 for line in status if line.startswith(field)), 0)
        except (OSError, ValueError):
            continue
    return total


def _gpu_memory(index: int, pids: set[int]) -> int:
    try:
        import pynvml

        running = pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(index))
    except Exception:
        return 0
    return sum(p.usedGpuMemory or 0 for p in running if p.pid in pids)


def gpu_product(name: str | bytes) -> str:
    """NVML's name in the `nvidia.com/gpu.product` label form: 'NVIDIA A40' -> 'NVIDIA-A40'."""
    if isinstance(name, bytes):
        name = name.decode()
    return re.sub(r"[^A-Za-z0-9.]+", "-", name.strip()).strip("-")


def _healthy(pynvml, handle) -> bool:
    try:
        pending = pynvml.nvmlDeviceGetRetiredPagesPendingStatus(handle)
        return pending != pynvml.NVML_FEATURE_ENABLED
    except pynvml.NVMLError:
        return True


def _mig_enabled(pynvml, handle) -> bool:
    try:
        current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
    except pynvml.NVMLError:  # a GPU without MIG support
        return False
    return current == pynvml.NVML_DEVICE_MIG_ENABLE


def cpu_device(share: float) -> Device:
    """NUMA node 0's memory, or the daemon's cgroup limit where lower: a pod's limit or a unit's
    MemoryMax= is what the OOM killer enforces, so a claim is a fraction of that."""
    from engine.compat import cpu_memory_basis  # vLLM, imported only on a host without GPUs

    node = _numa_node0_bytes() or _meminfo_bytes(Path("/proc/meminfo"))
    limit = cgroup_limit()
    total = min(node, limit) if limit is not None else node
    basis = cpu_memory_basis() or node
    return Device(0, "cpu-0", CPU_PRODUCT, total, int(total * share), engine_basis_bytes=basis if basis != total else 0)


def _numa_node0_bytes() -> int:
    return _meminfo_bytes(Path("/sys/devices/system/node/node0/meminfo"))


def _meminfo_bytes(path: Path) -> int:
    try:
        match = re.search(r"MemTotal:\s+(\d+) kB", path.read_text())
    except OSError:
        return 0
    return int(match.group(1)) * 1024 if match else 0
