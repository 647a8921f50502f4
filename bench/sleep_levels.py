"""Sleep level 1 against level 2 in one gthreadd run: the wake's time against a cold start, and the
memory each level frees.

Two Models on one checkpoint, added one after the other so each one's engine processes are known
(the daemon's new descendants): `level1` (spec.sleep.level 1: the KV cache freed, the weights
kept) and `level2` (both freed). For each: a cold start (the file written -> the first token), then
cycles of `gthread sleep`, the engine's memory (USS of its processes, as the daemon's ledger
measures it), and a request to the sleeping model (its TTFT includes the wake). Every answer after
a wake must contain "Paris".

    .venv/bin/python bench/sleep_levels.py --checkpoint .state/checkpoints/smollm2-135m-instruct
Goal (issue 15): a level-1 wake <= 0.05x a cold start.
"""

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from serving_vs_vllm import (BIN, HOST, SERVER_ENV, add_daemon_flags, get_json, parse_daemon_args, print_stamp,
                             running)
from wake_latency import answer, ttft, wait_state
from gthreadd.runtime.devices import unique_memory
from gthreadd.spec.resource import model_yaml

LEVELS = {"level1": 1, "level2": 2}


def descendants(pid: int) -> set[int]:
    return {p.pid for p in psutil.Process(pid).children(recursive=True)}


def daemon_pid(port: int) -> int:
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            return conn.pid
    raise RuntimeError(f"nothing listens on port {port}")


def measure(args: argparse.Namespace, workdir: Path) -> dict:
    base_url, socket = f"http://{HOST}:{args.port}", workdir / "ctl.sock"
    models_dir = workdir / "models.d"
    models_dir.mkdir()
    argv = [str(BIN / "gthreadd"), "--models-dir", str(models_dir), "--state-dir", str(workdir / "state"),
            "--listen", f"{HOST}:{args.port}", "--control-socket", str(socket), "--prewake", "false",
            "--host-tier-dir", str(args.host_tier_dir / "sleep_levels")]
    log = workdir / "gthreadd.log"
    result: dict = {}
    with running("gthreadd", argv, log, lambda: get_json(f"{base_url}/healthz")[0] == 200):
        daemon = daemon_pid(args.port)
        for name, level in LEVELS.items():
            before = descendants(daemon)
            spec = (f'  gpuMemoryUtilization: "{args.utilization}"\n  extraArgs: ["--max-model-len", "4096"]\n'
                    f"  sleep: {{idleTimeout: 1h, level: {level}}}\n")
            written = time.monotonic()
            (models_dir / f"{name}.yaml").write_text(model_yaml(name, args.checkpoint, spec))
            while get_json(f"{base_url}/{name}/status")[0] != 200:
                time.sleep(0.05)
            cold = time.monotonic() - written + asyncio.run(ttft(base_url, name))
            pids = descendants(daemon) - before
            awake_ttft = statistics.median(asyncio.run(ttft(base_url, name)) for _ in range(3))
            awake_uss, asleep_uss, wakes, answers = unique_memory(pids), [], [], []
            sleeps = []
            for _ in range(args.cycles):
                started = time.monotonic()  # `gthread sleep` returns once the model is asleep
                subprocess.run([str(BIN / "gthread"), "--socket", str(socket), "sleep", name], check=True,
                               env=SERVER_ENV, stdout=subprocess.DEVNULL, timeout=600)
                wait_state(base_url, name, "sleeping")
                sleeps.append(time.monotonic() - started)
                asleep_uss.append(unique_memory(pids))
                wakes.append(asyncio.run(ttft(base_url, name)))
                answers.append(asyncio.run(answer(base_url, name)))
            result[name] = {"cold_s": cold, "awake_ttft_s": awake_ttft, "wake_ttft_s": wakes, "sleep_s": sleeps,
                            "awake_uss": awake_uss, "asleep_uss": asleep_uss, "answers": answers}
            subprocess.run([str(BIN / "gthread"), "--socket", str(socket), "sleep", name], check=True,
                           env=SERVER_ENV, stdout=subprocess.DEVNULL, timeout=600)
            wait_state(base_url, name, "sleeping")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_daemon_flags(parser, port=8630)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--utilization", default="0.20", help="each Model's gpuMemoryUtilization")
    args = parse_daemon_args(parser)
    with tempfile.TemporaryDirectory(prefix="sleep_levels-") as tmp:
        result = measure(args, Path(tmp))
    gib = 2**30
    print_stamp("sleep_levels")
    print(f"{'level':<8}{'cold s':>9}{'awake TTFT s':>14}{'sleep s':>9}{'wake TTFT s (median)':>22}{'wake / cold':>13}"
          f"{'awake GiB':>11}{'asleep GiB':>12}{'freed GiB':>11}")
    wrong = []
    for name, r in result.items():
        wake, asleep = statistics.median(r["wake_ttft_s"]), statistics.median(r["asleep_uss"])
        print(f"{LEVELS[name]:<8}{r['cold_s']:>9.2f}{r['awake_ttft_s']:>14.3f}{statistics.median(r['sleep_s']):>9.3f}"
              f"{wake:>22.3f}{wake / r['cold_s']:>13.3f}"
              f"{r['awake_uss'] / gib:>11.2f}{asleep / gib:>12.2f}{(r['awake_uss'] - asleep) / gib:>11.2f}")
        print(f"{'':<8}wakes: {', '.join(f'{s:.3f}' for s in r['wake_ttft_s'])}")
        wrong += [(name, a) for a in r["answers"] if "Paris" not in a]
    print(f"answers after a wake: {sum(len(r['answers']) for r in result.values()) - len(wrong)} contain 'Paris'"
          + "".join(f"\n  WRONG {name}: {text!r}" for name, text in wrong))
    if args.json:
        args.json.write_text(json.dumps(result))
    if wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
