"""Time to first token for a request to a sleeping model, against a cold start of the same model
and against an awake one, all in one gthreadd run.

- awake: a request right after another one;
- asleep: a request once the model has put itself to sleep (idleTimeout 3s): includes the wake;
- asleep, host tier: the same for a second Model on the same checkpoint with loadFormat gthread
  and staging.pinned, whose wake reloads its weights from the host tier (shared memory) rather
  than through vLLM's default loader from the checkpoint;
- cold: a second Model on the same checkpoint, dropped into models.d: its engine starts from
  nothing (what a sleep that stops the engine would cost on every wake), timed from the file write.

After every wake the model must still answer "Paris" (greedy). On a CUDA host (vLLM sleep level 1
for the default loader, level 2 with a reload from the pinned host tier for gthread) the wakes are
also set against the floor: the best pinned host-to-device copy of the same bytes, measured in the
same run once the daemon has stopped; and each wake's steps are read from the daemon's log.

    .venv/bin/python bench/wake_latency.py --checkpoint .state/checkpoints/smollm2-135m-instruct
"""

import argparse
import asyncio
import datetime
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from serving_vs_vllm import BIN, HOST, ensure_port_free, get_json, gthreadd_ready, running
from serving_vs_vllm import model_file

# The serving benchmark's Model, put to sleep after 3 idle seconds and free to preempt.
SLEEPY = "  sleep: {idleTimeout: 3s}\n  fairness: {minRuntime: 0s, maxWaitTime: 0s}\n"
TIERED = "  loadFormat: gthread\n  staging: {pinned: true}\n"
WEIGHT_LINES = {"warm": r"Loading weights took ([\d.]+) seconds", "tiered": r"filled the model with \d+ bytes in ([\d.]+)"}
WOKE_LINE = r"(\w+) woke: (.*?)(?: \[model=[^\]]*\])?$"  # the log tags a line with its model
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


