"""modelName -> a local checkpoint directory. Hub ids are resolved in a subprocess, because
huggingface-hub reads HF_HOME and HF_HUB_OFFLINE once, at import."""

import os
import subprocess
import sys

import pytest

from conversion.resolve import SourceError, resolve_source


def test_local_directory_forms(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_source(str(tmp_path)) == tmp_path
    assert resolve_source(f"file://{tmp_path}") == tmp_path


def test_local_directory_without_a_checkpoint(tmp_path):
    with pytest.raises(SourceError, match="no config.json"):
        resolve_source(str(tmp_path))


def resolve_offline(hf_home, model_name: str) -> subprocess.CompletedProcess:
    code = f"from conversion.resolve import resolve_source; print(resolve_source({model_name!r}))"
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_hub_id_from_the_offline_cache(tmp_path):
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
    result = resolve_offline(tmp_path, "org/tiny")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(snapshot)


def test_hub_id_missing_offline_says_so(tmp_path):
    result = resolve_offline(tmp_path, "org/absent")
    assert result.returncode != 0
    assert "org/absent is not in the local Hugging Face cache and the hub is offline" in result.stderr
