"""Reads into device memory, on the CPU: the device-verifiable checksum, the read path a host
chooses, and the KvikIO reader driven through FakeKvikio (a test double for the kvikio module that
reads with plain file I/O into CPU tensors: no libcuda here). bench/gpu/ runs the real thing."""

import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conversion import converter
from conversion.converter import convert
from memory import kvikio_reader
from memory.device_checksum import chunk_sum, chunk_sums
from memory.disk_tier import read_weights, tensors
from memory.read_path import ReadPath, on_miss, read_path
from memory.store_format import WEIGHTS, ChecksumError, Manifest

SOURCE = {"modelName": "test/tiny"}
SMALL_CHUNK = 64 * 1024


def reference_sum(data: bytes) -> int:
    words = [int.from_bytes(data[i:i + 2], "little") for i in range(0, len(data), 2)]
    return sum((2 * i + 1) * w for i, w in enumerate(words))


def test_the_sum_is_the_documented_formula_and_catches_any_one_word():
    data = torch.randint(0, 256, (10_000,), dtype=torch.uint8)
    assert chunk_sum(data) == reference_sum(bytes(data.tolist()))
    for index in (0, 4999, 9998, 9999):
        changed = data.clone()
        changed[index] ^= 0x80
        assert chunk_sum(changed) != chunk_sum(data)


def test_the_sum_is_exact_across_pieces_of_a_full_chunk(monkeypatch):
    from memory import device_checksum

    monkeypatch.setattr(device_checksum, "PIECE", 4096)  # many pieces, the same answer
    data = torch.full((20_000,), 255, dtype=torch.uint8)
    assert chunk_sum(data) == reference_sum(bytes(data.tolist()))
    with pytest.raises(ValueError):
        chunk_sum(data[:3])


def test_a_gpu_host_reads_a_miss_with_kvikio_only_when_it_can_verify_it():
    assert on_miss(on_gpu=True, kvikio_installed=True, device_sums=True) == ReadPath.kvikio
    assert on_miss(on_gpu=False, kvikio_installed=True, device_sums=True) == ReadPath.disk
    assert on_miss(on_gpu=True, kvikio_installed=False, device_sums=True) == ReadPath.disk
    assert on_miss(on_gpu=True, kvikio_installed=True, device_sums=False) == ReadPath.disk, \
        "an old manifest has no device sums: its bytes are checked on the host"
    assert read_path(resident=True, miss=ReadPath.kvikio) == ReadPath.host_tier
    assert read_path(resident=False, miss=ReadPath.kvikio) == ReadPath.kvikio


class FakeKvikio(types.ModuleType):
    """Test double for the kvikio module: CuFile.pread fills a (CPU) tensor with plain reads."""

    class CuFile:
        def __init__(self, path, flags="r"):
            self._file = open(path, "rb")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._file.close()

        def pread(self, buf, size, file_offset=0):
            self._file.seek(file_offset)
            data = self._file.read(size)
            buf[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return types.SimpleNamespace(get=lambda: len(data))

    defaults = types.SimpleNamespace(is_compat_mode_preferred=lambda: True)


@pytest.fixture
def converted_model(tmp_path, monkeypatch) -> Path:
    """A converted model of several small chunks, so windows and chunks do not coincide."""
    src = tmp_path / "src"
    src.mkdir()
    torch.manual_seed(0)
    save_file({f"layer{i}.weight": torch.randn(100, 97) for i in range(6)} | {"big": torch.randn(300, 300)},
              src / "model.safetensors")
    (src / "config.json").write_text("{}")
    monkeypatch.setattr(converter, "CHUNK", SMALL_CHUNK)
    return convert(src, tmp_path / "store", "tiny", SOURCE, None)


@pytest.fixture
def fake_kvikio(monkeypatch):
    monkeypatch.setitem(sys.modules, "kvikio", FakeKvikio("kvikio"))


def test_conversion_records_a_device_sum_per_chunk(converted_model):
    manifest = Manifest.read(converted_model)
    data = torch.frombuffer(bytearray((converted_model / WEIGHTS).read_bytes()), dtype=torch.uint8)
    assert manifest.chunk_bytes == SMALL_CHUNK and len(manifest.chunk_sum16) > 3
    assert manifest.chunk_sum16 == chunk_sums(data, SMALL_CHUNK)


def test_windows_hold_whole_tensors_on_chunk_boundaries(converted_model):
    manifest = Manifest.read(converted_model)
    bounds = kvikio_reader.windows(manifest, window=100_000)
    assert [e.name for _, _, group in bounds for e in group] == \
        [e.name for e in sorted(manifest.tensors, key=lambda e: e.offset)]
    for lo, hi, group in bounds:
        assert lo % SMALL_CHUNK == 0 and (hi % SMALL_CHUNK == 0 or hi == manifest.total_bytes)
        assert lo <= group[0].offset and group[-1].offset + group[-1].length <= hi
    assert len(bounds) > 1
    assert any(g[0].name == "big" and len(g) == 1 for _, _, g in bounds), "a tensor larger than a window: alone"


def test_kvikio_reads_the_same_tensors_as_the_disk_tier(converted_model, fake_kvikio):
    manifest, buffer = read_weights(converted_model)
    expected = {name: t.clone() for name, t in tensors(manifest, buffer)}
    got = {name: t.clone() for name, t in kvikio_reader.read_tensors(converted_model, manifest, "cpu", window=100_000)}
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[n], expected[n]) for n in expected)


def test_a_flipped_byte_is_caught_on_the_kvikio_path(converted_model, fake_kvikio):
    manifest = Manifest.read(converted_model)
    with open(converted_model / WEIGHTS, "r+b") as f:
        f.seek(3 * SMALL_CHUNK + 17)
        byte = f.read(1)
        f.seek(3 * SMALL_CHUNK + 17)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(ChecksumError, match="chunk 3 .* does not match its device sum"):
        list(kvikio_reader.read_tensors(converted_model, manifest, "cpu"))


def test_a_manifest_without_device_sums_is_refused_on_the_kvikio_path(converted_model, fake_kvikio):
    manifest = Manifest.read(converted_model)
    manifest.chunk_sum16 = []
    with pytest.raises(ChecksumError, match="no device sums"):
        list(kvikio_reader.read_tensors(converted_model, manifest, "cpu"))
