"""Many Models behind one daemon: 10, 30 and 100 names for the demo checkpoint, in a memory cgroup
of `--limit`, asked along a seeded Zipf trace. Every request's time to first token (TTFT, streamed)
is filed under what its model was doing when the request was sent (awake, asleep, stopped, cold:
never started, or starting: a boot under way), and the run's peak memory is set against the
limit: the engines' and daemon's private memory (RssAnon, as the daemon counts it; sampled every
0.5 s), the cgroup's own peak (page cache included) and its OOM kills.

    .venv/bin/python bench/many_models.py --checkpoint .state/checkpoints/smollm2-135m-instruct \\
        --models 10,30,100 --requests 60 --json /tmp/many.json

Needs root for the cgroup (`--limit 0` runs without one, against the host's RAM).
"""

import argparse
import json
import random
import signal
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from tempfile import mkdtemp

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.e2e's helpers

from gthreadd.runtime.devices import private_memory  # noqa: E402
from gthreadd.spec.byte_size import human_bytes, parse_size  # noqa: E402
from tests.e2e.daemon_process import DaemonProcess  # noqa: E402
from tests.e2e.memory_cgroup import MemoryCgroup  # noqa: E402

POLICY = """\
  fairness: {minRuntime: 1s, maxWaitTime: 1s}
  sleep: {idleTimeout: 2m, drainTimeout: 30s, level: 1}
"""
RUNGS = ("awake", "asleep", "stopped", "cold", "starting")


@dataclass
class Sent:
    model: str
    at: float
    rung: str
    ttft: float = 0.0
    ok: bool = False
    error: str = ""


@dataclass
class Run:
    models: int
    limit: int
    sent: list[Sent] = field(default_factory=list)
    peak_private: int = 0
    cgroup_peak: int = 0
    oom_kills: int = 0
    stops: int = 0
    boots: int = 0
    seconds: float = 0.0

    def summary(self) -> dict:
        by_rung = {}
        for rung in RUNGS:
            times = sorted(s.ttft for s in self.sent if s.ok and s.rung == rung)
            if times:
                by_rung[rung] = {"n": len(times), "p50": statistics.median(times),
                                 "p99": times[min(len(times) - 1, int(0.99 * len(times)))]}
        return {"models": self.models, "limit": self.limit, "sent": len(self.sent),
                "answered": sum(s.ok for s in self.sent), "by_rung": by_rung, "peak_private": self.peak_private,
                "cgroup_peak": self.cgroup_peak, "oom_kills": self.oom_kills, "stops": self.stops,
                "boots": self.boots, "seconds": round(self.seconds, 1)}


def zipf_trace(models: int, requests: int, s: float, gap: float, seed: int) -> list[tuple[float, str]]:
    """(send time, model) pairs: Poisson arrivals `gap` seconds apart on average, models by Zipf(s)
    popularity over a shuffled order (so the popular ones are not the first booted)."""
    rng = random.Random(seed)
    names = [f"m{i:03d}" for i in range(models)]
    rng.shuffle(names)
    weights = [1 / (rank + 1) ** s for rank in range(models)]
    t, trace = 0.0, []
    for _ in range(requests):
        t += rng.expovariate(1 / gap)
        trace.append((t, rng.choices(names, weights)[0]))
    return trace


def rung_of(d: DaemonProcess, model: str) -> str:
    """What the request finds: its model awake (serving), asleep (draining, going to sleep, asleep
    or waking: it waits for a wake), stopped (by a budget, or being stopped: a cold start), cold
    (never started), or starting (a boot under way, which it joins)."""
    replicas = d.status(model).get("replicas", [])
    if not replicas:
        return "cold"
    rung, state = replicas[0]["rung"], replicas[0]["state"]
    if state == "awake":
        return "awake"
    if state == "booting":
        return "starting"
    if state in ("draining", "sleeping", "waking"):
        return "asleep"
    return "cold" if rung == "none" else rung


def ask(d: DaemonProcess, sent: Sent) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{d.url}/{sent.model}/v1", api_key="unused", timeout=900, max_retries=0)
    started = time.monotonic()
    try:
        stream = client.chat.completions.create(
            model=sent.model, stream=True, max_tokens=8, temperature=0,
            messages=[{"role": "user", "content": "What is the capital of France?"}])
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and not sent.ttft:
                sent.ttft = time.monotonic() - started
        sent.ok = sent.ttft > 0
    except Exception as exc:
        sent.error = f"{type(exc).__name__}: {exc}"


