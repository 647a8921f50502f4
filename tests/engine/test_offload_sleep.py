"""Sleep levels on a CUDA host, and a kvCache engine's sleep there that keeps its offloaded KV blocks: the calls gthreadd makes
instead of vLLM's sleep, which would clear its KV connector's cache. RecordingLLM is a test double
for vLLM's AsyncLLM that records calls; each call is also bound to the real AsyncLLM's signature,
so the double cannot drift from the vLLM installed. The GPU run is bench/kv_prefix.py."""

import inspect

import pytest
from vllm.v1.engine.async_llm import AsyncLLM

import engine.vllm_engine as vllm_engine
from engine.config import EngineConfig
from engine.offload_sleep import OffloadKeepingSleepExtension
from engine.vllm_engine import VllmEngine


class RecordingLLM:
    """A test double for AsyncLLM: records (method, arguments) after binding them to the real one."""

    errored = False

    def __init__(self):
        self.calls: list[tuple] = []

    def __getattr__(self, name: str):
        signature = inspect.signature(getattr(AsyncLLM, name))

        async def record(*args, **kwargs):
            signature.bind(None, *args, **kwargs)  # raises TypeError on a call vLLM would refuse
            self.calls.append((name, *args, *sorted(kwargs.items())))
        return record


class FakeCudaPlatform:
    """A test double for vLLM's current_platform on a CUDA host."""

    @staticmethod
    def is_cpu() -> bool:
        return False


@pytest.fixture
def on_cuda(monkeypatch):
    monkeypatch.setattr(vllm_engine, "current_platform", FakeCudaPlatform)


def recorded_engine(load_format: str, kv_offload_bytes: int) -> tuple[VllmEngine, RecordingLLM]:
    engine = VllmEngine(EngineConfig("m", "/m", ("m",), load_format=load_format, kv_offload_bytes=kv_offload_bytes))
    engine._llm = llm = RecordingLLM()
    engine._state = object()
    return engine, llm


async def test_a_kv_offloading_engine_sleeps_without_clearing_its_offloaded_blocks(on_cuda):
    engine, llm = recorded_engine("auto", 2**30)
    await engine.sleep(1)
    assert llm.calls == [
        ("pause_generation", ("clear_cache", False), ("mode", "abort")),
        ("reset_prefix_cache", ("reset_connector", False), ("reset_running_requests", True)),
        ("collective_rpc", "gthread_sleep_keeping_offload", ("kwargs", {"level": 1})),
    ]
    llm.calls.clear()
    await engine.wake()
    assert llm.calls == [("collective_rpc", "wake_up", ("kwargs", {"tags": None})), ("resume_generation",)]


async def test_a_gthread_model_with_kv_offloading_wakes_in_steps_then_resumes(on_cuda):
    engine, llm = recorded_engine("gthread", 2**30)
    await engine.sleep(1)
    assert llm.calls[-1] == ("collective_rpc", "gthread_sleep_keeping_offload", ("kwargs", {"level": 2}))
    llm.calls.clear()
    await engine.wake()
    assert llm.calls == [
        ("collective_rpc", "wake_up", ("kwargs", {"tags": ["weights"]})),
        ("collective_rpc", "reload_weights"),
        ("collective_rpc", "wake_up", ("kwargs", {"tags": ["kv_cache"]})),
        ("resume_generation",),
    ]


async def test_a_sleep_that_keeps_its_requests_is_vllms_pause_keep_and_its_wake_resumes_them(on_cuda):
    """Scheduler rule 14 on a GPU: vLLM's sleep pauses ("keep") and resets the caches itself, and
    its wake_up resumes the scheduler; with KV offloading, gthreadd's own pause keeps them too."""
    engine, llm = recorded_engine("auto", 0)
    await engine.sleep(1, keep=True)
    await engine.wake()
    assert llm.calls == [("sleep", ("level", 1), ("mode", "keep")), ("wake_up",)]
    engine, llm = recorded_engine("auto", 2**30)
    await engine.sleep(1, keep=True)
    await engine.wake()
    assert llm.calls[0] == ("pause_generation", ("clear_cache", False), ("mode", "keep"))
    assert llm.calls[-1] == ("resume_generation",)


async def test_without_kv_offloading_vllm_sleeps_as_it_does(on_cuda):
    engine, llm = recorded_engine("auto", 0)
    await engine.sleep(1)
    await engine.sleep(2)
    await engine.wake()
    assert llm.calls == [("reset_prefix_cache",), ("sleep", ("level", 1), ("mode", "abort")), ("wake_up",)], \
        "a CUDA sleep is not deepened"
    llm.calls.clear()
    await engine.sleep(2)
    await engine.wake()
    assert llm.calls == [("reset_prefix_cache",), ("sleep", ("level", 2), ("mode", "abort")),
                         ("wake_up", ("tags", ["weights"])),
                         ("collective_rpc", "reload_weights"), ("wake_up", ("tags", ["kv_cache"]))]


def test_the_worker_extension_finishes_transfers_before_sleeping(monkeypatch):
    import torch

    done = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: done.append("synchronize"))

    class FakeWorker(OffloadKeepingSleepExtension):
        """A test double for vLLM's GPU worker, with the extension mixed in as vLLM does."""

        def sleep(self, level: int) -> None:
            done.append(("sleep", level))

    FakeWorker().gthread_sleep_keeping_offload(2)
    assert done == ["synchronize", ("sleep", 2)]
