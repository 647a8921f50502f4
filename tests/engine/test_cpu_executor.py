"""Where a CPU engine's model runs, decided on the installed vLLM's own config for the demo checkpoint."""

import pytest

from engine.compat import AsyncEngineArgs, current_platform
from engine.cpu_executor import run_model_in_engine_core

pytestmark = pytest.mark.skipif(not current_platform.is_cpu(), reason="the rule is the CPU platform's")


def executor_of(args: AsyncEngineArgs):
    from vllm.v1.executor.abstract import Executor

    config = args.create_engine_config()
    run_model_in_engine_core(config, asked=args.distributed_executor_backend)
    return Executor.get_class(config).__name__


def test_vllm_would_spawn_a_worker_and_the_model_runs_in_the_engine_core_instead(checkpoint):
    args = AsyncEngineArgs(model=str(checkpoint), max_model_len=512)
    assert args.create_engine_config().parallel_config.distributed_executor_backend == "mp", "vLLM's CPU rule"
    assert executor_of(args) == "UniProcExecutor"


def test_an_executor_the_model_asks_for_is_kept(checkpoint):
    assert executor_of(AsyncEngineArgs(model=str(checkpoint), max_model_len=512, distributed_executor_backend="mp")) \
        == "MultiprocExecutor"
