"""vLLM's settings from the environment (`vllm.envs`), read once rather than on every access.

`vllm.envs` reads `os.environ` each time an attribute is asked for, and the daemon's output path
asks for two per generated token (`VLLM_COMPUTE_NANS_IN_LOGITS`, two `os.getenv` calls, in
`IterationStats.update_from_output`): about 3.5 us of a streamed token's ~100 us of front-end CPU.
vLLM caches them in its engine processes once they have started (`enable_envs_cache`); `vllm
serve`'s API process never does. The daemon caches them between engine builds. A build reads the
environment it is given (the engine's CUDA_VISIBLE_DEVICES) and its processes may be forked with
this module's state, so the cache is off while one is being built.
"""

import contextlib
from collections.abc import Iterator

from vllm import envs


@contextlib.contextmanager
def read_afresh() -> Iterator[None]:
    """Inside: every setting read from the environment as it is now. After: all of them cached
    from the environment as it is then."""
    envs.disable_envs_cache()
    try:
        yield
    finally:
        envs.enable_envs_cache()
