"""Sleep on a CUDA host that keeps the KV blocks an engine offloaded to host memory (spec.kvCache).

vLLM's own sleep clears every cache, its KV connector's included: an engine with native KV
offloading throws away the host copies of its prefixes exactly when they would pay, at the wake.
gthreadd's sleep for such an engine (engine/vllm_engine.py) pauses the scheduler without clearing,
resets only the device prefix cache (its blocks are about to be freed), and puts the workers to
sleep through this extension; the wake wakes the workers and resumes the scheduler. The offloaded
blocks are looked up again by the connector on the next request that shares their prefix.

Loaded into vLLM's GPU workers as `worker_extension_cls` and called through `collective_rpc`.
These are vLLM internals (pinned in engine/compat.py).
"""


class OffloadKeepingSleepExtension:
    """Mixed into vLLM's GPU worker; `self` is the worker."""

    def gthread_sleep_keeping_offload(self, level: int) -> None:
        import torch

        # KV stores into host memory run on the connector's own streams: let them finish before
        # the device memory they read is unmapped.
        torch.cuda.synchronize()
        self.sleep(level)
