"""Read a converted model from the store: parallel O_DIRECT reads into page-aligned memory, every
chunk checked against the manifest's CRC32 before a byte of it is used.

O_DIRECT keeps the page cache out of the way (a model is read once into its own buffer; caching it
twice would halve what host RAM holds), and the gthread format's 4 KiB alignment is what O_DIRECT
requires. Filesystems without O_DIRECT (tmpfs) are read the ordinary way.
"""

import mmap
import os
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from memory.store_format import WEIGHTS, ChecksumError, Manifest

if TYPE_CHECKING:
    import torch

READERS = 4


def read_weights(directory: Path) -> tuple[Manifest, mmap.mmap]:
    """The model's weights in one page-aligned anonymous buffer, verified."""
    manifest = Manifest.read(directory)
    buffer = mmap.mmap(-1, max(manifest.total_bytes, 1))
    read_into(directory, manifest, buffer)
    return manifest, buffer


def read_into(directory: Path, manifest: Manifest, buffer: mmap.mmap) -> None:
    """Fill `buffer` (page-aligned, at least manifest.total_bytes) with the verified weights."""
    path = directory / WEIGHTS
    size = os.path.getsize(path)
    if size != manifest.total_bytes:
        raise ChecksumError(f"{path}: {size} bytes on disk, the manifest says {manifest.total_bytes}")
    view = memoryview(buffer)
    fd = _open(path)
    step = manifest.chunk_bytes

    def read_and_check(index: int) -> None:
        start = index * step
        with view[start:start + min(step, size - start)] as chunk:  # released, or the buffer cannot close
            _read_into(fd, chunk, start)
            if zlib.crc32(chunk) != manifest.chunk_crc32[index]:  # zlib drops the GIL: checks overlap reads
                raise ChecksumError(f"{path}: chunk {index} (bytes {start}-{start + len(chunk)}) does not "
                                    "match its checksum; the converted model is corrupt")

    try:
        with ThreadPoolExecutor(READERS) as pool:
            list(pool.map(read_and_check, range(len(manifest.chunk_crc32))))
    finally:
        os.close(fd)
        view.release()


def tensors(manifest: Manifest, buffer: mmap.mmap) -> Iterator[tuple[str, "torch.Tensor"]]:
    """Tensors that view the buffer (no copy): keep the buffer alive while they are used."""
    import torch

    for entry in manifest.tensors:
        dtype = getattr(torch, entry.dtype)
        count = entry.length // torch.empty((), dtype=dtype).element_size()
        flat = torch.frombuffer(buffer, dtype=dtype, count=count, offset=entry.offset)
        yield entry.name, flat.view(entry.shape)


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
    except OSError:
        return os.open(path, os.O_RDONLY)


def _read_into(fd: int, chunk: memoryview, offset: int) -> None:
    done = 0
    while done < len(chunk):
        n = os.preadv(fd, [chunk[done:]], offset + done)
        if n == 0:
            raise ChecksumError(f"unexpected end of file at byte {offset + done}")
        done += n
