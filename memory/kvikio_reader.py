"""The one module that speaks to KvikIO: a converted model's weights read from NVMe straight into
device memory (GPUDirect Storage where the host has it, KvikIO's POSIX mode otherwise), every chunk
verified on the device against the manifest's sums before a tensor of it is handed out.

The file is read a window at a time (whole tensors, chunk-aligned, about WINDOW bytes), each into a
fresh device buffer that lives as long as tensors of it are referenced: vLLM's weight loaders copy
each tensor into its parameter as it comes, so a load costs the model's parameters plus about one
window of VRAM, not the model twice.
"""

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from memory.store_format import WEIGHTS, ChecksumError, Manifest, TensorEntry

if TYPE_CHECKING:
    import torch

WINDOW = 512 * 2**20


def installed() -> bool:
    """Whether KvikIO can be imported here, found without importing it (no CUDA is touched)."""
    return importlib.util.find_spec("kvikio") is not None


def usable() -> bool:
    """Whether KvikIO can read into device memory in this (engine) process."""
    try:
        import torch
    except ImportError:
        return False
    return installed() and torch.cuda.is_available()


def mode() -> str:
    """"GPUDirect Storage" or "POSIX compatibility mode": what KvikIO does on this host."""
    import kvikio

    return "POSIX compatibility mode" if kvikio.defaults.is_compat_mode_preferred() else "GPUDirect Storage"


def windows(manifest: Manifest, window: int = WINDOW) -> list[tuple[int, int, list[TensorEntry]]]:
    """(first byte, end byte, tensors) per read: whole tensors, bounds on chunk boundaries (so each
    chunk can be checked whole), about `window` bytes unless one tensor is larger."""
    step, groups, current = manifest.chunk_bytes, [], []
    for entry in sorted(manifest.tensors, key=lambda e: e.offset):
        if current and entry.offset + entry.length - current[0].offset > window:
            groups.append(current)
            current = []
        current.append(entry)
    if current:
        groups.append(current)
    bounds = []
    for group in groups:
        lo = group[0].offset // step * step
        hi = min(-(-(group[-1].offset + group[-1].length) // step) * step, manifest.total_bytes)
        bounds.append((lo, hi, group))
    return bounds


def read_tensors(directory: Path, manifest: Manifest, device: str = "cuda",
                 window: int = WINDOW) -> Iterator[tuple[str, "torch.Tensor"]]:
    """The model's tensors on `device`, window by window; ChecksumError names a corrupt chunk."""
    import kvikio
    import torch

    from memory.device_checksum import chunk_sum

    step, total = manifest.chunk_bytes, manifest.total_bytes
    if len(manifest.chunk_sum16) != -(-total // step):
        raise ChecksumError(f"{directory}: the manifest has no device sums; convert the model again")
    path = directory / WEIGHTS
    if path.stat().st_size != total:
        raise ChecksumError(f"{path}: {path.stat().st_size} bytes on disk, the manifest says {total}")
    with kvikio.CuFile(path, "r") as f:
        for lo, hi, entries in windows(manifest, window):
            data = torch.empty(hi - lo, dtype=torch.uint8, device=device)
            reads = [(start, f.pread(data[start - lo:min(start + step, hi) - lo], min(step, hi - start), start))
                     for start in range(lo, hi, step)]
            for start, future in reads:
                size = min(step, hi - start)
                if future.get() != size:
                    raise OSError(f"{path}: short read at byte {start}")
                if chunk_sum(data[start - lo:start - lo + size]) != manifest.chunk_sum16[start // step]:
                    raise ChecksumError(f"{path}: chunk {start // step} (bytes {start}-{start + size}) does not "
                                        "match its device sum: the file is corrupt")
            for entry in entries:
                flat = data[entry.offset - lo:entry.offset - lo + entry.length].view(getattr(torch, entry.dtype))
                yield entry.name, flat.view(entry.shape)
