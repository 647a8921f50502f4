"""A chunk checksum that can be verified where the bytes land, in device memory.

KvikIO reads weights from NVMe straight into VRAM (GPUDirect Storage), where the disk tier's
CRC32 cannot run without first copying the bytes back to the host. This sum runs as two torch
reductions on whichever device holds the chunk, and gives the same number on the CPU (at
conversion) and on a GPU (at load):

    S = sum over i of (2i + 1) * h[i]

where h are the chunk's little-endian 16-bit words. For a 16 MiB chunk the weights stay below
2^24 and the words below 2^16, so S < 2^63 is exact in int64: no overflow, nothing left to the
device's integer semantics. The weights are odd, so a change to any one word always changes S;
it is a checksum against corruption (like CRC32), not against tampering.
"""

import functools

import torch

from memory.store_format import CHUNK

PIECE = 4 * 2**20
"""Bytes summed at a time, which bounds the temporaries (three int64 tensors of PIECE/2 words)."""


def chunk_sum(chunk: torch.Tensor) -> int:
    """S for a uint8 tensor of at most CHUNK bytes (an even count), on any device."""
    if chunk.dtype != torch.uint8 or chunk.dim() != 1 or chunk.numel() % 2 or chunk.numel() > CHUNK:
        raise ValueError(f"chunk_sum takes a 1-D uint8 tensor of an even length up to {CHUNK} bytes")
    total = 0
    for start in range(0, chunk.numel(), PIECE):
        words = chunk[start:start + PIECE].view(torch.int16).to(torch.int64).bitwise_and_(0xFFFF)
        base = start // 2  # the index of this piece's first word in the chunk
        odd = _odd(str(chunk.device))[:words.numel()]
        # (2(base + i) + 1) * h = (2i + 1) * h + 2 * base * h
        total += int(torch.sum(odd * words)) + 2 * base * int(torch.sum(words))
    return total


@functools.cache
def _odd(device: str) -> torch.Tensor:
    """1, 3, 5, ... for one piece's words, kept per device (16 MiB) for the process's loads."""
    return torch.arange(1, PIECE, 2, dtype=torch.int64, device=device)


def chunk_sums(data: torch.Tensor, chunk_bytes: int = CHUNK) -> list[int]:
    """S for each chunk of a uint8 tensor, as the manifest records them."""
    return [chunk_sum(data[start:start + chunk_bytes]) for start in range(0, data.numel(), chunk_bytes)]
