"""What sleeping engines keep on a GPU and in host memory, against what the scheduler's ledgers
count for them (issue 19). Needs a GPU.

Three Models on the demo checkpoint, 0.25 of the GPU each: `l1` sleeps at level 1 (vLLM keeps the
weights in host memory), `l2` at level 2, `gt` uses loadFormat gthread (level 2, reloads from the
host tier). Each is asked once, then left to idle into sleep. Asleep, the GPU memory their engine
processes hold (NVML per process) is set against the ledger's held bytes (`/status` replicas'
deviceBytes), and their unique host memory (psutil USS) against the ledger's hostBytes; then one
is woken and the ledger's claimed bytes are set against NVML again. Ratios near 1.00 mean the
ledger counts what the driver and the OS see (the goal: within 5%). The ledger counts host memory
as the processes' RssAnon (gthreadd/runtime/devices.private_memory), USS is the independent page
walk: on a GPU the ratio also shows whether vLLM's level-1 copy in pinned (cudaHostAlloc) memory
is anonymous memory, as it is counted. Without a GPU it runs on the CPU device, whose memory is
the engines' private memory.

    python3 bench/gpu/sleep_residue.py --checkpoint .state/checkpoints/smollm2-135m-instruct
"""

import argparse
import sys
import tempfile
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from gthreadd.runtime.devices import unique_memory  # noqa: E402
from gthreadd.spec.byte_size import human_bytes  # noqa: E402
from tests.e2e.daemon_process import DaemonProcess  # noqa: E402

IDLE = "  fairness: {minRuntime: 1s, maxWaitTime: 1s}\n  sleep: {idleTimeout: 15s, level: %d}\n"
MODELS = {"l1": IDLE % 1, "l2": IDLE % 2, "gt": IDLE % 2 + "  loadFormat: gthread\n"}


def engines(d: DaemonProcess) -> list[int]:
    return [p.pid for p in psutil.Process(d.proc.pid).children(recursive=True)]


def device_bytes(pids: list[int]) -> int:
    """GPU 0's memory that these processes hold (NVML per process); without a GPU, the CPU device's
    (their USS), which is what the daemon measures there."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return unique_memory(pids)
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    return sum(p.usedGpuMemory or 0 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid in pids)


def ledger(d: DaemonProcess) -> tuple[int, int, list[dict]]:
    """(device bytes, host bytes, replicas) the ledgers count for every Model."""
    replicas = [r | {"model": name} for name in MODELS for r in d.status(name)["replicas"]]
    return (sum(sum(r["deviceBytes"].values()) for r in replicas), sum(r["hostBytes"] for r in replicas), replicas)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    args = parser.parse_args()
    d = DaemonProcess(Path(tempfile.mkdtemp(prefix="sleep-residue-")), args.checkpoint.resolve())
    for name, more in MODELS.items():
        d.write_model(f"{name}.yaml", name, utilization="0.25", more=more)
    try:
        d.start()
        for name in MODELS:
            assert "Paris" in d.ask(name), name
        for name in MODELS:
            d.wait_state(name, "sleeping", timeout=300)
        pids = engines(d)
        device, host, replicas = ledger(d)
        nvml, uss = device_bytes(pids), unique_memory(pids)
        print("| model | sleep level | device (ledger, NVML-measured) | host (ledger, USS-measured) |")
        print("|---|---|---|---|")
        for r in replicas:
            print(f"| {r['model']} | {r.get('sleepLevel', '-')} | {human_bytes(sum(r['deviceBytes'].values()))} | "
                  f"{human_bytes(r['hostBytes'])} |")
        print(f"\nall asleep: device ledger {human_bytes(device)} / NVML {human_bytes(nvml)} = "
              f"{device / max(nvml, 1):.3f}; host ledger {human_bytes(host)} / USS {human_bytes(uss)} = "
              f"{host / max(uss, 1):.3f}")
        assert "Paris" in d.ask("l1")
        pids = engines(d)
        device, host, _ = ledger(d)
        nvml, uss = device_bytes(pids), unique_memory(pids)
        print(f"l1 awake:   device ledger {human_bytes(device)} / NVML {human_bytes(nvml)} = "
              f"{device / max(nvml, 1):.3f}; host ledger {human_bytes(host)} / USS {human_bytes(uss)} = "
              f"{host / max(uss, 1):.3f}")
    finally:
        d.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
