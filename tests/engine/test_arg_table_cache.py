"""The argument table's cache: one file per installed vLLM, read from vLLM once, written whole."""

import json
import sys
import types

import pytest

from engine import arg_table_cache
from engine.arg_table_check import FORMAT


@pytest.fixture
def extractions(monkeypatch, tmp_path) -> list[str]:
    """Versions read from "vLLM" (a stand-in for engine.arg_table, which would import it)."""
    read: list[str] = []
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def extract() -> dict:
        dist, version = arg_table_cache.installed_vllm()
        read.append(version)
        return {"format": FORMAT, "dist": dist, "version": version}
    monkeypatch.setitem(sys.modules, "engine.arg_table", types.SimpleNamespace(extract=extract))
    monkeypatch.setattr(arg_table_cache, "installed_vllm", lambda: ("vllm", "0.32.0"))
    return read


def test_the_installed_vllm_is_told_by_its_distribution():
    dist, version = arg_table_cache.installed_vllm()
    assert dist.startswith("vllm") and version[0].isdigit()


def test_read_once_per_version(extractions, monkeypatch, tmp_path):
    said: list[str] = []
    first = arg_table_cache.installed_table(said.append)
    assert arg_table_cache.installed_table(said.append) == first and extractions == ["0.32.0"]
    assert len(said) == 1 and "vllm 0.32.0" in said[0] and str(tmp_path / "cache") in said[0]
    assert arg_table_cache.cache_path("vllm", "0.32.0").name == f"vllm-0.32.0-{FORMAT}.json"
    monkeypatch.setattr(arg_table_cache, "installed_vllm", lambda: ("vllm", "0.33.0"))
    assert arg_table_cache.installed_table(said.append)["version"] == "0.33.0"
    assert extractions == ["0.32.0", "0.33.0"], "another version misses"


def test_a_table_of_another_format_or_version_is_not_used(extractions):
    path = arg_table_cache.cache_path("vllm", "0.32.0")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": FORMAT - 1, "dist": "vllm", "version": "0.32.0"}))
    assert arg_table_cache.read("vllm", "0.32.0") is None
    path.write_text("{not json")
    assert arg_table_cache.read("vllm", "0.32.0") is None
    arg_table_cache.installed_table(lambda line: None)
    assert extractions == ["0.32.0"] and arg_table_cache.read("vllm", "0.32.0")["format"] == FORMAT


def test_a_table_is_written_whole_or_not_at_all(extractions):
    good = {"format": FORMAT, "dist": "vllm", "version": "0.32.0"}
    path = arg_table_cache.write(good)
    with pytest.raises(TypeError):
        arg_table_cache.write(good | {"unwritable": object()})
    assert json.loads(path.read_text()) == good, "the table before stays"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary file is left"


def test_an_unwritable_cache_means_reading_again(extractions, monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file"))
    said: list[str] = []
    assert arg_table_cache.installed_table(said.append)["version"] == "0.32.0"
    assert arg_table_cache.installed_table(said.append)["version"] == "0.32.0"
    assert extractions == ["0.32.0", "0.32.0"] and "cannot cache" in said[1]


def test_no_table_without_an_installed_vllm(extractions, monkeypatch):
    monkeypatch.setattr(arg_table_cache, "installed_vllm", lambda: None)
    assert arg_table_cache.installed_table(lambda line: None) is None and extractions == []
