"""A host-tier segment as an engine process sees it: the daemon's shared memory, mapped here.

Where CUDA is present the mapping is registered with `cudaHostRegister` for the length of a load,
so the loader's host-to-device copies are DMA from page-locked memory rather than pageable
copies staged through a bounce buffer. The registration is undone before the mapping goes, so the
daemon can evict the segment once the engine has its weights.
"""

import ctypes
import logging
import mmap
import os
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)


class MappedSegment:
    def __init__(self, path: Path):
        fd = os.open(path, os.O_RDWR)
        try:
            self.buffer = mmap.mmap(fd, os.fstat(fd).st_size, flags=mmap.MAP_SHARED)
        finally:
            os.close(fd)
        self._registered: Optional[int] = None

    def register_with_cuda(self) -> bool:
        import torch

        if not torch.cuda.is_available():
            return False
        address = address_of(self.buffer)
        result = torch.cuda.cudart().cudaHostRegister(address, len(self.buffer), 0)
        if result.value != 0:
            log.warning("cudaHostRegister failed (%s): copies from the host tier run at pageable speed", result)
            return False
        self._registered = address
        return True

    def close(self) -> None:
        if self._registered is not None:
            import torch

            torch.cuda.cudart().cudaHostUnregister(self._registered)
            self._registered = None
        try:
            self.buffer.close()
        except BufferError:  # a tensor still views it: the mapping goes with the last such tensor
            pass


def address_of(buffer: mmap.mmap) -> int:
    """Where an mmap starts in this process, without keeping a buffer export alive (which would
    stop the mmap from closing)."""
    anchor = ctypes.c_char.from_buffer(buffer)
    address = ctypes.addressof(anchor)
    del anchor
    return address


SEGMENT_PREFIX = "gthread-"
"""Every file the host tier creates in hostTierDir starts with it (the fill in progress with a dot
before it): the directory may be shared, /dev/shm itself, and only these names are ours."""


def segment_path(tier_dir: Path, key: str) -> Path:
    """Where the host tier keeps the converted model `key` (the name of its store directory)."""
    return tier_dir / f"{SEGMENT_PREFIX}{key}"


def map_segment(path: Path) -> Optional[MappedSegment]:
    """The segment at `path`, or None when the daemon has not staged it (or evicted it)."""
    try:
        return MappedSegment(path)
    except FileNotFoundError:
        return None
