"""How many streamed tokens per second one front-end process can carry: gthreadd's daemon process
(which carries every model's front end) against `vllm serve`'s API process, with an engine fast
enough that the front end, not the model, is what binds.

The engine is vLLM's own, running a model of the demo's architecture and tokenizer cut down to
one layer of width 64 with random weights (built here, in a temporary directory: nothing is
downloaded or committed), so that a step costs the engine core almost nothing and a batch of
streams produces tokens faster than a front end can tokenize, detokenize and send them. The load
is streamed chat completions at a high concurrency (`ignore_eos`). For each server: output
tokens/s, the serving process's own CPU (in cores: 1.0 is all one Python process can use) and
CPU per token. A front end at ~1.0 core carries its ceiling; below it, something else bound (on
a 2-core host, the engine core and the load generator share the cores) and the row says so; its
CPU per token still gives the ceiling of one core, 1 s / CPU per token.

    .venv/bin/python bench/frontend_ceiling.py --checkpoint .state/checkpoints/smollm2-135m-instruct
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_vs_vllm import ServerError, bench_gthreadd, bench_vllm, parse_args as parse_load, print_stamp  # noqa: E402

TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 32}
SATURATED = 0.9
"""A front end at this many cores or more is what binds."""


def tiny_checkpoint(demo: Path, into: Path) -> Path:
    """The demo's config and tokenizer, one layer of width 64, random weights (bf16)."""
    into.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        if (demo / name).exists():
            shutil.copy(demo / name, into / name)
    config = {**json.loads((demo / "config.json").read_text()), **TINY}
    (into / "config.json").write_text(json.dumps(config, indent=1))
    h, i, v = TINY["hidden_size"], TINY["intermediate_size"], config["vocab_size"]
    kv = TINY["num_key_value_heads"] * TINY["head_dim"]
    generator = torch.Generator().manual_seed(0)

    def weight(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * 0.02).to(torch.bfloat16)

    tensors = {"model.embed_tokens.weight": weight(v, h), "model.norm.weight": torch.ones(h, dtype=torch.bfloat16)}
    layer = "model.layers.0."
    tensors |= {layer + "input_layernorm.weight": torch.ones(h, dtype=torch.bfloat16),
                layer + "post_attention_layernorm.weight": torch.ones(h, dtype=torch.bfloat16),
                layer + "self_attn.q_proj.weight": weight(h, h), layer + "self_attn.k_proj.weight": weight(kv, h),
                layer + "self_attn.v_proj.weight": weight(kv, h), layer + "self_attn.o_proj.weight": weight(h, h),
                layer + "mlp.gate_proj.weight": weight(i, h), layer + "mlp.up_proj.weight": weight(i, h),
                layer + "mlp.down_proj.weight": weight(h, i)}
    save_file(tensors, into / "model.safetensors")
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="the demo checkpoint (its tokenizer)")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="runs of both servers, the first alternating")
    parser.add_argument("--port-base", type=int, default=8620)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print_stamp("frontend_ceiling")
    rows = []
    with tempfile.TemporaryDirectory(prefix="frontend_ceiling-") as tmp:
        tiny = tiny_checkpoint(args.checkpoint.resolve(), Path(tmp) / "tiny")
        load = parse_load(["--checkpoint", str(tiny), "--stream", "--vllm-stats", "--requests", str(args.requests),
                           "--concurrency", str(args.concurrency), "--max-tokens", str(args.max_tokens),
                           "--port-base", str(args.port_base)])
        try:
            for repeat in range(args.repeats):
                order = (bench_gthreadd, bench_vllm) if repeat % 2 == 0 else (bench_vllm, bench_gthreadd)
                for position, bench in enumerate(order):
                    workdir = Path(tmp) / f"{repeat}-{position}"
                    workdir.mkdir()
                    rows.append((repeat, bench(load, workdir, position == 0)))
        except ServerError as exc:
            sys.exit(f"error: {exc}")
    print(f"# load: {args.requests} streamed chat completions, concurrency {args.concurrency}, max_tokens "
          f"{args.max_tokens} (ignore_eos), a 1-layer width-64 model of the demo's vocabulary; vllm serve with "
          "its stats on (gthreadd records them for /metrics)")
    row = "{:<14}{:>12}{:>16}{:>14}{:>18}{:>14}  {}"
    print(row.format("server", "out tok/s", "front end cores", "CPU us/tok", "1-core tok/s", "TTFT p50 ms",
                     "bound by"))
    out = []
    for repeat, r in rows:
        cores = r.cpu_us_per_token * r.output_tok_per_s / 1e6
        bound = "the front end" if cores >= SATURATED else "not the front end"
        print(row.format(f"{repeat + 1}: {r.server}", f"{r.output_tok_per_s:.0f}", f"{cores:.2f}",
                         f"{r.cpu_us_per_token:.1f}", f"{1e6 / r.cpu_us_per_token:.0f}", f"{r.ttft_p50_ms:.0f}",
                         bound))
        out.append({"repeat": repeat, "server": r.server, "tok_per_s": r.output_tok_per_s, "cores": cores,
                    "cpu_us_per_token": r.cpu_us_per_token, "ttft_p50_ms": r.ttft_p50_ms})
    for metric in ("tok_per_s", "cpu_us_per_token"):
        ratios = [g[metric] / v[metric] for g, v in zip((o for o in out if o["server"] == "gthreadd"),
                                                       (o for o in out if o["server"] == "vllm"))]
        print(f"# gthreadd/vllm {metric}: mean {statistics.fmean(ratios):.3f} ({', '.join(f'{x:.3f}' for x in ratios)})")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