async def answer(base_url: str, model: str) -> str:
    """The model's greedy answer to MESSAGES."""
    body = {"model": model, "messages": MESSAGES, "max_tokens": 16, "temperature": 0}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as session:
        async with session.post(f"{base_url}/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            return (await response.json())["choices"][0]["message"]["content"]


def wake_steps(log_text: str) -> dict[str, dict[str, list[float]]]:
    """model -> step -> seconds, from the engine's "NAME woke: step 0.123s, ..." lines."""
    steps: dict[str, dict[str, list[float]]] = {}
    for model, parts in re.findall(WOKE_LINE, log_text, re.MULTILINE):
        for part in parts.split(", "):
            name, seconds = part.rsplit(" ", 1)
            steps.setdefault(model, {}).setdefault(name, []).append(float(seconds.rstrip("s")))
    return steps


def pinned_copy_floor(checkpoint: Path) -> tuple[int, float] | None:
    """(weight bytes, seconds of the best pinned host-to-device copy of that many bytes) on a CUDA
    host; None elsewhere. Run after the daemon has stopped, so the engines do not share the bus."""
    import torch

    if not torch.cuda.is_available():
        return None
    from gpu_copy import best_pinned_bandwidth

    nbytes = sum(f.stat().st_size for f in checkpoint.glob("*.safetensors"))
    return nbytes, nbytes / 2**30 / best_pinned_bandwidth(nbytes, repeats=10)


async def ttft(base_url: str, model: str) -> float:
    """Seconds from sending a streamed chat completion to its first content token."""
    body = {"model": model, "messages": MESSAGES, "max_tokens": 8, "temperature": 0, "stream": True}
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as session:
        async with session.post(f"{base_url}/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.content:
                if line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line:
                    return time.monotonic() - started
    raise RuntimeError(f"{model}: the stream ended without a token")


def wait_state(base_url: str, model: str, state: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while get_json(f"{base_url}/{model}/status")[1].get("state") != state:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{model} did not become {state}")
        time.sleep(0.2)


def measure(args: argparse.Namespace, workdir: Path) -> dict:
    base_url = f"http://{HOST}:{args.port}"
    models_dir = workdir / "models.d"
    models_dir.mkdir()
    (models_dir / "warm.yaml").write_text(model_file("warm", args.checkpoint, args.utilization, SLEEPY))
    (models_dir / "tiered.yaml").write_text(model_file("tiered", args.checkpoint, args.utilization, SLEEPY + TIERED))
    argv = [str(BIN / "gthreadd"), "--models-dir", str(models_dir), "--state-dir", str(workdir / "state"),
            "--listen", f"{HOST}:{args.port}", "--host-tier-dir", str(args.host_tier_dir / "wake_latency")]
    log = workdir / "gthreadd.log"
    with running("gthreadd", argv, log, gthreadd_ready(base_url, log, ("warm", "tiered"), ("serving", "sleeping"))):
        asleep, awake, tiered, answers = [], [], [], []
        for _ in range(args.cycles):
            wait_state(base_url, "warm", "sleeping")
            asleep.append(asyncio.run(ttft(base_url, "warm")))
            awake.append(asyncio.run(ttft(base_url, "warm")))
            answers.append(("warm", asyncio.run(answer(base_url, "warm"))))
            wait_state(base_url, "tiered", "sleeping")
            tiered.append(asyncio.run(ttft(base_url, "tiered")))
            answers.append(("tiered", asyncio.run(answer(base_url, "tiered"))))
        cold = float("nan")
        if not args.skip_cold:
            wait_state(base_url, "warm", "sleeping")
            written = time.monotonic()
            (models_dir / "cold.yaml").write_text(model_file("cold", args.checkpoint, args.utilization, SLEEPY))
            while get_json(f"{base_url}/cold/status")[0] != 200:  # the daemon has read the file
                time.sleep(0.05)
            sent = time.monotonic()
            cold = (sent - written) + asyncio.run(ttft(base_url, "cold"))
    text = log.read_text()
    weights = {m: [float(x) for x in re.findall(pattern, text)][1:1 + args.cycles]  # [0] is the boot
               for m, pattern in WEIGHT_LINES.items()}
    return {"asleep_s": asleep, "awake_s": awake, "tiered_asleep_s": tiered, "cold_s": cold,
            "wake_weights_s": weights, "wake_steps_s": wake_steps(text), "answers": answers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--port", type=int, default=8610)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--host-tier-dir", type=Path, default=Path("/dev/shm"))
    parser.add_argument("--utilization", default="0.20", help="each Model's gpuMemoryUtilization")
    parser.add_argument("--expect", default="Paris", help="what every answer after a wake must contain "
                        "('' for a checkpoint with random weights)")
    parser.add_argument("--skip-cold", action="store_true", help="leave out the cold start")
    args = parser.parse_args()
    args.checkpoint = args.checkpoint.resolve()
    ensure_port_free(args.port)
    with tempfile.TemporaryDirectory(prefix="wake_latency-") as tmp:
        result = measure(args, Path(tmp))
    floor = pinned_copy_floor(args.checkpoint)
    wake, warm, cold = statistics.median(result["asleep_s"]), statistics.median(result["awake_s"]), result["cold_s"]
    print(f"# wake_latency  {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    print(f"# command: {' '.join(sys.argv)}")
    print(f"{'request to':<28}{'TTFT s (median)':>16}   samples")
    print(f"{'an awake model':<28}{warm:>16.3f}   {', '.join(f'{s:.3f}' for s in result['awake_s'])}")
    print(f"{'a sleeping model (wake)':<28}{wake:>16.3f}   {', '.join(f'{s:.3f}' for s in result['asleep_s'])}")
    tiered = statistics.median(result["tiered_asleep_s"])
    print(f"{'a sleeping model, host tier':<28}{tiered:>16.3f}   "
          f"{', '.join(f'{s:.3f}' for s in result['tiered_asleep_s'])}")
    print(f"{'a cold start':<28}{cold:>16.3f}")
    weights = {m: statistics.median(v) if v else float("nan") for m, v in result["wake_weights_s"].items()}
    print(f"weights during a wake (median): vLLM default loader {weights['warm']:.3f} s, "
          f"gthread from the host tier {weights['tiered']:.3f} s")
    print(f"sleeping / cold start = {wake / cold:.3f};  sleeping / awake = {wake / warm:.1f};  "
          f"host-tier wake / default wake = {tiered / wake:.3f};  weights: {weights['tiered'] / weights['warm']:.3f}")
    for model, steps in result["wake_steps_s"].items():
        print(f"wake steps of {model} (median): "
              + ", ".join(f"{step} {statistics.median(v):.3f} s" for step, v in steps.items()))
    if floor is not None:
        nbytes, copy_s = floor
        print(f"floor: pinned host-to-device copy of the {nbytes / 2**20:.0f} MiB of weights {copy_s:.4f} s;  "
              f"wake TTFT / floor: level 1 {wake / copy_s:.1f}, level 2 from the host tier {tiered / copy_s:.1f}")
    wrong = [(model, text) for model, text in result["answers"] if args.expect not in text]
    print(f"answers after a wake: {len(result['answers']) - len(wrong)} of {len(result['answers'])} "
          f"contain {args.expect!r}"
          + "".join(f"\n  WRONG {model}: {text!r}" for model, text in wrong))
    if args.json:
        args.json.write_text(json.dumps({**result, "ratio_sleep_cold": wake / cold, "ratio_sleep_awake": wake / warm,
                                         "ratio_tiered_wake": tiered / wake, "floor": floor}))
    if wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
