"""On a CUDA host: a model's weights from the host tier into GPU memory, against the best pinned
host-to-device bandwidth measured in the same run (issue 4, target (c): at least 0.9 of it), and
KvikIO disk-to-GPU reads of the same file against a raw O_DIRECT read, when kvikio is installed:
raw, and through the product's verified reader (device sums checked on the GPU), which must also
catch a flipped byte.

The host-tier path is the product's: memory/host_tier.py stages the converted model into shared
memory, memory/host_segment.py maps and registers it (cudaHostRegister), and the tensors are
copied one by one into preallocated device tensors, as the gthread loader's copies land.

    .venv/bin/python bench/gpu_copy.py --checkpoint .state/checkpoints/smollm2-135m-instruct
"""

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from conversion.converter import convert
from memory.store_format import WEIGHTS, Manifest
from memory.disk_tier import tensors
from memory.host_segment import map_segment
from memory.host_tier import HostTier


def best_pinned_bandwidth(nbytes: int, repeats: int) -> float:
    """GiB/s of the fastest single cudaMemcpy of `nbytes` from page-locked memory: the floor."""
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    device = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    best = 0.0
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        device.copy_(host, non_blocking=True)
        torch.cuda.synchronize()
        best = max(best, nbytes / 2**30 / (time.perf_counter() - started))
    return best


def host_tier_copy(model_dir: Path, shm: Path, repeats: int) -> tuple[float, int]:
    """GiB/s of copying every tensor of the staged model into device tensors."""
    manifest = Manifest.read(model_dir)
    tier = HostTier(shm, budget=manifest.total_bytes * 2)
    tier.start()
    path = tier.stage("bench", model_dir, pinned=True)
    assert path is not None, "the host tier could not hold the model"
    segment = map_segment(path)
    if not segment.register_with_cuda():
        sys.exit("cudaHostRegister failed: see the log line above")
    sources = list(tensors(manifest, segment.buffer))
    targets = [torch.empty_like(t, device="cuda") for _, t in sources]
    rates = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        for target, (_, source) in zip(targets, sources):
            target.copy_(source, non_blocking=True)
        torch.cuda.synchronize()
        rates.append(manifest.total_bytes / 2**30 / (time.perf_counter() - started))
    del sources
    segment.close()
    tier.close()
    return statistics.median(rates), manifest.total_bytes


def kvikio_read(model_dir: Path, repeats: int) -> tuple[float, float, str] | None:
    """(KvikIO disk->GPU GiB/s, raw O_DIRECT disk->host GiB/s, KvikIO's mode: GPUDirect Storage or
    its POSIX compatibility mode), page cache dropped before each."""
    try:
        import kvikio
    except ImportError:
        return None
    path = model_dir / WEIGHTS
    size = path.stat().st_size
    device = torch.empty(size, dtype=torch.uint8, device="cuda")
    host = torch.empty(size, dtype=torch.uint8, pin_memory=True)
    kv, raw = [], []
    for _ in range(repeats):
        _drop_caches()
        started = time.perf_counter()
        with kvikio.CuFile(path, "r") as f:
            f.pread(device, size, 0).get()
        torch.cuda.synchronize()
        kv.append(size / 2**30 / (time.perf_counter() - started))
        _drop_caches()
        started = time.perf_counter()
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            view, done = memoryview(host.numpy()), 0
            while done < size:
                done += os.preadv(fd, [view[done:done + 64 * 2**20]], done)
        finally:
            os.close(fd)
        raw.append(size / 2**30 / (time.perf_counter() - started))
    mode = "POSIX compatibility mode" if kvikio.defaults.is_compat_mode_preferred() else "GPUDirect Storage"
    return statistics.median(kv), statistics.median(raw), mode


def verified_kvikio_read(model_dir: Path, repeats: int) -> tuple[float, str]:
    """The product's path (memory/kvikio_reader.py): windowed KvikIO reads into VRAM, every chunk
    checked on the GPU against the manifest's device sums; GiB/s, and whether a flipped byte in a
    copy of the file was caught."""
    import shutil

    from memory import kvikio_reader
    from memory.store_format import ChecksumError

    manifest = Manifest.read(model_dir)
    rates = []
    for _ in range(repeats):
        _drop_caches()
        started = time.perf_counter()
        for _, tensor in kvikio_reader.read_tensors(model_dir, manifest):
            del tensor
        torch.cuda.synchronize()
        rates.append(manifest.total_bytes / 2**30 / (time.perf_counter() - started))
    corrupt = model_dir.with_name(model_dir.name + "-corrupt")
    shutil.copytree(model_dir, corrupt)
    with open(corrupt / WEIGHTS, "r+b") as f:
        f.seek(manifest.total_bytes // 2)
        byte = f.read(1)
        f.seek(manifest.total_bytes // 2)
        f.write(bytes([byte[0] ^ 0x01]))
    try:
        list(kvikio_reader.read_tensors(corrupt, manifest))
        caught = "NOT caught"
    except ChecksumError as exc:
        caught = f"caught ({exc})"
    return statistics.median(rates), caught


def _drop_caches() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass  # not root: O_DIRECT and GDS bypass the page cache anyway


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--store", type=Path, help="where to convert the model (default: beside the checkpoint)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark measures the GPU paths (see bench/README.md)")
    with tempfile.TemporaryDirectory(dir=args.store or args.checkpoint.parent, prefix=".bench-store-") as store, \
            tempfile.TemporaryDirectory(dir="/dev/shm", prefix="gthread-bench-") as shm:
        model_dir = convert(args.checkpoint.resolve(), Path(store), "bench", {"modelName": "bench"}, "bfloat16")
        tier_rate, nbytes = host_tier_copy(model_dir, Path(shm) / "tier", args.repeats)
        floor = best_pinned_bandwidth(nbytes, args.repeats)
        reads = kvikio_read(model_dir, args.repeats)
        verified = verified_kvikio_read(model_dir, args.repeats) if reads is not None else None
    print(f"# gpu_copy  {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}  "
          f"{torch.cuda.get_device_name()}")
    print(f"# command: {' '.join(sys.argv)}")
    print(f"model weights: {nbytes / 2**20:.1f} MiB")
    print(f"best pinned cudaMemcpy H2D   {floor:8.2f} GiB/s")
    print(f"host tier -> GPU, per tensor {tier_rate:8.2f} GiB/s   ratio {tier_rate / floor:.3f} (target >= 0.9)")
    if reads is None:
        print("kvikio not installed: disk->GPU reads not measured")
    else:
        print(f"KvikIO disk -> GPU           {reads[0]:8.2f} GiB/s   ({reads[2]})")
        print(f"raw O_DIRECT disk -> host    {reads[1]:8.2f} GiB/s   ratio {reads[0] / reads[1]:.3f}")
        print(f"verified KvikIO -> GPU       {verified[0]:8.2f} GiB/s   ratio {verified[0] / reads[1]:.3f} "
              "(target >= 0.9; chunks checked on the GPU)")
        print(f"a flipped byte on the KvikIO path: {verified[1]}")


if __name__ == "__main__":
    main()
