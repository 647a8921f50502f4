"""vLLM's settings are read from the environment while an engine is built, and cached after."""

import pytest
from vllm import envs

from engine import vllm_settings


@pytest.fixture
def cache_restored():
    was_cached = envs._is_envs_cache_enabled()
    yield
    if not was_cached:
        envs.disable_envs_cache()


def test_settings_read_afresh_inside_and_cached_after(monkeypatch, cache_restored):
    monkeypatch.setenv("VLLM_COMPUTE_NANS_IN_LOGITS", "0")
    envs.enable_envs_cache()
    with vllm_settings.read_afresh():
        monkeypatch.setenv("VLLM_COMPUTE_NANS_IN_LOGITS", "1")
        assert envs.VLLM_COMPUTE_NANS_IN_LOGITS is True  # what an engine built now must see
    monkeypatch.setenv("VLLM_COMPUTE_NANS_IN_LOGITS", "0")
    assert envs.VLLM_COMPUTE_NANS_IN_LOGITS is True  # cached when the build ended
    with vllm_settings.read_afresh():
        assert envs.VLLM_COMPUTE_NANS_IN_LOGITS is False


def test_cache_is_back_after_a_failed_build(monkeypatch, cache_restored):
    with pytest.raises(RuntimeError), vllm_settings.read_afresh():
        raise RuntimeError("the engine failed to start")
    monkeypatch.setenv("VLLM_COMPUTE_NANS_IN_LOGITS", "1")
    assert envs.VLLM_COMPUTE_NANS_IN_LOGITS is False
