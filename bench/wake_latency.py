"""Time to first token for a request to a sleeping model, against a cold start of the same model
and against an awake one, all in one gthreadd run.

- awake: a request right after another one;
- asleep: a request once the model has put itself to sleep (idleTimeout 3s): includes the wake;
- cold: a second Model on the same checkpoint, dropped into models.d: its engine starts from
  nothing (what a sleep that stops the engine would cost on every wake), timed from the file write.

    .venv/bin/python bench/wake_latency.py --checkpoint .state/checkpoints/smollm2-135m-instruct
"""

import argparse
import asyncio
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from serving_vs_vllm import BIN, HOST, ensure_port_free, get_json, running

MODEL_YAML = """\
apiVersion: greenthread.ai/v1alpha1
kind: Model
metadata:
  name: {name}
spec:
  modelName: {checkpoint}
  gpuMemoryUtilization: "0.20"
  extraArgs: ["--max-model-len", "4096"]
  sleep: {{idleTimeout: 3s}}
  fairness: {{minRuntime: 0s, maxWaitTime: 0s}}
"""
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
    (models_dir / "warm.yaml").write_text(MODEL_YAML.format(name="warm", checkpoint=args.checkpoint))
    argv = [str(BIN / "gthreadd"), "--models-dir", str(models_dir), "--state-dir", str(workdir / "state"),
            "--listen", f"{HOST}:{args.port}"]
    booted = lambda: get_json(f"{base_url}/warm/status")[1].get("state") in ("serving", "sleeping")  # noqa: E731
    with running("gthreadd", argv, workdir / "gthreadd.log", booted):
        asleep, awake = [], []
        for _ in range(args.cycles):
            wait_state(base_url, "warm", "sleeping")
            asleep.append(asyncio.run(ttft(base_url, "warm")))
            awake.append(asyncio.run(ttft(base_url, "warm")))
        wait_state(base_url, "warm", "sleeping")
        written = time.monotonic()
        (models_dir / "cold.yaml").write_text(MODEL_YAML.format(name="cold", checkpoint=args.checkpoint))
        while get_json(f"{base_url}/cold/status")[0] != 200:  # the daemon has read the file
            time.sleep(0.05)
        sent = time.monotonic()
        cold = (sent - written) + asyncio.run(ttft(base_url, "cold"))
    return {"asleep_s": asleep, "awake_s": awake, "cold_s": cold}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--port", type=int, default=8610)
    parser.add_argument("--json", type=Path)
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
    print(f"{'a cold start':<28}{cold:>16.3f}")
    print(f"sleeping / cold start = {wake / cold:.3f};  sleeping / awake = {wake / warm:.1f}")
    if args.json:
        args.json.write_text(json.dumps({**result, "ratio_sleep_cold": wake / cold, "ratio_sleep_awake": wake / warm}))


if __name__ == "__main__":
    main()
