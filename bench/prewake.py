"""Predictive pre-wake, with and without, in one run: the TTFT of a periodic model's requests.

One capacity slot (`--cpu-memory-share` fits one Model awake), two Models on one checkpoint:
`periodic`, asked every --period seconds (a cron job, a dashboard), and `other`, asked in bursts in
between. Both sleep after --idle seconds without requests, so the slot is often free when
`periodic` is due; whether it is awake by then is what pre-wake decides. The same schedule is sent
to a daemon with `--prewake true` and to one with `--prewake false`, one after the other, and to
each the TTFT of every request is measured (streamed). An awake model's TTFT is measured in the
same run as the reference. Goal (issue 15): the periodic requests' median TTFT with pre-wake within
1.5x of an awake model's.

    .venv/bin/python bench/prewake.py --checkpoint .state/checkpoints/smollm2-135m-instruct
"""

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from gthreadd.spec.resource import model_yaml
from scheduler.prewake import MIN_GAPS
from serving_vs_vllm import BIN, HOST, add_daemon_flags, gthreadd_ready, parse_daemon_args, print_stamp, running
from wake_latency import ttft


def schedule(args: argparse.Namespace) -> list[tuple[float, str]]:
    """(seconds from the start, model): `periodic` on its beat, `other` in bursts between beats."""
    rng = random.Random(args.seed)
    sends = [(args.warmup + i * args.period, "periodic") for i in range(args.beats)]
    for i in range(args.beats):
        start = args.warmup + i * args.period + rng.uniform(0.2, 0.4) * args.period
        sends += [(start + j * rng.uniform(0.5, 2.0), "other") for j in range(rng.randint(1, 3))]
    return sorted(sends)


async def replay(base_url: str, sends: list[tuple[float, str]]) -> list[tuple[float, str, float]]:
    started = time.monotonic()

    async def one(at: float, model: str) -> tuple[float, str, float]:
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        return at, model, await ttft(base_url, model)

    return list(await asyncio.gather(*(one(at, model) for at, model in sends)))


def run_daemon(args: argparse.Namespace, workdir: Path, prewake: bool, sends) -> dict:
    base_url = f"http://{HOST}:{args.port}"
    models_dir = workdir / "models.d"
    models_dir.mkdir()
    spec = (f'  gpuMemoryUtilization: "0.20"\n  extraArgs: ["--max-model-len", "4096"]\n'
            f"  sleep: {{idleTimeout: {args.idle}s, level: {args.level}}}\n"
            f"  fairness: {{minRuntime: 1s, maxWaitTime: 1s}}\n")
    for name in ("periodic", "other"):
        (models_dir / f"{name}.yaml").write_text(model_yaml(name, args.checkpoint, spec))
    argv = [str(BIN / "gthreadd"), "--models-dir", str(models_dir), "--state-dir", str(workdir / "state"),
            "--listen", f"{HOST}:{args.port}", "--cpu-memory-share", args.cpu_memory_share,
            "--prewake", "true" if prewake else "false", "--host-tier-dir", str(args.host_tier_dir / "prewake")]
    log = workdir / "gthreadd.log"
    with running("gthreadd", argv, log, gthreadd_ready(base_url, log, ("periodic", "other"),
                                                       ("serving", "sleeping"))):
        awake = []
        for _ in range(3):  # both booted and awake in turn: the reference TTFT of an awake model
            asyncio.run(ttft(base_url, "other"))
            awake.append(asyncio.run(ttft(base_url, "other")))
        results = asyncio.run(replay(base_url, sends))
    prewakes = log.read_text().count("(pre-wake:")
    return {"awake_s": statistics.median(awake), "results": results, "prewakes": prewakes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_daemon_flags(parser, port=8640)
    parser.add_argument("--period", type=float, default=30.0)
    parser.add_argument("--beats", type=int, default=8)
    parser.add_argument("--idle", type=float, default=6.0, help="each Model's idleTimeout, seconds")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--level", type=int, default=1, choices=(1, 2), help="the Models' spec.sleep.level")
    parser.add_argument("--cpu-memory-share", default="0.3")
    parser.add_argument("--seed", type=int, default=1)
    args = parse_daemon_args(parser)
    sends = schedule(args)
    runs = {}
    for prewake in (True, False):
        with tempfile.TemporaryDirectory(prefix="prewake-") as tmp:
            runs["on" if prewake else "off"] = run_daemon(args, Path(tmp), prewake, sends)
    print_stamp("prewake")
    print(f"# period {args.period:g}s x {args.beats}, idleTimeout {args.idle:g}s, sleep level {args.level}, seed {args.seed}: "
          f"{len(sends)} requests ({args.beats} periodic)")
    print(f"# periodic TTFT: beats {MIN_GAPS + 2}-{args.beats} (the first {MIN_GAPS + 1} establish the period)")
    print(f"{'prewake':<9}{'pre-wakes':>10}{'awake TTFT s':>14}{'periodic TTFT p50 s':>21}{'p90 s':>8}"
          f"{'p50 / awake':>13}{'other TTFT p50 s':>18}")
    for name, run in runs.items():
        # Periodicity needs MIN_GAPS gaps: the first beats cannot be foreseen, with or without.
        beats = [t for _, m, t in sorted(run["results"]) if m == "periodic"][MIN_GAPS + 1:]
        periodic = sorted(beats)
        other = [t for _, m, t in run["results"] if m == "other"]
        p50 = statistics.median(periodic)
        print(f"{name:<9}{run['prewakes']:>10}{run['awake_s']:>14.3f}{p50:>21.3f}"
              f"{periodic[int(0.9 * (len(periodic) - 1))]:>8.3f}{p50 / run['awake_s']:>13.2f}"
              f"{statistics.median(other):>18.3f}")
    if args.json:
        args.json.write_text(json.dumps(runs))


if __name__ == "__main__":
    main()