def sample_memory(group: MemoryCgroup | None, d: DaemonProcess, run: Run, done: threading.Event) -> None:
    while not done.wait(0.5):
        try:
            root = psutil.Process(d.proc.pid)
            pids = [root.pid] + [p.pid for p in root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        run.peak_private = max(run.peak_private, private_memory(pids))


def one_run(args: argparse.Namespace, models: int, workdir: Path) -> Run:
    group = MemoryCgroup(args.limit).create() if args.limit else None
    run = Run(models, args.limit or psutil.virtual_memory().total)
    d = DaemonProcess(workdir / f"n{models}", args.checkpoint, flags=("--cpu-memory-share", str(args.share)),
                      join=group.join if group else None)
    for i in range(models):
        d.write_model(f"m{i:03d}.yaml", f"m{i:03d}", utilization=args.utilization, more=POLICY)
    done = threading.Event()
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=64)
    try:
        d.start()
        sampler = threading.Thread(target=sample_memory, args=(group, d, run, done), daemon=True)
        sampler.start()
        trace = zipf_trace(models, args.requests, args.zipf, args.gap, args.seed)
        begin = time.monotonic()
        for at, model in trace:
            time.sleep(max(0.0, begin + at - time.monotonic()))
            sent = Sent(model, at, rung_of(d, model))
            run.sent.append(sent)
            pool.submit(ask, d, sent)
        pool.shutdown(wait=True)
        run.seconds = time.monotonic() - started
        for (name, labels), value in d.metrics().items():
            if name == "gthread_engine_operations_total" and ("outcome", "ok") in labels:
                run.stops += value if ("operation", "stop") in labels else 0
                run.boots += value if ("operation", "boot") in labels else 0
        if group is not None:
            run.cgroup_peak, run.oom_kills = group.peak(), group.oom_kills()
    finally:  # on an interruption too: the daemon goes first, so requests still out fail at once
        done.set()
        d.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        if group is not None:
            group.remove()
    return run


def print_table(runs: list[Run]) -> None:
    print("| Models | answered | awake p50/p99 (n) | asleep p50/p99 (n) | stopped p50/p99 (n) | cold p50/p99 (n) | "
          "starting p50/p99 (n) | peak private / limit | cgroup peak | OOM kills | boots | stops |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        s = run.summary()
        cells = []
        for rung in RUNGS:
            r = s["by_rung"].get(rung)
            cells.append(f"{r['p50']:.2f} / {r['p99']:.2f} s ({r['n']})" if r else "-")
        print(f"| {s['models']} | {s['answered']}/{s['sent']} | " + " | ".join(cells)
              + f" | {human_bytes(s['peak_private'])} / {human_bytes(s['limit'])} | {human_bytes(s['cgroup_peak'])} | "
              f"{s['oom_kills']} | {s['boots']:.0f} | {s['stops']:.0f} |")
    for run in runs:
        for sent in run.sent:
            if not sent.ok:
                print(f"  {run.models} models: {sent.model} at {sent.at:.1f}s ({sent.rung}) failed: {sent.error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--models", default="10,30,100", help="comma-separated: one daemon run per count")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--gap", type=float, default=8.0, help="mean seconds between requests (Poisson)")
    parser.add_argument("--zipf", type=float, default=1.1, help="popularity exponent")
    parser.add_argument("--limit", default="12Gi", help="the memory cgroup's limit; 0: no cgroup")
    parser.add_argument("--utilization", default="0.20", help="each Model's gpuMemoryUtilization")
    parser.add_argument("--share", type=float, default=0.9, help="--cpu-memory-share: on a CPU host the device "
                        "is the RAM the host budget guards, so nearly all of it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # unwind: the daemon is killed, the cgroup removed
    args.checkpoint = args.checkpoint.resolve()
    args.limit = parse_size(args.limit, psutil.virtual_memory().total) if args.limit != "0" else 0
    if args.limit and (why := MemoryCgroup.unavailable()):
        parser.error(f"--limit needs a memory cgroup: {why}")
    runs = []
    workdir = Path(mkdtemp(prefix="many-models-"))
    print(f"daemon logs: {workdir}/n<models>/gthreadd.log", flush=True)
    for count in (int(n) for n in args.models.split(",")):
        runs.append(one_run(args, count, workdir))
        print(json.dumps(runs[-1].summary()), flush=True)
    print_table(runs)
    if args.json:
        args.json.write_text(json.dumps([{**r.summary(), "sent": [asdict(s) for s in r.sent]} for r in runs],
                                        indent=1))
    return 0 if all(s.ok for r in runs for s in r.sent) else 1


if __name__ == "__main__":
    sys.exit(main())
