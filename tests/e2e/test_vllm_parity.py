"""The same requests to `vllm serve` and to gthreadd (both URL forms), same checkpoint and flags, in
one run: every route either serves for SmolLM2 (a chat model) or all-MiniLM-L6-v2 (an embedding
model) answers through the daemon with vLLM's status and the shape of vLLM's body (keys and value
types, recursively; ids, times and generated text differ by nature).
"""

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gthreadd.spec.resource import model_yaml
from tests.e2e.daemon_process import DaemonProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

CHAT = [  # (method, vLLM path, body): what a user of SmolLM2 sends
    ("POST", "/v1/chat/completions", {"messages": QUESTION, "max_tokens": 8, "temperature": 0}),
    ("POST", "/v1/chat/completions", {"messages": QUESTION, "max_tokens": 8, "stream": True,
                                      "stream_options": {"include_usage": True}}),
    ("POST", "/v1/chat/completions", {"messages": QUESTION, "max_tokens": 4, "n": 2, "logprobs": True,
                                      "top_logprobs": 2}),
    ("POST", "/v1/chat/completions", {"messages": QUESTION, "max_tokens": 16, "response_format": {
        "type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}}),
    ("POST", "/v1/chat/completions", {"messages": QUESTION, "max_tokens": -1}),
    ("POST", "/v1/completions", {"prompt": "The capital of France is", "max_tokens": 8, "echo": True}),
    ("POST", "/v1/completions", {"prompt": "The capital of France is", "max_tokens": 8, "stream": True}),
    ("POST", "/v1/completions", {"prompt": 7}),
    ("POST", "/v1/responses", {"input": "What is the capital of France?", "max_output_tokens": 8}),
    ("POST", "/v1/responses", {"input": "What is the capital of France?", "max_output_tokens": 8, "stream": True}),
    ("POST", "/v1/messages", {"messages": QUESTION, "max_tokens": 8}),
    ("POST", "/v1/messages", {"messages": QUESTION, "max_tokens": 8, "stream": True}),
    ("POST", "/v1/messages/count_tokens", {"messages": QUESTION}),
    ("POST", "/tokenize", {"prompt": "Paris"}),
    ("POST", "/detokenize", {"tokens": [1, 2, 3]}),
]
EMBEDDING = [
    ("POST", "/v1/embeddings", {"input": ["Paris is the capital of France.", "Bonjour"]}),
    ("POST", "/score", {"text_1": "capital of France?", "text_2": ["Paris is.", "Bananas."]}),
    ("POST", "/rerank", {"query": "capital of France?", "documents": ["Paris is.", "Bananas."]}),
    ("POST", "/pooling", {"input": "Paris"}),
    ("POST", "/tokenize", {"prompt": "Paris"}),
]
PUBLIC = {"/score": ["/score", "/v1/score"], "/rerank": ["/rerank", "/v1/rerank", "/v2/rerank"]}
"""vLLM's path -> the daemon's public paths for it (otherwise the same path)."""


def shape(value):
    """Keys and value types, recursively: what a client's parser depends on."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def call(base: str, method: str, path: str, body: dict) -> tuple[int, object]:
    """(status, body shape); a stream's shape is that of its events' data, in order, deduplicated."""
    request = urllib.request.Request(base + path, data=json.dumps(body).encode() if body else None, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            status, raw, kind = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    if "text/event-stream" not in kind:
        return status, shape(json.loads(raw))
    events = []
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            event = shape(json.loads(line[6:]))
            if event not in events:
                events.append(event)
    return status, events


class VllmServe:
    def __init__(self, root: Path, checkpoint: Path, name: str, *flags: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / f"vllm-{name}.log"
        self.argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint),
                     "--served-model-name", name, "--enforce-eager", "--disable-log-stats",
                     "--host", "127.0.0.1", "--port", str(self.port), *flags]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(self.url + "/v1/models", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def side_by_side(daemon: DaemonProcess, vllm: VllmServe, model: str, requests: list) -> None:
    """Start both (they load at the same time), send every request to each, stop both."""
    try:
        vllm.start()
        daemon.start()
        daemon.wait_state(model, "serving")
        daemon.wait_for(vllm.ready, 300, "vllm serve to be ready")
        compare(daemon, vllm, model, requests)
    finally:
        daemon.kill()
        vllm.kill()


def compare(daemon: DaemonProcess, vllm: VllmServe, model: str, requests: list) -> None:
    mismatches = []
    for method, path, body in requests:
        expected = call(vllm.url, method, path, {"model": model, **body})
        statuses = []
        for public in PUBLIC.get(path, [path]):
            for url, sent in ((daemon.url, {"model": model, **body}), (f"{daemon.url}/{model}", body)):
                got = call(url, method, public, sent)
                statuses.append(str(got[0]))
                if got != expected:
                    mismatches.append(f"{method} {url}{public} {json.dumps(body)[:80]}:\n  vllm serve {expected}\n"
                                      f"  gthreadd   {got}")
        print(f"| {method} {path} | {json.dumps(body)[:60]} | {expected[0]} | {' '.join(statuses)} |")  # pytest -s
    assert not mismatches, "\n".join(mismatches)


def test_a_chat_model_answers_every_route_as_vllm_serve_does(tmp_path, checkpoint):
    flags = ("--dtype", "bfloat16", "--gpu-memory-utilization", "0.10", "--max-model-len", "2048")
    vllm = VllmServe(tmp_path, checkpoint, "smollm2", *flags)
    daemon = DaemonProcess(tmp_path / "daemon", checkpoint)
    daemon.write_model("smollm2.yaml", "smollm2", "--max-model-len", "2048", utilization="0.10")
    side_by_side(daemon, vllm, "smollm2", CHAT)


def test_an_embedding_model_answers_every_route_as_vllm_serve_does(tmp_path, embedding_checkpoint):
    vllm = VllmServe(tmp_path, embedding_checkpoint, "minilm", "--dtype", "float32", "--gpu-memory-utilization",
                     "0.10", "--runner", "pooling", "--convert", "embed")
    daemon = DaemonProcess(tmp_path / "daemon", embedding_checkpoint)
    daemon.write_file("minilm.yaml", model_yaml("minilm", f"file://{embedding_checkpoint}",
                                                "  modelType: embedding\n  dtype: float32\n"
                                                "  gpuMemoryUtilization: \"0.10\"\n"))
    side_by_side(daemon, vllm, "minilm", EMBEDDING)
