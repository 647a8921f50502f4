"""Build an ordinary Hugging Face checkpoint directory from a GGUF file.

transformers dequantizes GGUF into torch tensors (undoing llama.cpp's Q/K permutation), but
refuses to `save_pretrained` such a model; so we write the state dict with safetensors ourselves,
plus a config that no longer claims GGUF quantization, and the tokenizer. vLLM loads the result
like any checkpoint. The directory appears only once complete (conversion/checkpoint_dir.py).
"""

import json
from pathlib import Path

from conversion.checkpoint_dir import building


def build_hf_checkpoint(gguf_file: Path, out_dir: Path, dtype: str = "bfloat16") -> Path:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    with building(out_dir) as tmp:
        model = AutoModelForCausalLM.from_pretrained(
            gguf_file.parent, gguf_file=gguf_file.name, dtype=getattr(torch, dtype)
        )
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if getattr(model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})

        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config["architectures"] = [type(model).__name__]
        config["torch_dtype"] = dtype
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if model.generation_config is not None:
            model.generation_config.save_pretrained(tmp)

        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        tokenizer.save_pretrained(tmp)
    return out_dir
