"""Two API keys on one busy model, one flooding it at ten times the other's rate: the quiet key's
queue wait with the fair share on (each key its own turn) and off (both clients on one key: first
come, first served), on a real engine that runs --max-num-seqs requests at once; and the CPU a
request's key checks cost, against no keys.

Queue wait is what the client sees of it: the time to a streamed chat's response headers, which
vLLM sends as soon as the daemon has admitted the request (the tokens come after). The load is
open-loop (Poisson arrivals) for --duration seconds, then every answer is awaited. The CPU cost
is measured in one process with the in-process daemon and FakeEngine (a test double standing in
for vLLM, so that the key checks are all that differs): sequential requests, process CPU time per
request, keys file against no keys, alternated --repeats times.

    .venv/bin/python bench/tenants.py --checkpoint .state/checkpoints/smollm2-135m-instruct
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gthreadd.tenants.keyring import digest  # noqa: E402
from tests.e2e.daemon_process import DaemonProcess  # noqa: E402

QUESTION = [{"role": "user", "content": "Write one sentence about the sea."}]


def keys_file(fair: bool) -> str:
    """Fair: each client its own key. Not fair: both clients' keys are one entry's, one turn."""
    if fair:
        return (f"- name: flood\n  sha256: {digest('sk-flood')}\n- name: quiet\n  sha256: {digest('sk-quiet')}\n"
                f"- name: ops\n  sha256: {digest('sk-ops')}\n  admin: true\n")
    return f"- name: shared\n  sha256: {digest('sk-shared')}\n  admin: true\n"


async def one(session: aiohttp.ClientSession, url: str, key: str, max_tokens: int) -> float:
    """Seconds to the response headers of a streamed chat (the queue wait); the answer is read to the end."""
    started = time.monotonic()
    body = {"model": "smollm2", "messages": QUESTION, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "ignore_eos": True}
    async with session.post(f"{url}/v1/chat/completions", json=body,
                            headers={"Authorization": f"Bearer {key}"}) as response:
        waited = time.monotonic() - started
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {await response.text()}")
        async for _ in response.content:
            pass
    return waited


async def load(url: str, keys: dict[str, str], rates: dict[str, float], duration: float,
               max_tokens: int, seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    waits: dict[str, list[float]] = {name: [] for name in rates}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session:
        tasks = []

        async def client(name: str) -> None:
            end = time.monotonic() + duration
            while True:
                await asyncio.sleep(rng.expovariate(rates[name]))
                if time.monotonic() >= end:
                    return
                task = asyncio.ensure_future(one(session, url, keys[name], max_tokens))
                task.add_done_callback(lambda t, n=name: waits[n].append(t.result()))
                tasks.append(task)

        await asyncio.gather(*(client(name) for name in rates))
        await asyncio.gather(*tasks)
    return waits


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run_mode(args: argparse.Namespace, fair: bool) -> dict:
    root = Path(tempfile.mkdtemp(prefix="gthread-tenants-"))
    (root / "keys").mkdir()
    (root / "keys" / "keys.yaml").write_text(keys_file(fair))
    daemon = DaemonProcess(root, args.checkpoint, {"HF_HUB_OFFLINE": "1"}, key="sk-ops" if fair else "sk-shared",
                           flags=("--api-keys-file", str(root / "keys" / "keys.yaml")))
    daemon.write_model("smollm2.yaml", "smollm2", "--max-model-len", "2048", "--max-num-seqs", str(args.max_num_seqs),
                       more="  sleep: {idleTimeout: 1h}\n")
    daemon.start()
    try:
        daemon.wait_state("smollm2", "serving", 600)
        keys = {"flood": "sk-flood", "quiet": "sk-quiet"} if fair else {"flood": "sk-shared", "quiet": "sk-shared"}
        rates = {"flood": args.quiet_rate * args.flood_factor, "quiet": args.quiet_rate}
        asyncio.run(load(daemon.url, keys, {"flood": rates["flood"], "quiet": rates["quiet"]}, 5, args.max_tokens, 99))
        waits = asyncio.run(load(daemon.url, keys, rates, args.duration, args.max_tokens, args.seed))
    finally:
        daemon.stop()
    row = {"mode": "fair share" if fair else "first come, first served"}
    for name, values in waits.items():
        row[name] = {"requests": len(values), "p50_s": round(percentile(values, 50), 3),
                     "p99_s": round(percentile(values, 99), 3), "mean_s": round(statistics.mean(values), 3)}
    return row


async def key_check_cost(requests: int, with_keys: bool, root: Path) -> float:
    """CPU microseconds per request of the whole in-process daemon and its client."""
    from tests.inprocess_daemon import serving, start_daemon, write

    root.mkdir(parents=True)
    settings = {}
    headers = {}
    if with_keys:
        (root / "keys.yaml").write_text(f"- name: team\n  sha256: {digest('sk-team')}\n  models: [a]\n"
                                        f"  requestsPerMinute: 100000000\n  maxConcurrent: 1000\n")
        settings["apiKeysFile"] = str(root / "keys.yaml")
        headers = {"Authorization": "Bearer sk-team"}
    d = await start_daemon(root, **settings)
    try:
        write(d, "a.yaml", "a")
        await serving(d, "a")
        async with aiohttp.ClientSession() as session:
            body = {"model": "a", "messages": []}
            for _ in range(200):  # warm-up
                async with session.post(d.base_url + "/v1/chat/completions", json=body, headers=headers) as r:
                    await r.read()
            cpu = time.process_time()
            for _ in range(requests):
                async with session.post(d.base_url + "/v1/chat/completions", json=body, headers=headers) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
            return (time.process_time() - cpu) / requests * 1e6
    finally:
        await d.shutdown()


def cpu_cost(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="gthread-keycost-"))
    samples: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(args.repeats):
        for with_keys in ((False, True) if repeat % 2 == 0 else (True, False)):
            samples[with_keys].append(asyncio.run(key_check_cost(args.cpu_requests, with_keys,
                                                                 root / f"{repeat}-{with_keys}")))
    none, keys = statistics.median(samples[False]), statistics.median(samples[True])
    return {"no_keys_us": round(none, 1), "keys_us": round(keys, 1), "ratio": round(keys / none, 3),
            "no_keys_samples": [round(v, 1) for v in samples[False]], "keys_samples": [round(v, 1) for v in samples[True]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--quiet-rate", type=float, default=0.3, help="the quiet key's requests per second")
    parser.add_argument("--flood-factor", type=float, default=10.0, help="the flood's rate, times the quiet key's")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--max-num-seqs", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-load", action="store_true", help="only the CPU cost")
    args = parser.parse_args()
    args.checkpoint = args.checkpoint.resolve()
    print(f"# bench/tenants.py  {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
    print(f"# command: {' '.join(sys.argv)}")
    if not args.skip_load:
        for fair in (True, False):
            print(json.dumps(run_mode(args, fair)), flush=True)
    print(json.dumps({"key_check_cpu": cpu_cost(args)}), flush=True)
    os._exit(0)  # vLLM's imports (Triton's nanobind modules) report leaks at interpreter teardown


if __name__ == "__main__":
    main()
