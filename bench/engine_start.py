"""Engine start with loadFormat gthread against vLLM's default loader, same checkpoint, one run.

Both engines are real vLLM engines built by gthreadd's adapter; the runs alternate so that
neither profits from a warmer machine. Weight loading is a small part of an engine start on the
CPU, so the `weights` column (vLLM's "Loading weights took" log line, and the gthread loader's
own) is printed too.

    .venv/bin/python bench/engine_start.py --checkpoint .state/checkpoints/smollm2-135m-instruct
"""

import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from conversion.converter import convert

CHILD = """
import asyncio, sys, time
from engine.config import EngineConfig
from engine.vllm_engine import VllmEngine
async def main():
    e = VllmEngine(EngineConfig(name="b", model_path=sys.argv[1], served_model_names=("b",),
                                gpu_memory_utilization=0.2, load_format=sys.argv[2]))
    t = time.perf_counter(); await e.start(); print("START", time.perf_counter() - t, flush=True)
    await e.stop()
if __name__ == "__main__":
    asyncio.run(main())
"""


def start_once(model_dir: Path, load_format: str, cold: bool) -> tuple[float, float]:
    """(engine start seconds, weight loading seconds) in a fresh process, as the daemon would see;
    `cold` drops the page cache first (root only), as after a reboot or for a model not read lately."""
    if cold:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    out = subprocess.run([sys.executable, "-c", CHILD, str(model_dir), load_format],
                         capture_output=True, text=True, timeout=600)
    start = re.search(r"^START ([\d.]+)", out.stdout, re.M)
    weights = re.search(r"(?:Loading weights took|filled the model with \d+ bytes in) ([\d.]+) seconds", out.stdout + out.stderr)
    if start is None:
        sys.exit(f"{load_format} engine did not start:\n{out.stderr[-3000:]}")
    return float(start.group(1)), float(weights.group(1)) if weights else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each start (root)")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"auto": [], "gthread": []}
    with tempfile.TemporaryDirectory(dir=args.checkpoint.parent, prefix=".bench-store-") as tmp:
        converted = convert(args.checkpoint.resolve(), Path(tmp), "bench", {"modelName": "bench"}, "bfloat16")
        for _ in range(args.repeats):
            results["auto"].append(start_once(args.checkpoint.resolve(), "auto", args.cold))
            results["gthread"].append(start_once(converted, "gthread", args.cold))
    print(f"# engine_start  {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    print(f"# command: {' '.join(sys.argv)}  (page cache {'dropped before each start' if args.cold else 'warm'})")
    med = {k: (statistics.median(s for s, _ in v), statistics.median(w for _, w in v)) for k, v in results.items()}
    for name, label in (("auto", "vLLM default loader"), ("gthread", "loadFormat gthread")):
        samples = ", ".join(f"{s:.1f}s/{w:.2f}s" for s, w in results[name])
        print(f"{label:<22} start {med[name][0]:6.1f} s   weights {med[name][1]:5.2f} s   ({samples})")
    print(f"gthread / default: start {med['gthread'][0] / med['auto'][0]:.3f}, "
          f"weights {med['gthread'][1] / med['auto'][1]:.3f}")


if __name__ == "__main__":
    main()
