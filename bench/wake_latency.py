"""Time to first token for a request to a sleeping model, against a cold start of the same model
and against an awake one, all in one gthreadd run.

- awake: a request right after another one;
- asleep: a request once the model has put itself to sleep (idleTimeout 3s): includes the wake;
- asleep, host tier: the same for a second Model on the same checkpoint with loadFormat gthread
  and staging.pinned, whose wake reloads its weights from the host tier (shared memory) rather
  than through vLLM's default loader from the checkpoint;
- cold: a second Model on the same checkpoint, dropped into models.d: its engine starts from
  nothing (what a sleep that stops the engine would cost on every wake), timed from the file write.

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

from serving_vs_vllm import BIN, HOST, ensure_port_free, get_json, running
from serving_vs_vllm import MODEL_YAML as SERVED_MODEL_YAML

# The serving benchmark's Model, put to sleep after 3 idle seconds and free to preempt.
MODEL_YAML = SERVED_MODEL_YAML + """\
  sleep: {{idleTimeout: 3s}}
  fairness: {{minRuntime: 0s, maxWaitTime: 0s}}
{more}"""
TIERED = "  loadFormat: gthread\n  staging: {pinned: true}\n"
WEIGHT_LINES = {"warm": r"Loading weights took ([\d.]+) seconds", "tiered": r"filled the model with \d+ bytes in ([\d.]+)"}
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


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
    (models_dir / "warm.yaml").write_text(MODEL_YAML.format(name="warm", checkpoint=args.checkpoint, more=""))
    (models_dir / "tiered.yaml").write_text(MODEL_YAML.format(name="tiered", checkpoint=args.checkpoint,
                                                              more=TIERED))
    argv = [str(BIN / "gthreadd"), "--models-dir", str(models_dir), "--state-dir", str(workdir / "state"),
            "--listen", f"{HOST}:{args.port}", "--host-tier-dir", str(args.host_tier_dir / "wake_latency")]
    booted = lambda: all(get_json(f"{base_url}/{m}/status")[1].get("state") in ("serving", "sleeping")  # noqa: E731
                         for m in ("warm", "tiered"))
    log = workdir / "gthreadd.log"
    with running("gthreadd", argv, log, booted):
        asleep, awake, tiered = [], [], []
        for _ in range(args.cycles):
            wait_state(base_url, "warm", "sleeping")
            asleep.append(asyncio.run(ttft(base_url, "warm")))
            awake.append(asyncio.run(ttft(base_url, "warm")))
            wait_state(base_url, "tiered", "sleeping")
            tiered.append(asyncio.run(ttft(base_url, "tiered")))
        wait_state(base_url, "warm", "sleeping")
        written = time.monotonic()
        (models_dir / "cold.yaml").write_text(MODEL_YAML.format(name="cold", checkpoint=args.checkpoint, more=""))
        while get_json(f"{base_url}/cold/status")[0] != 200:  # the daemon has read the file
            time.sleep(0.05)
        sent = time.monotonic()
        cold = (sent - written) + asyncio.run(ttft(base_url, "cold"))
    text = log.read_text()
    weights = {m: [float(x) for x in re.findall(pattern, text)][1:1 + args.cycles]  # [0] is the boot
               for m, pattern in WEIGHT_LINES.items()}
    return {"asleep_s": asleep, "awake_s": awake, "tiered_asleep_s": tiered, "cold_s": cold,
            "wake_weights_s": weights}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--port", type=int, default=8610)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--host-tier-dir", type=Path, default=Path("/dev/shm"))
    args = parser.parse_args()
    args.checkpoint = args.checkpoint.resolve()
    ensure_port_free(args.port)
    with tempfile.TemporaryDirectory(prefix="wake_latency-") as tmp:
        result = measure(args, Path(tmp))
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
    if args.json:
        args.json.write_text(json.dumps({**result, "ratio_sleep_cold": wake / cold, "ratio_sleep_awake": wake / warm,
                                         "ratio_tiered_wake": tiered / wake}))


if __name__ == "__main__":
    main()
