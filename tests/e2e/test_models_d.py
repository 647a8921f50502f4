"""End to end through a real gthreadd with real vLLM CPU engines (SmolLM2-135M-Instruct).

The tests run in order against one daemon, as an operator would use it: serve, add a model,
break a file, fix it, edit, delete, stop. Engines take ~30 s each to start on 2 cores.
"""

import json
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
from openai import OpenAI

from memory.host_segment import segment_path
from gthreadd.spec.resource import model_yaml
from tests.e2e.daemon_process import HUB_ID

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def second_args(max_model_len: int = 2048) -> tuple[str, ...]:
    """The second Model's extraArgs: vLLM's statistics off, as `vllm serve --disable-log-stats` would."""
    return "--max-model-len", str(max_model_len), "--disable-log-stats"


def ask(client: OpenAI, model: str, stream: bool = False) -> str:
    if stream:
        chunks = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=32,
                                                temperature=0, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    response = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=32, temperature=0)
    return response.choices[0].message.content


def clients(daemon, name):
    return [(OpenAI(base_url=f"{daemon.url}/v1", api_key="unused"), name),
            (OpenAI(base_url=f"{daemon.url}/{name}/v1", api_key="unused"), name)]


def engine_processes(daemon) -> list[psutil.Process]:
    """vLLM's EngineCore and worker processes under the daemon (they name themselves VLLM::...)."""
    return [p for p in psutil.Process(daemon.proc.pid).children(recursive=True) if p.name().startswith("VLLM::")]


def engine_pids(daemon) -> set[int]:
    return {p.pid for p in engine_processes(daemon)}


@pytest.fixture(scope="module")
def demo_pids(daemon) -> set[int]:
    """The engine processes of the demo model alone (asked for before any other model exists)."""
    daemon.wait_state("smollm2", "serving")
    pids = engine_pids(daemon)
    assert pids, "the engine runs in processes of its own"
    return pids


@pytest.fixture
def second(daemon) -> str:
    """A second Model, named by a Hugging Face repo id resolved from the offline cache, serving."""
    if not (daemon.models_dir / "second.yaml").exists():
        daemon.write_model("second.yaml", "second", *second_args(), model_name=HUB_ID)
    daemon.wait_state("second", "serving")
    return "second"


def gthread(daemon, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gthreadd.cli.main", "--server", daemon.url, *args],
                          capture_output=True, text=True, timeout=60)


def test_demo_model_answers_plain_and_streamed_through_both_url_forms(daemon, demo_pids):
    status = daemon.wait_state("smollm2", "serving")
    (replica,) = status.pop("replicas")
    host = status.pop("hostMemory")
    assert status == {"model": "smollm2", "state": "serving", "bootReady": True, "phase": "Ready",
                      "queue": {"inFlight": 0, "queued": 0, "paused": 0, "barriered": False}}
    assert (replica["rung"], replica["state"]) == ("awake", "awake") and replica["hostBytes"] > 2**30, replica
    assert 0 < host["usedBytes"] <= host["limitBytes"], "the engine's measured memory, within the budget"
    for client, model in clients(daemon, "smollm2"):
        assert "Paris" in ask(client, model)
        assert "Paris" in ask(client, model, stream=True)
    completion = OpenAI(base_url=f"{daemon.url}/v1", api_key="unused").completions.create(
        model="smollm2", prompt="The capital of France is", max_tokens=5, temperature=0)
    assert completion.choices[0].text


def test_model_listings(daemon):
    status, listing = daemon.get("/v1/models")
    assert status == 200 and [m["id"] for m in listing["data"]] == ["smollm2"]
    status, per_model = daemon.get("/smollm2/v1/models")
    assert status == 200 and per_model["data"][0]["max_model_len"] == 8192


@pytest.mark.parametrize("method,path,body,status,words", [
    ("POST", "/v1/chat/completions", b'{"model": "nope", "messages": []}', 404, "does not exist"),
    ("POST", "/nope/v1/chat/completions", b'{"messages": []}', 404, "no Model named 'nope'"),
    ("POST", "/v1/chat/completions", b'{"model": "smollm2", "messages": [', 400, "malformed JSON"),
    ("POST", "/smollm2/v1/chat/completions", b'{"messages": "not a list"}', 400, "messages"),
    ("GET", "/nope/status", None, 404, "no Model named"),
])
def test_errors_are_openai_shaped(daemon, method, path, body, status, words):
    code, payload = daemon.request(method, path, body)
    assert code == status
    assert payload["error"]["code"] == status and words in payload["error"]["message"]
    assert set(payload["error"]) >= {"message", "type", "code"}


