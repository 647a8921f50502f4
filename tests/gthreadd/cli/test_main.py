"""`gthread validate` / `gthreadd --check` as a user runs them, and the table format."""

import subprocess
import sys
from pathlib import Path

from gthreadd.cli.main import describe_text, host_line
from gthreadd.cli.table import render
from gthreadd.spec.byte_size import human_bytes

SEEDS = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "seeds").glob("*.yaml"))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=120)


def test_validate_accepts_every_seed_example(vllm_args_cache):
    """Seeds 000-002 as written, seed 002's whisper (modelType asr) among them."""
    assert any("modelType: asr" in p.read_text() for p in SEEDS)
    result = run("gthreadd.cli.main", "validate", *map(str, SEEDS))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("valid") == len(SEEDS), result.stdout


def test_validate_refuses_speech_synthesis_naming_why(tmp_path, vllm_args_cache):
    """The seeds' only modelType no engine here can serve: vLLM has no text to speech."""
    tts = tmp_path / "tts.yaml"
    tts.write_text("apiVersion: greenthread.ai/v1alpha1\nkind: Model\nmetadata:\n  name: voice\nspec:\n"
                   "  modelName: Qwen/Qwen2.5-Omni-7B\n  modelType: tts\n")
    result = run("gthreadd.cli.main", "validate", str(tts))
    assert result.returncode == 1
    assert (f"{tts}: voice: spec.modelType: modelType tts (text to speech: vLLM has no speech synthesis"
            in result.stderr), result.stderr
    assert "gthreadd serves chat, asr, embedding, reranker models" in result.stderr


def test_check_reports_every_error_and_fails(tmp_path, vllm_args_cache):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: greenthread.ai/v1alpha1\nkind: Model\nmetadata:\n  name: a\nspec:\n"
                   "  modelName: x/y\n  dtype: int3\n  extraArgs: [--no-such-flag]\n  sleep: {idelTimeout: 5m}\n")
    result = run("gthreadd.main", "--check", str(bad), str(SEEDS[0]))
    assert result.returncode == 1
    assert f"{bad}:7 (document 0): spec.dtype:" in result.stderr
    assert f"{bad}:9 (document 0): spec.sleep.idelTimeout: unknown field" in result.stderr
    assert f"{SEEDS[0]}: 1 Model(s) valid" in result.stdout


def test_check_runs_extra_args_through_vllms_parser(tmp_path, vllm_args_cache):
    bad = tmp_path / "args.yaml"
    bad.write_text("apiVersion: greenthread.ai/v1alpha1\nkind: Model\nmetadata:\n  name: a\nspec:\n"
                   "  modelName: x/y\n  extraArgs: [--max-model-len, lots]\n")
    result = run("gthreadd.cli.main", "validate", str(bad))
    assert result.returncode == 1 and "a: spec.extraArgs" in result.stderr and "max-model-len" in result.stderr


def test_get_models_without_a_daemon_fails_clearly():
    result = run("gthreadd.cli.main", "--server", "http://127.0.0.1:9", "get", "models")
    assert result.returncode == 1 and result.stderr.startswith("error: cannot reach gthreadd at http://127.0.0.1:9")


def test_render_pads_columns_like_kubectl():
    assert render(["NAME", "PHASE"], [["a", "Ready"], ["longer-name", ""]]).splitlines() == [
        "NAME          PHASE", "a             Ready", "longer-name   <none>"]


def test_human_bytes():
    assert (human_bytes(None), human_bytes(512), human_bytes(17.2 * 2**30)) == ("-", "512 B", "17.2 GiB")


def test_describe_says_when_a_kv_cache_is_enabled_but_not_granted():
    obj = {"apiVersion": "greenthread.ai/v1alpha1", "kind": "Model", "metadata": {"name": "m"}, "spec": {},
           "status": {"phase": "Ready", "kvCacheBytes": 0}}
    assert "  KV Cache:     enabled, not in use (see Events)" in describe_text(obj, [], None).splitlines()
    del obj["status"]["kvCacheBytes"]
    assert "KV Cache" not in describe_text(obj, [], None)


def test_describe_lists_each_replicas_rung_and_memory_and_get_gpus_the_host_budget():
    obj = {"apiVersion": "greenthread.ai/v1alpha1", "kind": "Model", "metadata": {"name": "m"}, "spec": {},
           "status": {"replicaStatus": [
               {"replica": 0, "rung": "asleep", "state": "asleep", "sleepLevel": 1, "hostBytes": 1400 * 2**20,
                "deviceBytes": {"0": 1400 * 2**20}, "reason": ""},
               {"replica": 1, "rung": "stopped", "state": "cold", "hostBytes": 0, "deviceBytes": {},
                "reason": "stopped: host memory for n, the least recently used"},
               {"replica": 2, "rung": "none", "state": "restarting", "hostBytes": 0, "deviceBytes": {},
                "reason": "the vLLM engine process EngineCore (pid 9810) was killed by SIGKILL",
                "retryAt": "2026-12-06T12:00:01Z"}]}}
    obj["status"]["replicaStatus"][0]["pid"] = 4242
    lines = describe_text(obj, [], None).splitlines()
    at = lines.index("Replicas:")
    assert lines[at + 1].split() == ["REPLICA", "RUNG", "STATE", "PID", "HOST", "MEMORY", "DEVICE", "MEMORY", "REASON"]
    assert lines[at + 2].split()[:8] == ["0", "asleep", "(level", "1)", "asleep", "4242", "1.4", "GiB"]
    assert lines[at + 3].split()[:5] == ["1", "stopped", "cold", "-", "-"]
    assert lines[at + 3].endswith("stopped: host memory for n, the least recently used")
    assert lines[at + 4].split()[:3] == ["2", "none", "restarting"]
    assert lines[at + 4].endswith("killed by SIGKILL (next try 2026-12-06T12:00:01Z)")
    line = host_line({"limitBytes": 8 * 2**30, "usedBytes": 5 * 2**30, "otherBytes": 2**30, "sleepingEngines": 3,
                      "maxSleepingEngines": 4})
    assert line.strip() == ("Host memory: 5.0 GiB of 8.0 GiB (engines 4.0 GiB, daemon and host tier 1.0 GiB); "
                            "engines asleep: 3 (at most 4)")


def test_keys_hash_prints_the_digest_a_keys_file_holds():
    result = subprocess.run([sys.executable, "-m", "gthreadd.cli.main", "keys", "hash"], input="s3cret\n",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0\n"
    empty = subprocess.run([sys.executable, "-m", "gthreadd.cli.main", "keys", "hash"], input="",
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode == 1 and "no key on stdin" in empty.stderr
