"""Two models time-sharing one GPU under the scheduler: every interleaved request answered, and the
GPU memory the engines hold (NVML) set against what the scheduler's ledger claims for them.

Each Model asks for more than half the GPU (gpuMemoryUtilization 0.55), so only one can be awake:
alternating requests make the scheduler sleep one to wake the other again and again. alpha uses
vLLM's default loader (sleep level 1: vLLM keeps its weights in CPU memory); beta uses the gthread
load format (level 2: weights discarded, reloaded from the pinned host tier).

While the requests run, a sampler reads every 0.1 s the GPU memory that the engines' processes
hold (NVML per-process) and the ledger (`gthread_device_memory_bytes{kind="claimed"}` on /metrics).
A sample where the engines hold more than the ledger claims means the scheduler placed on memory it
believed free; the report gives how many, and by how much. `gthread get gpus` and `gthread get
models` are printed from the live daemon.

    python3 bench/gpu/shared_gpu.py --checkpoint .state/checkpoints/smollm2-135m-instruct
"""

import argparse
import asyncio
import datetime
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from serving_vs_vllm import BIN, HOST, ensure_port_free, gthreadd_ready, model_file, running  # noqa: E402
from wake_latency import MESSAGES, TIERED, WOKE_LINE  # noqa: E402

SHARING = "  sleep: {idleTimeout: 60s}\n  fairness: {minRuntime: 1s, maxWaitTime: 2s}\n"
CLAIMED = re.compile(r'gthread_device_memory_bytes\{device="gpu0",kind="claimed"\} ([0-9.e+]+)')


def ledger_claimed(base_url: str) -> int:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as response:
        match = CLAIMED.search(response.read().decode())
    return int(float(match.group(1))) if match else 0


def engine_memory(daemon_pid: int) -> int:
    """Bytes on GPU 0 held by the daemon's descendants (its engines), per NVML."""
    import psutil
    import pynvml

    try:
        family = {p.pid for p in psutil.Process(daemon_pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return 0
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    return sum(p.usedGpuMemory or 0 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid in family)


class Sampler(threading.Thread):
    def __init__(self, base_url: str, daemon_pid: int):
        super().__init__(daemon=True)
        self.base_url, self.daemon_pid = base_url, daemon_pid
        self.samples: list[tuple[float, int, int]] = []  # (t, engines' bytes, claimed bytes)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.1):
            try:
                claimed = ledger_claimed(self.base_url)
                held = engine_memory(self.daemon_pid)
                claimed = max(claimed, ledger_claimed(self.base_url))  # a claim released mid-sample
            except OSError:
                continue
            self.samples.append((time.monotonic(), held, claimed))


async def ask(session: aiohttp.ClientSession, base_url: str, model: str) -> tuple[str, int, str, float]:
    body = {"model": model, "messages": MESSAGES, "max_tokens": 16, "temperature": 0}
    started = time.monotonic()
    async with session.post(f"{base_url}/v1/chat/completions", json=body) as response:
        payload = await response.json(content_type=None)
        text = payload["choices"][0]["message"]["content"] if response.status == 200 else str(payload)
        return model, response.status, text, time.monotonic() - started


async def load(base_url: str, rounds: int, per_round: int) -> list[tuple[str, int, str, float]]:
    """`rounds` bursts, alternating the model each burst, `per_round` concurrent requests each."""
    results = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as session:
        for i in range(rounds):
            model = ("alpha", "beta")[i % 2]
            results += await asyncio.gather(*(ask(session, base_url, model) for _ in range(per_round)))
    return results


def listener_pid(port: int) -> int:
    import psutil

    return next(c.pid for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == "LISTEN")


def cli(base_url: str, *argv: str) -> str:
    done = subprocess.run([str(BIN / "gthread"), "--server", base_url, *argv], capture_output=True, text=True)
    return done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=4)
    parser.add_argument("--port", type=int, default=8620)
    parser.add_argument("--host-tier-dir", type=Path, default=Path("/dev/shm"))
    args = parser.parse_args()
    import pynvml

    pynvml.nvmlInit()
    ensure_port_free(args.port)
    base_url = f"http://{HOST}:{args.port}"
    with tempfile.TemporaryDirectory(prefix="shared_gpu-") as tmp:
        workdir = Path(tmp)
        models_dir = workdir / "models.d"
        models_dir.mkdir()
        checkpoint = args.checkpoint.resolve()
        (models_dir / "alpha.yaml").write_text(model_file("alpha", checkpoint, "0.55", SHARING))
        (models_dir / "beta.yaml").write_text(model_file("beta", checkpoint, "0.55", SHARING + TIERED))
        argv = [str(BIN / "gthreadd"), "--models-dir", str(models_dir), "--state-dir", str(workdir / "state"),
                "--listen", f"{HOST}:{args.port}", "--host-tier-dir", str(args.host_tier_dir / "shared_gpu")]
        log = workdir / "gthreadd.log"
        one_serving = gthreadd_ready(base_url, log, ("alpha", "beta"), ("serving",), every=False)
        with running("gthreadd", argv, log, one_serving):
            daemon_pid = listener_pid(args.port)
            sampler = Sampler(base_url, daemon_pid)
            sampler.start()
            started = time.monotonic()
            results = asyncio.run(load(base_url, args.rounds, args.per_round))
            wall = time.monotonic() - started
            sampler.stopping.set()
            sampler.join()
            gpus, models = cli(base_url, "get", "gpus"), cli(base_url, "get", "models")
        woke = re.findall(WOKE_LINE, log.read_text())
        print(f"# shared_gpu  {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
        print(f"# command: {' '.join(sys.argv)}")
        ok = [r for r in results if r[1] == 200 and "Paris" in r[2]]
        print(f"requests: {len(results)} in {wall:.1f} s, {len(ok)} answered 200 with Paris")
        for model, status, text, seconds in results:
            if (model, status, text, seconds) not in ok:
                print(f"  FAILED {model}: {status} {text[:200]!r}")
        print(f"wakes: {len(woke)}  " + "; ".join(f"{m}: {s}" for m, s in woke[:6]))
        over = [(held - claimed, t) for t, held, claimed in sampler.samples if held > claimed]
        peak_held = max((h for _, h, _ in sampler.samples), default=0)
        print(f"memory samples: {len(sampler.samples)}; engines' peak {peak_held / 2**30:.2f} GiB; "
              f"above the ledger's claims in {len(over)}"
              + (f", by up to {max(over)[0] / 2**30:.2f} GiB" if over else ""))
        print("gthread get gpus:\n" + gpus)
        print("gthread get models:\n" + models)
        if len(ok) != len(results):
            sys.exit(1)


if __name__ == "__main__":
    main()