def test_health_endpoints(daemon):
    assert daemon.get("/healthz") == (200, {"status": "ok"})
    assert daemon.get("/readyz") == (200, {"status": "ready"})


def test_gthread_get_models(daemon):
    table = gthread(daemon, "get", "models")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "PHASE", "REPLICAS", "SERVING", "SLEEPING", "NODE", "GPUS",
                              "VRAM/GPU", "URL"]
    assert row.split()[:6] == ["default", "smollm2", "Ready", "1", "1", "0"]
    assert row.split()[-1] == f"{daemon.url}/smollm2/v1"
    as_json = json.loads(gthread(daemon, "get", "models", "-o", "json").stdout)
    (obj,) = as_json["items"]
    assert obj["spec"]["gpuMemoryUtilization"] == "0.20" and obj["status"]["phase"] == "Ready"
    held = sum(psutil.Process(p.pid).memory_full_info().uss for p in engine_processes(daemon))
    measured = obj["status"]["servingMemoryPerGPU"]
    assert abs(measured - held) < 0.5 * held, (measured, held)  # measured at boot: what the engine holds
    assert "apiVersion: greenthread.ai/v1alpha1" in gthread(daemon, "get", "model", "smollm2", "-o", "yaml").stdout
    missing = gthread(daemon, "get", "model", "nope")
    assert missing.returncode == 1 and "no Model named 'nope'" in missing.stderr


