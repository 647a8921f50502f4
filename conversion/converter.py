"""Checkpoint -> the gthread load format (memory/store_format.py): every tensor written at an
aligned offset of one file, CRC32 per chunk, the manifest last, the directory renamed into place.
A crash or a full disk leaves only a temporary directory, removed on the next run.
"""

import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional

from memory.store_format import ALIGN, CHUNK, FORMAT, MANIFEST, WEIGHTS, Manifest, TensorEntry, align, converted

if TYPE_CHECKING:
    import torch

_AUX_SUFFIXES = (".json", ".txt", ".model", ".jinja", ".tiktoken", ".py")
_SKIP = ("model.safetensors.index.json", "pytorch_model.bin.index.json", MANIFEST)


class ConversionError(RuntimeError):
    pass


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
        crcs, sums = _write_weights(tmp / WEIGHTS, plan, total, progress)
        for aux in source_dir.iterdir():
            if aux.is_file() and aux.name.endswith(_AUX_SUFFIXES) and aux.name not in _SKIP:
                _write_synced(tmp / aux.name, aux.read_bytes())
        manifest = Manifest(FORMAT, source, ALIGN, CHUNK, total, [entry for entry, _ in plan], crcs, sums)
        _write_synced(tmp / MANIFEST, manifest.to_json())
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


def _write_weights(path: Path, plan, total: int, progress: Callable[[float], None]) -> tuple[list[int], list[int]]:
    """Write the tensors at their offsets, then checksum the file as written: CRC32 and the
    device-verifiable sum per chunk."""
    import torch

    from memory.device_checksum import chunk_sum

    with open(path, "wb") as f:
        for entry, tensor in plan:
            f.seek(entry.offset)
            f.write(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            progress(0.9 * (entry.offset + entry.length) / total)
        f.truncate(total)
        f.flush()
        os.fsync(f.fileno())
    crcs, sums = [], []
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            crcs.append(zlib.crc32(chunk))
            sums.append(chunk_sum(torch.frombuffer(bytearray(chunk), dtype=torch.uint8)))
    progress(1.0)
    return crcs, sums


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
