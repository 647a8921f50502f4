"""The wake of an 8B-class model, split into its steps, against the pinned copy of its weights.

No 8B checkpoint can be fetched offline, and a wake's cost does not depend on what the weights
say: this builds a Llama-3-8B-shaped checkpoint (32 layers, hidden 4096, GQA 32/8, MLP 14336;
7.5 B parameters, 15 GB in bf16) with random weights and the demo's SmolLM2 tokenizer (so its
vocabulary is 49152, not 128256), then runs bench/wake_latency.py on it: a level-1 wake (vLLM's
default loader) and a level-2 wake from the pinned host tier (gthread), each step of the wake timed
from the daemon's log, against the best pinned host-to-device copy of the same bytes. Answers are
not checked: the weights are noise. The random weights are drawn on the GPU (seconds, not minutes).

    python3 bench/gpu/big_wake.py --state-dir .state
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 128, "hidden_act": "silu", "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "vocab_size": 49152, "bos_token_id": 1, "eos_token_id": 2,
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "generation_config.json")
SHARD_BYTES = 5 * 2**30


def shapes(config: dict) -> dict[str, tuple[int, ...]]:
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = config["num_key_value_heads"] * config["head_dim"]
    out = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,), "lm_head.weight": (v, h)}
    for n in range(config["num_hidden_layers"]):
        p = f"model.layers.{n}."
        out |= {p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
                p + "mlp.down_proj.weight": (h, i), p + "input_layernorm.weight": (h,),
                p + "post_attention_layernorm.weight": (h,)}
    return out


def build(target: Path, tokenizer_from: Path) -> Path:
    if (target / "config.json").exists():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    shard: dict[str, torch.Tensor] = {}
    index: dict[str, str] = {}
    count = 0

    def flush() -> None:
        nonlocal shard, count
        if shard:
            name = f"model-{count:05d}.safetensors"
            save_file(shard, str(partial / name), metadata={"format": "pt"})
            index.update({k: name for k in shard})
            shard, count = {}, count + 1

    for name, shape in shapes(CONFIG).items():
        if name.endswith("norm.weight"):
            tensor = torch.ones(shape, dtype=torch.bfloat16)
        else:
            tensor = (torch.randn(shape, device="cuda", dtype=torch.bfloat16) * 0.02).cpu()
        shard[name] = tensor
        if sum(t.numel() * 2 for t in shard.values()) >= SHARD_BYTES:
            flush()
    flush()
    (partial / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
    (partial / "config.json").write_text(json.dumps(CONFIG, indent=1))
    for name in TOKENIZER_FILES:
        if (tokenizer_from / name).exists():
            shutil.copy(tokenizer_from / name, partial / name)
    partial.rename(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    checkpoints = args.state_dir.resolve() / "checkpoints"
    checkpoint = build(checkpoints / "llama-8b-shaped-random", checkpoints / "smollm2-135m-instruct")
    torch.cuda.empty_cache()
    print(f"checkpoint: {checkpoint} "
          f"({sum(f.stat().st_size for f in checkpoint.glob('*.safetensors')) / 2**30:.1f} GiB)", flush=True)
    command = [sys.executable, str(Path(__file__).resolve().parents[1] / "wake_latency.py"),
               "--checkpoint", str(checkpoint), "--cycles", "2", "--utilization", "0.40", "--expect", "",
               "--skip-cold", *(["--json", str(args.json)] if args.json else [])]
    sys.exit(subprocess.call(command))


if __name__ == "__main__":
    main()
