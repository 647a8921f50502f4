"""The gthread load format: one checkpoint as one file of tensors, each at a 4 KiB-aligned offset,
plus a manifest. Aligned offsets and file size are what O_DIRECT and GPUDirect Storage need, so a
load is a few large reads straight into their destination.

A converted model is a directory: the checkpoint's config and tokenizer files (what vLLM reads to
build the model), `weights.gthread`, and `gthread-manifest.json` with every tensor's name, dtype,
shape, offset and length, a CRC32 per chunk of the file, and the source it came from. The
manifest is written last and the directory renamed into place, so a directory with a manifest is
complete: a crash or a full disk leaves only a temporary directory, removed on the next run.
"""

import json
import os
import shutil
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional

if TYPE_CHECKING:
    import torch

ALIGN = 4096
CHUNK = 16 * 2**20
FORMAT = "gthread/1"
MANIFEST = "gthread-manifest.json"
CORRUPT = "gthread-corrupt.txt"
WEIGHTS = "weights.gthread"
_AUX_SUFFIXES = (".json", ".txt", ".model", ".jinja", ".tiktoken", ".py")
_SKIP = ("model.safetensors.index.json", "pytorch_model.bin.index.json", MANIFEST)


class ConversionError(RuntimeError):
    pass


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

    @classmethod
    def read(cls, directory: Path) -> "Manifest":
        data = json.loads((directory / MANIFEST).read_text())
        data["tensors"] = [TensorEntry(**t) for t in data["tensors"]]
        return cls(**data)

    def write(self, directory: Path) -> None:
        _write_synced(directory / MANIFEST, json.dumps(asdict(self), indent=1).encode())


def align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def converted(store: Path, key: str) -> Optional[Path]:
    path = store / key
    return path if (path / MANIFEST).is_file() else None


def mark_corrupt(directory: Path, reason: str) -> None:
    """Take a converted model out of use: without its manifest it no longer looks complete, so
    the next boot converts again; the reason stays beside it for the daemon to report."""
    (directory / CORRUPT).write_text(reason)
    (directory / MANIFEST).unlink(missing_ok=True)


def corruption(store: Path, key: str) -> str:
    """Why the converted model at `key` was taken out of use, or ""."""
    try:
        return (store / key / CORRUPT).read_text()
    except OSError:
        return ""


def convert(source_dir: Path, store: Path, key: str, source: dict, dtype: Optional[str],
            progress: Callable[[float], None] = lambda done: None) -> Path:
    """Convert the checkpoint in `source_dir` into `store/key` (reused if already there).
    Blocking; `progress` gets the fraction done."""
    import torch

    if (done := converted(store, key)) is not None:
        return done
    store.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(store, key)
    shutil.rmtree(store / key, ignore_errors=True)  # a copy marked corrupt
    tensors = list(_source_tensors(source_dir))
    target = getattr(torch, dtype) if dtype else None
    plan, offset = [], 0
    for name, tensor in tensors:
        if target is not None and tensor.is_floating_point():
            tensor = tensor.to(target)
        nbytes = tensor.numel() * tensor.element_size()
        plan.append((TensorEntry(name, str(tensor.dtype).removeprefix("torch."), list(tensor.shape), offset, nbytes),
                     tensor))
        offset = align(offset + nbytes)
    total = align(offset)
    free = shutil.disk_usage(store).free
    if free < total + 64 * 2**20:
        raise ConversionError(f"not enough space in {store} to convert {source.get('modelName')}: "
                              f"needs {total / 2**30:.2f} GiB, {free / 2**30:.2f} GiB free")

    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=store))
    try:
        crcs = _write_weights(tmp / WEIGHTS, plan, total, progress)
        for aux in source_dir.iterdir():
            if aux.is_file() and aux.name.endswith(_AUX_SUFFIXES) and aux.name not in _SKIP:
                _write_synced(tmp / aux.name, aux.read_bytes())
        Manifest(FORMAT, source, ALIGN, CHUNK, total, [entry for entry, _ in plan], crcs).write(tmp)
        _fsync_dir(tmp)
        tmp.chmod(0o755)
        os.rename(tmp, store / key)
        _fsync_dir(store)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return store / key


def _source_tensors(source_dir: Path) -> Iterator[tuple[str, "torch.Tensor"]]:
    """safetensors first; PyTorch .bin files as a fallback."""
    import torch
    from safetensors import safe_open

    files = sorted(source_dir.glob("*.safetensors"))
    if files:
        for file in files:
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():
                    yield name, f.get_tensor(name)
        return
    bins = sorted(source_dir.glob("*.bin"))
    if not bins:
        raise ConversionError(f"{source_dir} holds no *.safetensors or *.bin weights")
    for file in bins:
        yield from torch.load(file, map_location="cpu", weights_only=True).items()


def _write_weights(path: Path, plan, total: int, progress: Callable[[float], None]) -> list[int]:
    import torch

    with open(path, "wb") as f:
        for entry, tensor in plan:
            f.seek(entry.offset)
            f.write(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            progress(0.9 * (entry.offset + entry.length) / total)
        f.truncate(total)
        f.flush()
        os.fsync(f.fileno())
    crcs = []
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            crcs.append(zlib.crc32(chunk))
    progress(1.0)
    return crcs


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_leftovers(store: Path, key: str) -> None:
    """An earlier conversion of this key that crashed or ran out of disk."""
    for leftover in store.glob(f".tmp-{key}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
