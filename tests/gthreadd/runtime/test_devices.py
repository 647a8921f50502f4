"""The device probe: NVIDIA GPUs through NVML (here a test double of pynvml), the CPU device
without a driver, and MIG-enabled GPUs reported but never placed on."""

import logging
import sys
import types

from gthreadd.runtime import devices
from scheduler.placement import unplaceable_reason, windows
from scheduler.units import Policy


class FakeNvmlError(Exception):
    pass


def fake_pynvml(gpus: list[dict]) -> types.ModuleType:
    """A test double of pynvml over `gpus`: name, total, mig (None: MIG not supported)."""
    m = types.ModuleType("pynvml")
    m.NVMLError = FakeNvmlError
    m.NVML_DEVICE_MIG_ENABLE = 1
    m.NVML_FEATURE_ENABLED = 1
    m.nvmlInit = lambda: None
    m.nvmlDeviceGetCount = lambda: len(gpus)
    m.nvmlDeviceGetHandleByIndex = lambda i: gpus[i]
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{gpus.index(h)}"
    m.nvmlDeviceGetName = lambda h: h["name"]
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=h["total"], free=h["total"])
    m.nvmlDeviceGetRetiredPagesPendingStatus = lambda h: 0

    def mig_mode(h):
        if h["mig"] is None:
            raise FakeNvmlError("Not Supported")
        return h["mig"], h["mig"]

    m.nvmlDeviceGetMigMode = mig_mode
    return m


def test_a_mig_enabled_gpu_is_reported_with_a_clear_warning_and_never_placed_on(monkeypatch, caplog):
    gpus = [{"name": "NVIDIA A100-SXM4-80GB", "total": 80 * 2**30, "mig": 0},
            {"name": "NVIDIA A100-SXM4-80GB", "total": 80 * 2**30, "mig": 1},
            {"name": b"NVIDIA A40", "total": 48 * 2**30, "mig": None}]
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus))
    with caplog.at_level(logging.WARNING, logger="gthreadd.runtime.devices"):
        found = devices.probe(cpu_share=0.5)
    assert [(d.index, d.product, d.mig, d.usable) for d in found] == [
        (0, "NVIDIA-A100-SXM4-80GB", False, True), (1, "NVIDIA-A100-SXM4-80GB", True, False),
        (2, "NVIDIA-A40", False, True)]
    assert "GPU 1 (NVIDIA-A100-SXM4-80GB) has MIG enabled" in caplog.text
    assert windows(found, Policy(tensor_parallel=2)) == []  # 0 and 2 are not contiguous
    assert windows(found, Policy()) == [(0,), (2,)]
    only_mig = [found[1]]
    assert "in MIG mode" in unplaceable_reason(only_mig, Policy())


def test_without_a_driver_the_cpu_device_stands_in(monkeypatch):
    m = fake_pynvml([])

    def no_driver():
        raise FakeNvmlError("NVML Shared Library Not Found")

    m.nvmlInit = no_driver
    monkeypatch.setitem(sys.modules, "pynvml", m)
    [cpu] = devices.probe(cpu_share=0.5)
    assert cpu.is_cpu and cpu.capacity_bytes == cpu.total_bytes // 2


def test_in_a_memory_cgroup_the_cpu_device_is_its_limit_and_the_engine_is_told_the_rescaled_fraction(monkeypatch):
    """vLLM's CPU backend multiplies gpuMemoryUtilization by the NUMA node's memory (capped only by
    a cgroup limit it can see at the mount's root): the daemon's device is the limit it really runs
    under, and the engine is given the fraction that allocates the same bytes."""
    import engine.compat

    node = devices._numa_node0_bytes() or devices._meminfo_bytes(devices.Path("/proc/meminfo"))
    monkeypatch.setattr(devices, "cgroup_limit", lambda: node // 4)
    monkeypatch.setattr(engine.compat, "cpu_memory_basis", lambda node_index=0: node)
    cpu = devices.cpu_device(0.5)
    assert (cpu.total_bytes, cpu.capacity_bytes, cpu.engine_basis_bytes) == (node // 4, node // 8, node)
    assert abs(cpu.engine_scale - 0.25) < 1e-3
    assert abs(0.3 * cpu.engine_scale * node - 0.3 * cpu.total_bytes) < 2**20, "the engine allocates the claim"

    monkeypatch.setattr(devices, "cgroup_limit", lambda: None)
    cpu = devices.cpu_device(0.5)
    assert (cpu.total_bytes, cpu.engine_basis_bytes, cpu.engine_scale) == (node, 0, 1.0), "no cgroup: as before"


def test_the_engine_config_carries_the_rescaled_fraction(tmp_path):
    import yaml

    from gthreadd.spec.engine_config import engine_config_for
    from gthreadd.spec.resource import ModelResource, model_yaml

    manifest = model_yaml("m", tmp_path, '  gpuMemoryUtilization: "0.3"\n')
    resource = ModelResource.model_validate(yaml.safe_load(manifest))
    assert engine_config_for(resource, tmp_path).gpu_memory_utilization == 0.3
    assert engine_config_for(resource, tmp_path, memory_scale=0.25).gpu_memory_utilization == 0.075


def test_private_memory_counts_what_a_process_allocated_as_its_unique_memory_does():
    """A real child process that allocates and touches 256 MiB: the cheap counter sees it, and
    agrees with the page-table walk (USS) it stands in for."""
    import subprocess
    import sys

    from gthreadd.runtime.devices import private_memory, unique_memory

    child = subprocess.Popen([sys.executable, "-c", "import sys; b = bytearray(256 << 20); print(flush=True); "
                              "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()  # allocated (bytearray zero-fills, so every page is touched)
        private, unique = private_memory([child.pid]), unique_memory([child.pid])
        assert private >= 256 << 20
        assert abs(private - unique) <= 0.05 * unique, (private, unique)
    finally:
        child.kill()
        child.wait()
    assert private_memory([child.pid]) == 0, "a process that is gone holds nothing"
