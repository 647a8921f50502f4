"""Is the first request after quiet slow because the machine was idle, or because its engine was?

Two `vllm serve` processes of the demo checkpoint, A and B. Three TTFTs of B, the median of
`--rounds` each: warm (B asked every 0.5 s), after `--quiet` seconds in which nothing ran at all,
and after as long in which A alone served a request every 0.5 s. If the third is as slow as the
second, what costs is the engine's own idleness (its pages or caches gone cold), which four
engines pay more often than one engine serving four models' traffic (bench/trace.py's baseline).

    .venv/bin/python bench/cold_engine.py --checkpoint .state/checkpoints/smollm2-135m-instruct
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from serving_vs_vllm import BIN, HOST, print_stamp, running, vllm_ready
from trace import ask, openai_client


def server(checkpoint: Path, port: int, utilization: str) -> list[str]:
    return [str(BIN / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint),
            "--served-model-name", "m", "--dtype", "bfloat16", "--gpu-memory-utilization", utilization,
            "--max-model-len", "4096", "--enforce-eager", "--disable-log-stats", "--disable-uvicorn-access-log",
            "--host", HOST, "--port", str(port)]


async def measure(a_url: str, b_url: str, quiet_s: float, rounds: int) -> dict[str, list[float]]:
    async with openai_client(a_url) as a, openai_client(b_url) as b:
        async def ttft(client) -> float:
            return (await ask(client, "m", 8))[0]

        async def keep_busy(client, seconds: float) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                await ttft(client)
                await asyncio.sleep(0.5)

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--quiet", type=float, default=30.0, help="seconds of quiet before the cold request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--utilization", default="0.15", help="each server's --gpu-memory-utilization")
    parser.add_argument("--port-base", type=int, default=8640)
    args = parser.parse_args()
    a_url, b_url = f"http://{HOST}:{args.port_base}", f"http://{HOST}:{args.port_base + 1}"
    with tempfile.TemporaryDirectory(prefix="cold_engine-") as tmp:
        with running("vllm A", server(args.checkpoint, args.port_base, args.utilization), Path(tmp) / "a.log",
                     vllm_ready(a_url)), \
             running("vllm B", server(args.checkpoint, args.port_base + 1, args.utilization), Path(tmp) / "b.log",
                     vllm_ready(b_url)):
            result = asyncio.run(measure(a_url, b_url, args.quiet, args.rounds))
    print_stamp("cold_engine")
    print(f"B's TTFT, median of {args.rounds} (each), after {args.quiet:g} s:")
    for name, values in result.items():
        print(f"  {name:<28}{statistics.median(values):7.3f} s   ({', '.join(f'{v:.3f}' for v in values)})")


if __name__ == "__main__":
    main()
