"""vLLM model loader for the gthread load format (`--load-format gthread`).

Registered through the `vllm.general_plugins` entry point, which vLLM runs inside every engine
process, so the loader exists where the weights are loaded. It fills the model from the daemon's
host tier when the segment is staged (`--model-loader-extra-config '{"hostTier": DIR}'`), and
from the converted model's file on disk otherwise (memory/disk_tier.py, refusing corrupt chunks).

It serves vLLM's `reload_weights` too (`get_all_weights`), which is how a CUDA engine wakes from
level-2 sleep: its weights were discarded, and come back from pinned RAM.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from memory import kvikio_reader
from memory.read_path import ReadPath

HOST_TIER = "hostTier"
ON_MISS = "onMiss"
"""Where to read when the host tier lacks the model: "kvikio" or "disk" (memory/read_path.py)."""


def register() -> None:
    """Entry point: vLLM calls it in each process; registering twice is harmless."""
    from vllm.logger import init_logger
    from vllm.model_executor.model_loader import register_model_loader
    from vllm.model_executor.model_loader.base_loader import BaseModelLoader

    log = init_logger("vllm.gthread_loader")  # vLLM's handlers: the lines land in the engine's log

    @register_model_loader("gthread")
    class GthreadModelLoader(BaseModelLoader):
        def download_model(self, model_config) -> None:
            """Converted models are local by construction."""

        def load_weights(self, model, model_config) -> None:
            started = time.perf_counter()
            with self._weights(model_config) as (weights, total):
                loaded = model.load_weights(weights)
            expected = {name for name, _ in model.named_parameters()}
            missing = expected - set(loaded) if loaded is not None else set()
            if missing:
                raise ValueError(f"the gthread weights of {model_config.model} lack {sorted(missing)[:5]}")
            elapsed = time.perf_counter() - started
            log.info("gthread: filled the model with %d bytes in %.2f seconds (%.2f GiB/s)", total, elapsed,
                     total / 2**30 / elapsed)

        def get_all_weights(self, model_config, model) -> Iterator:
            with self._weights(model_config) as (weights, _):
                yield from weights

        @contextmanager
        def _weights(self, model_config):
            from memory.disk_tier import read_weights, tensors
            from memory.host_segment import map_segment, segment_path
            from memory.store_format import Manifest

            directory = Path(model_config.model)
            extra = self.load_config.model_loader_extra_config or {}
            host_tier = extra.get(HOST_TIER)
            segment = map_segment(segment_path(Path(host_tier), directory.name)) if host_tier else None
            started = time.perf_counter()
            if segment is None and extra.get(ON_MISS) == ReadPath.kvikio:
                manifest = Manifest.read(directory)
                if kvikio_reader.usable():
                    log.info("gthread: weights read into device memory by KvikIO (%s)", kvikio_reader.mode())
                    yield kvikio_reader.read_tensors(directory, manifest), manifest.total_bytes
                    return
                log.warning("gthread: KvikIO cannot run in this process; reading %s from disk", directory)
            if segment is not None:
                manifest, buffer = Manifest.read(directory), segment.buffer
                pinned = segment.register_with_cuda()
                log.info("gthread: weights from the host tier%s", " (registered with CUDA)" if pinned else "")
            else:
                # A ChecksumError here fails the engine's start; the daemon reads it as the root
                # cause, takes the copy out of use and converts again before the next boot.
                manifest, buffer = read_weights(directory)
                log.info("gthread: weights read from disk in %.2f seconds", time.perf_counter() - started)
            try:
                yield tensors(manifest, buffer), manifest.total_bytes
            finally:
                if segment is not None:
                    segment.close()