def test_added_model_loads_while_the_first_keeps_answering_then_both_serve(daemon, demo_pids):
    """The second Model names a Hugging Face repo id, resolved from the (offline) HF cache."""
    (daemon.models_dir / "second.yaml").unlink(missing_ok=True)
    daemon.wait_for(lambda: daemon.get("/second/status")[0] == 404, 60, "no second Model yet")
    daemon.write_model("second.yaml", "second", *second_args(), model_name=HUB_ID)
    daemon.wait_state("second", "starting", timeout=60)
    client = OpenAI(base_url=f"{daemon.url}/v1", api_key="unused")
    assert "Paris" in ask(client, "smollm2")
    assert daemon.status("second")["state"] == "starting", "the first model answered while the second loaded"

    daemon.wait_state("second", "serving")
    answers = {}
    threads = [threading.Thread(target=lambda m=m: answers.__setitem__(m, ask(client, m)))
               for m in ("smollm2", HUB_ID, "smollm2", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(answers) == {"smollm2", "second", HUB_ID} and all("Paris" in a for a in answers.values())
    listed = [m["id"] for m in daemon.get("/v1/models")[1]["data"]]
    assert sorted(listed) == sorted([HUB_ID, "smollm2"])


def test_disable_log_stats_in_extra_args_leaves_a_model_out_of_vllms_metrics(daemon, second):
    for model in ("smollm2", "second"):
        assert "Paris" in ask(OpenAI(base_url=f"{daemon.url}/{model}/v1", api_key="unused"), model, stream=True)
    samples = daemon.metrics()
    recorded = {dict(labels)["model_name"] for (name, labels), v in samples.items()
                if name == "vllm:generation_tokens_total" and v > 0}
    assert "smollm2" in recorded and "second" not in recorded, recorded
    answered = samples[("gthread_requests_total", (("code", "200"), ("endpoint", "chat/completions"), ("model", "second")))]
    assert answered >= 1, "the daemon's own metrics still count its requests"


def test_invalid_extra_args_fail_that_model_only(daemon, second):
    daemon.write_model("broken-args.yaml", "broken-args", "--no-such-flag")
    status = daemon.wait_phase("broken-args", "Failed", timeout=60)
    assert status["reason"] == "InvalidExtraArgs" and "unrecognized arguments: --no-such-flag" in status["message"]
    code, payload = daemon.request("POST", "/broken-args/v1/chat/completions", json.dumps({"messages": QUESTION}).encode())
    assert code == 503 and "no-such-flag" in payload["error"]["message"]
    assert "Paris" in ask(OpenAI(base_url=f"{daemon.url}/second/v1", api_key="unused"), "second")
    (daemon.models_dir / "broken-args.yaml").unlink()
    daemon.wait_for(lambda: daemon.get("/broken-args/status")[0] == 404, 60, "broken-args to be removed")


def test_broken_file_keeps_the_last_good_version_serving(daemon, second):
    good = (daemon.models_dir / "second.yaml").read_text()
    daemon.write_file("second.yaml", good.replace('gpuMemoryUtilization: "0.20"', 'gpuMemoryUtilization: "2"'))

    def reported():
        code, listing = daemon.get("/apis/greenthread.ai/v1alpha1/models")
        return any("second.yaml" in e and "spec.gpuMemoryUtilization" in e for e in listing["errors"])

    daemon.wait_for(reported, 30, "the broken file to be reported")
    obj = daemon.get("/apis/greenthread.ai/v1alpha1/models/second")[1]
    config = next(c for c in obj["status"]["conditions"] if c["type"] == "ConfigValid")
    assert config["status"] == "False" and "second.yaml:7" in config["message"]
    assert daemon.status("second")["state"] == "serving"
    assert "Paris" in ask(OpenAI(base_url=f"{daemon.url}/v1", api_key="unused"), "second")
    warned = gthread(daemon, "get", "models")
    assert "second.yaml:7" in warned.stderr and warned.returncode == 0

    daemon.write_file("second.yaml", good)
    daemon.wait_for(lambda: not daemon.get("/apis/greenthread.ai/v1alpha1/models")[1]["errors"], 30, "errors to clear")


def test_edit_restarts_the_engine_with_the_change(daemon, demo_pids, second):
    pids_before = engine_pids(daemon)
    daemon.write_model("second.yaml", "second", *second_args(1024), model_name=HUB_ID)
    daemon.wait_for(lambda: daemon.get("/second/v1/models")[1].get("data", [{}])[0].get("max_model_len") == 1024,
                    300, "second to serve with max_model_len 1024")
    assert engine_pids(daemon) - pids_before, "a new engine process serves the edited model"
    assert demo_pids <= engine_pids(daemon), "the other model's engine was left alone"
    assert "Paris" in ask(OpenAI(base_url=f"{daemon.url}/second/v1", api_key="unused"), "second", stream=True)


def test_live_edit_does_not_restart(daemon, second):
    pids_before = engine_pids(daemon)
    text = (daemon.models_dir / "second.yaml").read_text() + "  sleep:\n    idleTimeout: 1h\n"
    daemon.write_file("second.yaml", text)
    daemon.wait_for(
        lambda: daemon.get("/apis/greenthread.ai/v1alpha1/models/second")[1]["spec"]["sleep"]["idleTimeout"] == "1h",
        30, "the edit to be applied")
    assert daemon.status("second")["state"] == "serving"
    assert engine_pids(daemon) == pids_before


def engines_busy(daemon) -> float:
    """CPU use of all engine processes over one second, in cores: ~1 while one generates."""
    procs = engine_processes(daemon)
    for p in procs:
        p.cpu_percent(None)
    time.sleep(1)
    return sum(p.cpu_percent(None) for p in procs) / 100


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
def test_client_disconnect_aborts_the_generation(daemon, stream):
    body = json.dumps({"model": "smollm2", "messages": QUESTION, "max_tokens": 4000, "ignore_eos": True,
                       "stream": stream}).encode()
    with socket.create_connection(("127.0.0.1", daemon.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        if stream:
            received = b""
            while b"data:" not in received:
                chunk = sock.recv(65536)
                assert chunk, "the stream ended before its first event"
                received += chunk
        daemon.wait_for(lambda: daemon.status("smollm2")["queue"]["inFlight"] == 1, 30, "the request to run")
        assert engines_busy(daemon) > 0.5, "the engine generates while the client is connected"
    daemon.wait_for(lambda: daemon.status("smollm2")["queue"]["inFlight"] == 0, 20, "the request to be aborted")
    daemon.wait_for(lambda: engines_busy(daemon) < 0.2, 20, "the engines to go idle")


def test_delete_stops_the_engine_and_frees_its_memory(daemon, demo_pids, second):
    rss_before = sum(p.memory_info().rss for p in engine_processes(daemon))
    (daemon.models_dir / "second.yaml").unlink()
    daemon.wait_for(lambda: daemon.get("/second/status")[0] == 404, 60, "second to be removed")
    daemon.wait_for(lambda: engine_pids(daemon) == demo_pids, 60, "second's engine processes to exit")
    rss_after = sum(p.memory_info().rss for p in engine_processes(daemon))
    assert rss_after < rss_before - 200 * 2**20, (rss_before, rss_after)
    code, payload = daemon.request("POST", "/v1/chat/completions",
                                   json.dumps({"model": "second", "messages": QUESTION}).encode())
    assert code == 404
    assert "Paris" in ask(OpenAI(base_url=f"{daemon.url}/v1", api_key="unused"), "smollm2")


def test_embedding_model_serves_embeddings_score_and_rerank_only(daemon, embedding_checkpoint):
    daemon.write_file("minilm.yaml", model_yaml("minilm", f"file://{embedding_checkpoint}",
                                                "  modelType: embedding\n  dtype: float32\n  gpuMemoryUtilization: \"0.10\"\n"
                                                "  endpoints: [embeddings, score, rerank]\n"))
    daemon.wait_state("minilm", "serving")
    client = OpenAI(base_url=f"{daemon.url}/v1", api_key="unused")
    result = client.embeddings.create(model="minilm", input=["Paris is the capital of France.", "Bonjour"])
    assert [len(d.embedding) for d in result.data] == [384, 384]
    query, documents = "What is the capital of France?", ["Paris is the capital of France.", "Bananas are yellow."]
    code, scored = daemon.request("POST", "/v1/score", json.dumps(
        {"model": "minilm", "text_1": query, "text_2": documents}).encode())
    assert code == 200, scored
    assert scored["data"][0]["score"] > scored["data"][1]["score"], "the relevant sentence scores higher"
    code, ranked = daemon.request("POST", "/minilm/v1/rerank", json.dumps({"query": query, "documents": documents}).encode())
    assert code == 200, ranked
    assert [r["index"] for r in ranked["results"]] == [0, 1]
    code, payload = daemon.request("POST", "/minilm/v1/chat/completions", json.dumps({"messages": QUESTION}).encode())
    assert code == 404 and "chat_completions is not enabled for model minilm" in payload["error"]["message"]
    code, payload = daemon.request("POST", "/smollm2/v1/rerank", json.dumps({"query": query, "documents": documents}).encode())
    assert code == 404 and "rerank is not enabled for model smollm2" in payload["error"]["message"]
    (daemon.models_dir / "minilm.yaml").unlink()
    daemon.wait_for(lambda: daemon.get("/minilm/status")[0] == 404, 60, "minilm to be removed")


def test_load_format_gthread_gives_the_same_answer_and_survives_corruption(daemon):
    client = OpenAI(base_url=f"{daemon.url}/v1", api_key="unused")
    reference = ask(client, "smollm2")
    daemon.write_model("fast.yaml", "fast", more="  loadFormat: gthread\n")
    daemon.wait_state("fast", "serving")
    assert ask(client, "fast") == reference
    obj = daemon.get("/apis/greenthread.ai/v1alpha1/models/fast")[1]
    assert obj["status"]["conversion"]["status"] == "Complete"
    assert obj["status"]["conversion"]["totalSizeBytes"] % 4096 == 0
    assert list(obj["status"]["distribution"]["stagingTier"].values()) == ["system"]
    (weights,) = (daemon.state_dir / "models").glob("*/weights.gthread")
    assert segment_path(daemon.host_tier_dir, weights.parent.name).stat().st_size == weights.stat().st_size
    assert "gthread: weights from the host tier" in daemon.log_path.read_text()

    (daemon.models_dir / "fast.yaml").unlink()  # frees the host tier's copy: the next load reads the disk
    daemon.wait_for(lambda: not daemon.staged(), 60, "the host tier to let fast go")
    with open(weights, "r+b") as f:  # flip one byte of the first tensor
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    daemon.write_model("fast.yaml", "fast", "--max-model-len", "2048", more="  loadFormat: gthread\n")
    daemon.wait_for(lambda: "converted weights were corrupt" in daemon.log_path.read_text(), 300,
                    "the corruption to be detected")
    daemon.wait_for(lambda: daemon.get("/fast/v1/models")[1].get("data", [{}])[0].get("max_model_len") == 2048,
                    300, "fast to serve again from re-converted weights")
    assert ask(client, "fast") == reference
    (daemon.models_dir / "fast.yaml").unlink()
    daemon.wait_for(lambda: daemon.get("/fast/status")[0] == 404, 60, "fast to be removed")


def test_an_engine_that_fails_to_start_reports_its_root_cause(daemon):
    """0.01 of the CPU device is less than the weights: vLLM's worker fails in its own process, and
    the reason reaches the Model's condition instead of "see root cause above"."""
    daemon.write_model("starved.yaml", "starved", utilization="0.01")

    def ready() -> dict:
        status = daemon.get("/apis/greenthread.ai/v1alpha1/models/starved")[1].get("status", {})
        return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})

    daemon.wait_for(lambda: ready().get("reason") == "EngineStartFailed", 300, "starved to fail")
    message = ready()["message"]
    assert message.startswith("ValueError: Available memory on node 0") and message.endswith("; retrying"), message
    (daemon.models_dir / "starved.yaml").unlink()
    daemon.wait_for(lambda: daemon.get("/starved/status")[0] == 404, 120, "starved to be removed")


def admin(daemon, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gthreadd.cli.main", "--socket", str(daemon.socket), *args],
                          capture_output=True, text=True, timeout=600)


def test_operating_a_real_engine_with_the_cli_and_its_metrics(daemon):
    client = OpenAI(base_url=f"{daemon.url}/v1", api_key="unused")
    assert "Paris" in ask(client, "smollm2")
    assert admin(daemon, "sleep", "smollm2").stdout == "model.greenthread.ai/smollm2 sleeping\n"
    assert daemon.status("smollm2")["state"] == "sleeping"
    assert admin(daemon, "wake", "smollm2").stdout == "model.greenthread.ai/smollm2 serving\n"
    assert "Paris" in ask(client, "smollm2")
    described = admin(daemon, "describe", "model", "smollm2").stdout
    reasons = [line.split()[1] for line in described.split("Events:", 1)[1].splitlines()[1:]]
    assert {"Started", "Slept", "Woke"} <= set(reasons), described

    samples = daemon.metrics()
    tokens = {labels: v for (name, labels), v in samples.items() if name == "vllm:generation_tokens_total"}
    assert any(dict(labels)["model_name"] == "smollm2" and v > 0 for labels, v in tokens.items()), tokens
    wakes = samples[("gthread_engine_operations_total", (("model", "smollm2"), ("operation", "wake"), ("outcome", "ok")))]
    assert wakes >= 1
    assert samples[("gthread_model_state", (("model", "smollm2"), ("state", "serving")))] == 1


def test_sigterm_stops_engines_and_exits_cleanly(daemon):
    children = psutil.Process(daemon.proc.pid).children(recursive=True)
    assert daemon.stop() == 0
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]


def test_a_restart_brings_the_models_back_reusing_converted_weights(daemon):
    fast = "  loadFormat: gthread\n"
    if not list((daemon.state_dir / "models").glob("*/gthread-manifest.json")):  # run on its own
        if daemon.proc.poll() is not None:
            daemon.start()
        daemon.write_model("fast.yaml", "fast", more=fast)
        daemon.wait_state("fast", "serving")
    if daemon.proc.poll() is None:  # (the SIGTERM test has stopped it in a whole run)
        assert daemon.stop() == 0
    daemon.write_model("fast.yaml", "fast", more=fast)
    converted = daemon.log_path.read_text().count("model fast: converted to")
    daemon.start()
    daemon.wait_state("smollm2", "serving")
    daemon.wait_state("fast", "serving")
    assert daemon.log_path.read_text().count("model fast: converted to") == converted
    assert "Paris" in ask(OpenAI(base_url=f"{daemon.url}/v1", api_key="unused"), "fast")


def test_a_dead_engine_is_found_without_a_request_and_the_next_request_boots_it_again(daemon):
    """Engine supervision (the effects loop), not the next request, notices that an engine died."""
    if daemon.proc.poll() is not None:  # stopped by the SIGTERM test
        daemon.start()
    daemon.wait_state("smollm2", "serving")
    for process in engine_processes(daemon):
        process.kill()
    daemon.wait_for(lambda: daemon.status("smollm2")["state"] in ("restarting", "starting"), 30,
                    "the death to be noticed")
    assert "Paris" in ask(OpenAI(base_url=f"{daemon.url}/v1", api_key="unused", timeout=600), "smollm2")
