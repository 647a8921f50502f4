"""A real vLLM engine, started and stopped in this process as the daemon does: nothing of it may
stay behind in the daemon's memory (engine/compat.py forget_stopped_engines)."""

import gc

import pytest
from transformers import PreTrainedTokenizerBase

from engine.config import EngineConfig
from engine.vllm_engine import VllmEngine

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def live_tokenizers() -> int:
    gc.collect()
    return sum(isinstance(o, PreTrainedTokenizerBase) for o in gc.get_objects())


async def start_and_stop(checkpoint) -> None:
    engine = VllmEngine(EngineConfig("m", str(checkpoint), ("m",), gpu_memory_utilization=0.1))
    await engine.start()
    await engine.stop()


async def test_a_stopped_engines_tokenizers_are_freed(checkpoint):
    """vLLM's signature cache pinned each engine's tokenizer pool: 40 MiB of the daemon per start.
    The first start leaves vLLM's cached tokenizer of the checkpoint (one per model, reused)."""
    await start_and_stop(checkpoint)
    after_one = live_tokenizers()
    await start_and_stop(checkpoint)
    assert live_tokenizers() == after_one
