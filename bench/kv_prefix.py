"""Prompt processing of a long shared prefix before a sleep and after the wake, with spec.kvCache
and without, in one gthreadd run (issue 14's goal: a prefix computed before a sleep is not computed
again after the wake).

Two Models on one checkpoint: `kv` (kvCache enabled: vLLM's native KV offloading into host memory
the daemon's ledger reserves) and `plain`. For each, in turn, with max_tokens 1 so the time is the
prefill: the prefix with a first question (computed), with a second (vLLM's prefix cache), then
`gthread sleep` and `gthread wake` and a third question: what the wake kept of the prefix.

vLLM offloads KV blocks on CUDA and XPU devices only, so on a CPU host both Models recompute after
the wake (the `kv` Model gets a KVCacheUnsupported event); the comparison that matters runs on a
GPU (bench/gpu/session.sh kv).

    .venv/bin/python bench/kv_prefix.py --checkpoint .state/checkpoints/smollm2-135m-instruct
"""

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import asyncio

import aiohttp

from gthreadd.spec.resource import model_yaml
from serving_vs_vllm import (BIN, HOST, SERVER_ENV, add_daemon_flags, gthreadd_ready, parse_daemon_args, print_stamp,
                             running)
from wake_latency import wait_state

MODELS = {"kv": "  kvCache: {enabled: true, maxSize: %s}\n", "plain": ""}
STEPS = ("computed", "prefix cache", "after sleep and wake")
QUESTIONS = ("Who keeps the lighthouse?", "What did the storm break?", "How did the story end?")
PARAGRAPH = ("The keeper climbed the tower every evening, trimmed the wick, wound the clockwork and wrote "
             "the weather in a ledger whose pages had gone soft with salt. ")


def prefix_text(checkpoint: Path, tokens: int) -> str:
    """About `tokens` tokens of the model's tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    per_paragraph = len(tokenizer(PARAGRAPH)["input_ids"])
    return "".join(f"[{i}] {PARAGRAPH}" for i in range(max(1, tokens // (per_paragraph + 3))))


async def prefill_seconds(base_url: str, model: str, prefix: str, question: str) -> tuple[float, int]:
    """(seconds, prompt tokens) of a completion of one token after the prefix and the question."""
    body = {"model": model, "messages": [{"role": "system", "content": prefix}, {"role": "user", "content": question}],
            "max_tokens": 1, "temperature": 0}
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as session:
        async with session.post(f"{base_url}/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            usage = (await response.json())["usage"]
    return time.monotonic() - started, usage["prompt_tokens"]


def gthread(socket: Path, *args: str) -> None:
    subprocess.run([str(BIN / "gthread"), "--socket", str(socket), *args], check=True, env=SERVER_ENV,
                   stdout=subprocess.DEVNULL, timeout=900)


def measure(args: argparse.Namespace, workdir: Path) -> dict:
    base_url, socket = f"http://{HOST}:{args.port}", workdir / "ctl.sock"
    models_dir = workdir / "models.d"
    models_dir.mkdir()
    limits = f'  gpuMemoryUtilization: "{args.utilization}"\n  extraArgs: ["--max-model-len", "{args.max_model_len}"]\n'
    for name, more in MODELS.items():
        spec = limits + "  sleep: {idleTimeout: 1h}\n" + (more % args.kv_size if "%s" in more else more)
        (models_dir / f"{name}.yaml").write_text(model_yaml(name, args.checkpoint, spec))
    argv = [str(BIN / "gthreadd"), "--models-dir", str(models_dir), "--state-dir", str(workdir / "state"),
            "--listen", f"{HOST}:{args.port}", "--control-socket", str(socket),
            "--host-tier-dir", str(args.host_tier_dir / "kv_prefix")]
    prefix = prefix_text(args.checkpoint, args.prefix_tokens)
    result: dict = {}
    log = workdir / "gthreadd.log"
    with running("gthreadd", argv, log, gthreadd_ready(base_url, log, tuple(MODELS), ("serving", "sleeping"))):
        for name in MODELS:
            times = []
            for step, question in zip(STEPS, QUESTIONS):
                if step == "after sleep and wake":
                    gthread(socket, "sleep", name)
                    wait_state(base_url, name, "sleeping")
                    gthread(socket, "wake", name)
                    wait_state(base_url, name, "serving")
                seconds, prompt_tokens = asyncio.run(prefill_seconds(base_url, name, prefix, question))
                times.append(seconds)
            result[name] = {"seconds": times, "prompt_tokens": prompt_tokens}
        result["kv_cache_bytes"] = json.loads(subprocess.run(
            [str(BIN / "gthread"), "--socket", str(socket), "get", "model", "kv", "-o", "json"],
            capture_output=True, text=True, env=SERVER_ENV, check=True).stdout)["status"].get("kvCacheBytes")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_daemon_flags(parser, port=8620)
    parser.add_argument("--prefix-tokens", type=int, default=2000)
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--kv-size", default="2Gi", help="the kv Model's spec.kvCache.maxSize")
    parser.add_argument("--utilization", default="0.20", help="each Model's gpuMemoryUtilization")
    args = parse_daemon_args(parser)
    with tempfile.TemporaryDirectory(prefix="kv_prefix-") as tmp:
        result = measure(args, Path(tmp))
    print_stamp("kv_prefix")
    print(f"# prompt: {result['plain']['prompt_tokens']} tokens; kv Model's status.kvCacheBytes: "
          f"{result['kv_cache_bytes']}")
    print(f"{'model':<8}" + "".join(f"{step + ' s':>24}" for step in STEPS) + f"{'after wake / computed':>24}")
    for name in MODELS:
        seconds = result[name]["seconds"]
        print(f"{name:<8}" + "".join(f"{s:>24.3f}" for s in seconds) + f"{seconds[2] / seconds[0]:>24.3f}")
    kv, plain = result["kv"]["seconds"][2], result["plain"]["seconds"][2]
    print(f"after the wake, kv / plain = {kv / plain:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
