"""The gthread load format, as the tiers read it: one checkpoint as one file of tensors, each at a
4 KiB-aligned offset, plus a manifest. Aligned offsets and file size are what O_DIRECT and
GPUDirect Storage need, so a load is a few large reads straight into their destination.

A converted model is a directory in the daemon's model store: the checkpoint's config and
tokenizer files (what vLLM reads to build the model), `weights.gthread`, and
`gthread-manifest.json` with every tensor's name, dtype, shape, offset and length, a CRC32 and a
device-verifiable sum per chunk of the file, and the source it came from. The manifest is written last and the directory
renamed into place (conversion/converter.py), so a directory with a manifest is complete.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

ALIGN = 4096
CHUNK = 16 * 2**20
FORMAT = "gthread/1"
MANIFEST = "gthread-manifest.json"
CORRUPT = "gthread-corrupt.txt"
WEIGHTS = "weights.gthread"


class ChecksumError(RuntimeError):
    """Weights on disk do not match their manifest: they must not be served."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: list[int]
    offset: int
    length: int


@dataclass
class Manifest:
    format: str
    source: dict
    alignment: int
    chunk_bytes: int
    total_bytes: int
    tensors: list[TensorEntry]
    chunk_crc32: list[int] = field(default_factory=list)
    chunk_sum16: list[int] = field(default_factory=list)
    """Per chunk, memory/device_checksum.py's sum: how reads into device memory are verified.
    Empty in manifests written before it; those models are read through the host."""

    @classmethod
    def read(cls, directory: Path) -> "Manifest":
        data = json.loads((directory / MANIFEST).read_text())
        data["tensors"] = [TensorEntry(**t) for t in data["tensors"]]
        return cls(**data)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()


def align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def converted(store: Path, key: str) -> Optional[Path]:
    path = store / key
    return path if (path / MANIFEST).is_file() else None


def mark_corrupt(directory: Path, reason: str) -> None:
    """Take a converted model out of use: without its manifest it no longer looks complete, so
    the next boot converts again; the reason stays beside it for the daemon to report. The daemon
    alone calls this: it owns the store (engines report a ChecksumError as their root cause)."""
    (directory / CORRUPT).write_text(reason)
    (directory / MANIFEST).unlink(missing_ok=True)


def corruption(store: Path, key: str) -> str:
    """Why the converted model at `key` was taken out of use, or ""."""
    try:
        return (store / key / CORRUPT).read_text()
    except OSError:
        return ""
