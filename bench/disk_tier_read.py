"""Disk-tier read throughput against a raw sequential read of the same bytes, page cache out of
the way (O_DIRECT for both), in one run. The disk tier also verifies every chunk's CRC32.

    .venv/bin/python bench/disk_tier_read.py --converted .state/models/<key>

A converted model is made first if --checkpoint is given instead (into a temporary store on the
same filesystem as --store).
"""

import argparse
import datetime
import mmap
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from conversion.converter import convert
from memory.store_format import WEIGHTS
from memory.disk_tier import read_weights

BLOCK = 16 * 2**20


def raw_sequential(path: Path) -> float:
    """Seconds to read the file front to back in 16 MiB O_DIRECT reads, like `dd iflag=direct`."""
    buffer = mmap.mmap(-1, BLOCK)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    started = time.perf_counter()
    offset = 0
    try:
        while n := os.preadv(fd, [buffer], offset):
            offset += n
    finally:
        os.close(fd)
    return time.perf_counter() - started


def disk_tier(directory: Path) -> float:
    started = time.perf_counter()
    _, buffer = read_weights(directory)
    elapsed = time.perf_counter() - started
    buffer.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--converted", type=Path)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--store", type=Path, default=Path("."))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.store, prefix=".bench-store-") as tmp:
        directory = args.converted or convert(args.checkpoint, Path(tmp), "bench", {"modelName": "bench"}, None)
        size = (directory / WEIGHTS).stat().st_size
        raw, tier = [], []
        for _ in range(args.repeats):
            raw.append(raw_sequential(directory / WEIGHTS))
            tier.append(disk_tier(directory))
    gib = size / 2**30
    r, t = gib / statistics.median(raw), gib / statistics.median(tier)
    print(f"# disk_tier_read  {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    print(f"# command: {' '.join(sys.argv)}")
    print(f"# {size} bytes, {args.repeats} alternating runs, medians")
    print(f"raw O_DIRECT sequential   {r:8.2f} GiB/s   ({', '.join(f'{gib / x:.2f}' for x in raw)})")
    print(f"disk tier (+CRC32)        {t:8.2f} GiB/s   ({', '.join(f'{gib / x:.2f}' for x in tier)})")
    print(f"disk tier / raw = {t / r:.3f}")


if __name__ == "__main__":
    main()
