"""On the CPU, an engine's model runs inside its EngineCore process, not in a worker process of its own.

vLLM's CPU platform turns the one-process executor into the multiprocess one (`uni` -> `mp`) when
the EngineCore has a process of its own, so that the worker can be spawned with its OpenMP threads
bound (OMP_NUM_THREADS and OMP_PLACES set for it) and a core left to the EngineCore, which waits on
the worker's message queue. For a daemon that keeps engines asleep that costs twice:
- every engine is two processes of imported runtime (torch, vLLM: ~0.47 GiB of private memory
  each), and a sleeping engine keeps both, so a sleeper's residue on the CPU was ~0.98 GiB where
  one process keeps ~0.5 (bench/README.md, issue 35);
- the reserved core is a core the model does not run on: on a 2-core host it runs on one (39 ms a
  token for the demo model, against 22 ms in one process, 2026-12-07).
The EngineCore is still a fresh spawned process, so the model's OpenMP threads are the first ones
it starts: nothing of the reason for the rule is lost. An explicit `--distributed-executor-backend`
and a model parallel over several ranks keep vLLM's choice.
"""

from engine.compat import current_platform


def run_model_in_engine_core(vllm_config, asked: object) -> None:
    """Where vLLM's config would spawn one worker for a CPU engine, run the model in the EngineCore
    (`asked`: the executor backend the Model's arguments named, None if they named none)."""
    parallel = vllm_config.parallel_config
    if current_platform.is_cpu() and asked is None and parallel.world_size == 1:
        parallel.distributed_executor_backend = "uni"
