"""vLLM model loader for the gthread load format (`--load-format gthread`).

Registered through the `vllm.general_plugins` entry point, which vLLM runs inside every engine
process, so the loader exists where the weights are loaded. It fills the model from the converted
model's weights file (memory/disk_tier.py), refusing corrupt chunks.
"""

import time


def register() -> None:
    """Entry point: vLLM calls it in each process; registering twice is harmless."""
    from vllm.model_executor.model_loader import register_model_loader
    from vllm.model_executor.model_loader.base_loader import BaseModelLoader

    @register_model_loader("gthread")
    class GthreadModelLoader(BaseModelLoader):
        def download_model(self, model_config) -> None:
            """Converted models are local by construction."""

        def load_weights(self, model, model_config) -> None:
            from pathlib import Path

            from conversion.gthread_format import ChecksumError, mark_corrupt
            from memory.disk_tier import read_weights, tensors

            from vllm.logger import init_logger

            log = init_logger("vllm.gthread_loader")  # vLLM's handlers: the line lands in the engine's log
            directory = Path(model_config.model)
            started = time.perf_counter()
            try:
                manifest, buffer = read_weights(directory)
            except ChecksumError as exc:
                mark_corrupt(directory, str(exc))  # the daemon converts again before the next boot
                raise
            loaded = model.load_weights(tensors(manifest, buffer))
            expected = {name for name, _ in model.named_parameters()}
            missing = expected - set(loaded) if loaded is not None else set()
            if missing:
                raise ValueError(f"the gthread weights of {directory} lack {sorted(missing)[:5]}")
            elapsed = time.perf_counter() - started
            log.info("gthread: loaded %d bytes of weights in %.2f seconds (%.2f GiB/s)", manifest.total_bytes,
                     elapsed, manifest.total_bytes / 2**30 / elapsed)
