"""The environment engine processes are spawned with: what this vLLM needs on this host, the
devices they may see, and the daemon's own environment left as it was."""

import os

import pytest

from engine import compat
from engine.vllm_engine import _environment


def test_a_cuda_host_without_flashinfer_spawns_engines_with_vllms_own_sampler(monkeypatch):
    monkeypatch.setattr(compat.current_platform, "is_cuda", lambda: True)
    monkeypatch.setattr(compat.importlib.util, "find_spec", lambda name: None)
    monkeypatch.delenv("VLLM_USE_FLASHINFER_SAMPLER", raising=False)
    assert compat.engine_environment() == {"VLLM_USE_FLASHINFER_SAMPLER": "0"}
    monkeypatch.setenv("VLLM_USE_FLASHINFER_SAMPLER", "1")  # the user's choice wins
    assert compat.engine_environment() == {}


def test_the_cpu_engine_needs_no_variables():
    assert compat.engine_environment() == {}


def test_variables_hold_inside_and_the_daemons_own_come_back(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.delenv("GTHREAD_TEST_VAR", raising=False)
    with pytest.raises(RuntimeError), _environment({"CUDA_VISIBLE_DEVICES": "0,1", "GTHREAD_TEST_VAR": "x"}):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1" and os.environ["GTHREAD_TEST_VAR"] == "x"
        raise RuntimeError("engine start failed")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3" and "GTHREAD_TEST_VAR" not in os.environ
