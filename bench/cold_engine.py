"""Is the first request after quiet slow because the machine was idle, or because its engine was?
And is an engine just woken from sleep colder than one that sat idle awake?

Two `vllm serve` processes of the demo checkpoint, A and B. Three TTFTs of B, the median of
`--rounds` each: warm (B asked every 0.5 s), after `--quiet` seconds in which nothing ran at all,
and after as long in which A alone served a request every 0.5 s. If the third is as slow as the
second, what costs is the engine's own idleness (its pages or caches gone cold), which four
engines pay more often than one engine serving four models' traffic (bench/trace.py's baseline).

Then through gthreadd, three Models of the same checkpoint: a, b kept awake (idleTimeout 30m) and
c put to sleep (level 1) after 2 idle seconds. While a alone serves for `--quiet` seconds, b sits
awake and c asleep; b's TTFT then, against c's (its wake included, and the wake alone from the
daemon's log). If c's less its wake is slower than b's, a woken engine's first step is colder
than an idle one's, and warming it before its requests are let in would pay.

    .venv/bin/python bench/cold_engine.py --checkpoint .state/checkpoints/smollm2-135m-instruct
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from serving_vs_vllm import BIN, HOST, gthreadd_ready, model_file, print_stamp, running, vllm_ready
from trace import ask, openai_client
from wake_latency import wait_state, wake_steps

AWAKE = "  sleep: {idleTimeout: 30m}\n  fairness: {minRuntime: 0s, maxWaitTime: 0s}\n"
SLEEPY = "  sleep: {idleTimeout: 2s}\n  fairness: {minRuntime: 0s, maxWaitTime: 0s}\n"


def server(checkpoint: Path, port: int, utilization: str) -> list[str]:
    return [str(BIN / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint),
            "--served-model-name", "m", "--dtype", "bfloat16", "--gpu-memory-utilization", utilization,
            "--max-model-len", "4096", "--enforce-eager", "--disable-log-stats", "--disable-uvicorn-access-log",
            "--host", HOST, "--port", str(port)]


async def ttft(client, model: str = "m") -> float:
    return (await ask(client, model, 8))[0]


async def keep_busy(client, seconds: float, model: str = "m") -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        await ttft(client, model)
        await asyncio.sleep(0.5)


async def measure(a_url: str, b_url: str, quiet_s: float, rounds: int) -> dict[str, list[float]]:
    async with openai_client(a_url) as a, openai_client(b_url) as b:
        result: dict[str, list[float]] = {"warm": [], "machine quiet": [], "engine quiet, machine busy": []}
        await ttft(a), await ttft(b)
        for _ in range(rounds):
            await keep_busy(b, 3)
            result["warm"].append(await ttft(b))
            await asyncio.sleep(quiet_s)
            result["machine quiet"].append(await ttft(b))
            await keep_busy(a, quiet_s)
            result["engine quiet, machine busy"].append(await ttft(b))
        return result


async def measure_gthreadd(url: str, quiet_s: float, rounds: int) -> dict[str, list[float]]:
    async with openai_client(url) as client:
        result: dict[str, list[float]] = {"b warm": [], "b awake, quiet": [], "c woken (wake included)": []}
        for model in "abc":
            await ttft(client, model)
        for _ in range(rounds):
            await keep_busy(client, 3, "b")
            result["b warm"].append(await ttft(client, "b"))
            await keep_busy(client, quiet_s, "a")
            result["b awake, quiet"].append(await ttft(client, "b"))
            await keep_busy(client, quiet_s, "a")
            await asyncio.to_thread(wait_state, url, "c", "sleeping")
            result["c woken (wake included)"].append(await ttft(client, "c"))
        return result


def through_gthreadd(args: argparse.Namespace, tmp: Path) -> dict[str, list[float]]:
    listen = f"{HOST}:{args.port_base + 2}"
    url = f"http://{listen}"
    models = tmp / "models.d"
    models.mkdir()
    for name, spec in (("a", AWAKE), ("b", AWAKE), ("c", SLEEPY)):
        (models / f"{name}.yaml").write_text(model_file(name, args.checkpoint, args.utilization, spec))
    argv = [str(BIN / "gthreadd"), "--models-dir", str(models), "--state-dir", str(tmp / "state"),
            "--listen", listen]
    log = tmp / "gthreadd.log"
    with running("gthreadd", argv, log, gthreadd_ready(url, log, ("a", "b", "c"), ("serving", "sleeping"))):
        result = asyncio.run(measure_gthreadd(url, args.quiet, args.rounds))
    result["c's wake alone"] = wake_steps(log.read_text()).get("c", {}).get("level 1", [])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--quiet", type=float, default=30.0, help="seconds of quiet before the cold request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--utilization", default="0.15", help="each server's --gpu-memory-utilization")
    parser.add_argument("--port-base", type=int, default=8640)
    args = parser.parse_args()
    args.checkpoint = args.checkpoint.resolve()
    a_url, b_url = f"http://{HOST}:{args.port_base}", f"http://{HOST}:{args.port_base + 1}"
    with tempfile.TemporaryDirectory(prefix="cold_engine-") as tmp:
        with running("vllm A", server(args.checkpoint, args.port_base, args.utilization), Path(tmp) / "a.log",
                     vllm_ready(a_url)), \
             running("vllm B", server(args.checkpoint, args.port_base + 1, args.utilization), Path(tmp) / "b.log",
                     vllm_ready(b_url)):
            result = asyncio.run(measure(a_url, b_url, args.quiet, args.rounds))
        woken = through_gthreadd(args, Path(tmp))
    print_stamp("cold_engine")
    for title, values_by_name in (("B's TTFT (vllm serve)", result), ("through gthreadd", woken)):
        print(f"{title}, median of {args.rounds} (each), after {args.quiet:g} s:")
        for name, values in values_by_name.items():
            print(f"  {name:<28}{statistics.median(values):7.3f} s   ({', '.join(f'{v:.3f}' for v in values)})")


if __name__ == "__main__":
    main()
