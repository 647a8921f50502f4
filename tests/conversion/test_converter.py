"""The gthread load format: conversion round trip, alignment, crash and full-disk safety,
corruption detection, reuse. Small synthetic checkpoints; the real model runs in tests/e2e."""

import errno
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from conversion import converter
from conversion.converter import ConversionError, convert
from memory.store_format import (
    ALIGN, MANIFEST, WEIGHTS, ChecksumError, Manifest, converted, corruption, mark_corrupt,
)
from memory.disk_tier import read_weights, tensors

SOURCE = {"modelName": "test/tiny"}


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    torch.manual_seed(0)
    weights = {"a.weight": torch.randn(33, 7), "b.bias": torch.randn(5, dtype=torch.float16),
               "c.ids": torch.arange(10, dtype=torch.int64), "d.big": torch.randn(300, 1000)}
    save_file(weights, src / "model.safetensors")
    (src / "config.json").write_text("{}")
    (src / "tokenizer.json").write_text("{}")
    return src


def read_back(directory: Path) -> dict[str, torch.Tensor]:
    manifest, buffer = read_weights(directory)
    return {name: t.clone() for name, t in tensors(manifest, buffer)}


def test_round_trip_keeps_every_tensor(checkpoint, tmp_path):
    out = convert(checkpoint, tmp_path / "store", "tiny", SOURCE, None)
    original = load_file(checkpoint / "model.safetensors")
    back = read_back(out)
    assert back.keys() == original.keys()
    for name, tensor in original.items():
        assert torch.equal(back[name], tensor), name
    assert {p.name for p in out.iterdir()} == {MANIFEST, WEIGHTS, "config.json", "tokenizer.json"}


def test_offsets_and_size_are_aligned(checkpoint, tmp_path):
    manifest = Manifest.read(convert(checkpoint, tmp_path / "store", "tiny", SOURCE, None))
    assert all(t.offset % ALIGN == 0 for t in manifest.tensors)
    assert manifest.total_bytes % ALIGN == 0
    assert manifest.source == SOURCE and manifest.format == "gthread/1"


def test_dtype_converts_floating_tensors_only(checkpoint, tmp_path):
    back = read_back(convert(checkpoint, tmp_path / "store", "tiny-bf16", SOURCE, "bfloat16"))
    assert back["a.weight"].dtype == torch.bfloat16 and back["c.ids"].dtype == torch.int64


def test_pytorch_bin_fallback(tmp_path):
    src = tmp_path / "bin"
    src.mkdir()
    torch.save({"w": torch.ones(3, 3)}, src / "pytorch_model.bin")
    assert torch.equal(read_back(convert(src, tmp_path / "store", "bin", SOURCE, None))["w"], torch.ones(3, 3))


def test_no_weights_is_a_clear_error(tmp_path):
    with pytest.raises(ConversionError, match="no \\*.safetensors or \\*.bin"):
        convert(tmp_path, tmp_path / "store", "none", SOURCE, None)


def test_converted_model_is_reused(checkpoint, tmp_path):
    out = convert(checkpoint, tmp_path / "store", "tiny", SOURCE, None)
    stamp = (out / WEIGHTS).stat().st_mtime_ns
    assert convert(checkpoint, tmp_path / "store", "tiny", SOURCE, None) == out
    assert (out / WEIGHTS).stat().st_mtime_ns == stamp


def test_not_enough_space_is_refused_before_writing(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(converter.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    with pytest.raises(ConversionError, match="not enough space in .* needs .* GiB, 0.00 GiB free"):
        convert(checkpoint, tmp_path / "store", "tiny", SOURCE, None)
    assert list((tmp_path / "store").iterdir()) == []


def test_disk_full_midway_leaves_nothing_that_looks_complete(checkpoint, tmp_path, monkeypatch):
    def full(path, plan, total, progress):
        with open(path, "wb") as f:
            f.write(b"x" * 5000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(converter, "_write_weights", full)
    with pytest.raises(OSError):
        convert(checkpoint, tmp_path / "store", "tiny", SOURCE, None)
    assert converted(tmp_path / "store", "tiny") is None
    assert list((tmp_path / "store").iterdir()) == []


def test_a_crash_leftover_is_cleaned_and_never_used(checkpoint, tmp_path):
    store = tmp_path / "store"
    (store / ".tmp-tiny-abc").mkdir(parents=True)
    (store / ".tmp-tiny-abc" / WEIGHTS).write_bytes(b"half")
    assert converted(store, "tiny") is None
    convert(checkpoint, store, "tiny", SOURCE, None)
    assert sorted(p.name for p in store.iterdir()) == ["tiny"]


def test_corruption_is_detected_and_named(checkpoint, tmp_path):
    out = convert(checkpoint, tmp_path / "store", "tiny", SOURCE, None)
    with open(out / WEIGHTS, "r+b") as f:
        f.seek(Manifest.read(out).tensors[-1].offset + 10)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ChecksumError, match="chunk 0 .* does not match its checksum"):
        read_weights(out)


def test_a_truncated_file_is_detected(checkpoint, tmp_path):
    out = convert(checkpoint, tmp_path / "store", "tiny", SOURCE, None)
    os.truncate(out / WEIGHTS, ALIGN)
    with pytest.raises(ChecksumError, match="the manifest says"):
        read_weights(out)


def test_marked_corrupt_converts_again(checkpoint, tmp_path):
    store = tmp_path / "store"
    out = convert(checkpoint, store, "tiny", SOURCE, None)
    mark_corrupt(out, "chunk 0 does not match")
    assert converted(store, "tiny") is None and corruption(store, "tiny") == "chunk 0 does not match"
    again = convert(checkpoint, store, "tiny", SOURCE, None)
    assert converted(store, "tiny") == again and corruption(store, "tiny") == ""
