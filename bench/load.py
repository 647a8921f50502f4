"""Load across more models than fit: N clients over M models on a capacity for fewer, for a fixed
time, each sending chat completions back to back to a random model. Every request must end in an
answer or a documented error; "lost" counts those that ended in neither (a dropped connection, a
timeout, an undocumented status).

    .venv/bin/python bench/load.py --checkpoint .state/checkpoints/smollm2-135m-instruct \\
        --models 3 --clients 8 --seconds 120 --share 0.3
"""

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.daemon_process import DaemonProcess  # noqa: E402

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
DOCUMENTED = {429, 503}
"""Errors a client is told to expect under load: queue full (429), and aborts and queue timeouts (503)."""


async def client(session: aiohttp.ClientSession, url: str, models: list[str], max_tokens: int, until: float,
                 outcomes: Counter, latencies: list[float], wrong: list[str]) -> None:
    while time.monotonic() < until:
        model = random.choice(models)
        body = {"model": model, "messages": QUESTION, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
        started = time.monotonic()
        try:
            async with session.post(f"{url}/{model}/v1/chat/completions", json=body) as response:
                payload = await response.json(content_type=None)
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            outcomes["lost"] += 1
            wrong.append(f"{model}: {type(exc).__name__}: {exc}")
            continue
        if status == 200:
            outcomes["answered"] += 1
            latencies.append(time.monotonic() - started)
            if "Paris" not in payload["choices"][0]["message"]["content"]:
                wrong.append(f"{model}: wrong answer {payload['choices'][0]['message']['content']!r}")
        elif status in DOCUMENTED:
            outcomes[str(status)] += 1
            if status == 503 and not retry_after:
                wrong.append(f"{model}: 503 without Retry-After: {payload}")
            await asyncio.sleep(float(retry_after or 1))
        else:
            outcomes["lost"] += 1
            wrong.append(f"{model}: HTTP {status}: {payload}")


async def run(url: str, models: list[str], clients: int, seconds: float, max_tokens: int) -> None:
    outcomes: Counter = Counter()
    latencies: list[float] = []
    wrong: list[str] = []
    until = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=seconds + 600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session, url, models, max_tokens, until, outcomes, latencies, wrong) for _ in range(clients)))
    total = sum(outcomes.values())
    print(f"{clients} clients over {len(models)} models for {seconds:.0f}s, {max_tokens} tokens each: {total} requests")
    for key in ("answered", "429", "503", "lost"):
        print(f"  {key:>8}: {outcomes[key]:5d}  ({outcomes[key] / max(total, 1):.1%})")
    if latencies:
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
        print(f"  latency of answered requests: p50 {q[49]:.2f}s, p90 {q[89]:.2f}s, p99 {q[98]:.2f}s, "
              f"max {max(latencies):.2f}s")
    for line in wrong[:10]:
        print("  !", line)
    if wrong:
        raise SystemExit(f"{len(wrong)} requests were lost or answered wrongly")


def answers(daemon: DaemonProcess, model: str) -> bool:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    return daemon.request("POST", f"/{model}/v1/chat/completions", json.dumps(body).encode())[0] == 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--share", default="0.3", help="--cpu-memory-share: 0.3 holds one model of 0.2")
    parser.add_argument("--drain-timeout", default="5s")
    parser.add_argument("--max-tokens", type=int, default=16, help="generated per request (ignore_eos)")
    args = parser.parse_args()
    daemon = DaemonProcess(Path(tempfile.mkdtemp(prefix="load-")), args.checkpoint.resolve(), {"HF_HUB_OFFLINE": "1"},
                           flags=("--cpu-memory-share", args.share))
    names = [f"m{i}" for i in range(args.models)]
    more = (f"  fairness: {{minRuntime: 5s, maxWaitTime: 10s}}\n"
            f"  sleep: {{idleTimeout: 30s, drainTimeout: {args.drain_timeout}}}\n")
    for name in names:
        daemon.write_model(f"{name}.yaml", name, more=more)
    daemon.start()
    try:
        for name in names:  # every engine built before the clock starts: a wake is what is measured
            daemon.wait_for(lambda n=name: answers(daemon, n), 900, f"{name} to answer")
        asyncio.run(run(daemon.url, names, args.clients, args.seconds, args.max_tokens))
    finally:
        daemon.kill()
        print(f"daemon log: {daemon.log_path}")


if __name__ == "__main__":
    main()
