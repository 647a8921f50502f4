"""API keys from a keys file, with real engines: the demo chat model (run one request at a time,
`--max-num-seqs 1`, so that requests queue) and an embedding model; keys limited to the chat model
and 5 requests a minute, with a token budget, two without limits, an admin; through the official
openai client. The keys file is edited while the daemon runs."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from openai import AuthenticationError, OpenAI, PermissionDeniedError, RateLimitError

from gthreadd.spec.resource import model_yaml
from gthreadd.tenants.keyring import digest
from tests.e2e.daemon_process import DaemonProcess

pytestmark = pytest.mark.timeout(900)

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def keys(chat_models: str = "[smollm2]") -> str:
    return f"""\
- name: chat-only
  sha256: {digest("sk-chat")}
  models: {chat_models}
  requestsPerMinute: 5
- name: budget
  sha256: {digest("sk-budget")}
  tokensPerMinute: 60
- name: ops
  sha256: {digest("sk-ops")}
  admin: true
- name: flood
  sha256: {digest("sk-flood")}
- name: quiet
  sha256: {digest("sk-quiet")}
"""


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, checkpoint, embedding_checkpoint):
    root = tmp_path_factory.mktemp("gthreadd")
    (root / "keys").mkdir()
    (root / "keys" / "keys.yaml").write_text(keys())
    d = DaemonProcess(root, checkpoint, {"HF_HUB_OFFLINE": "1"}, key="sk-ops",
                      flags=("--api-keys-file", str(root / "keys" / "keys.yaml")))
    d.write_model("smollm2.yaml", "smollm2", "--max-num-seqs", "1")
    d.write_file("minilm.yaml", model_yaml("minilm", f"file://{embedding_checkpoint}",
                                           '  modelType: embedding\n  dtype: float32\n  gpuMemoryUtilization: "0.10"\n'))
    d.start()
    d.wait_state("smollm2", "serving")
    d.wait_state("minilm", "serving")
    yield d
    d.kill()


def client(d: DaemonProcess, key: str) -> OpenAI:
    return OpenAI(base_url=f"{d.url}/v1", api_key=key, timeout=300, max_retries=0)


def ask(d: DaemonProcess, key: str, max_tokens: int = 8, ignore_eos: bool = False) -> str:
    response = client(d, key).chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=max_tokens,
                                                      temperature=0, extra_body={"ignore_eos": ignore_eos})
    return response.choices[0].message.content


def test_a_key_limited_to_one_model_is_refused_another_and_lists_only_its_own(keyed):
    assert "Paris" in ask(keyed, "sk-chat", 16)
    with pytest.raises(PermissionDeniedError) as refused:
        client(keyed, "sk-chat").embeddings.create(model="minilm", input=["Paris"])
    assert refused.value.body["message"] == "key chat-only may not use model minilm"
    assert [m.id for m in client(keyed, "sk-chat").models.list()] == ["smollm2"]
    assert len(client(keyed, "sk-ops").embeddings.create(model="minilm", input=["Paris"]).data[0].embedding) == 384
    with pytest.raises(AuthenticationError):
        client(keyed, "sk-nobody").models.list()


def test_the_sixth_request_in_a_minute_is_refused_with_retry_after(keyed):
    """The key's minute is shared with the test before it: requests are sent until one is refused."""
    with pytest.raises(RateLimitError) as refused:
        for _ in range(6):
            ask(keyed, "sk-chat", 1)
    assert "5 requests per minute (requestsPerMinute)" in refused.value.message
    assert 1 <= int(refused.value.response.headers["Retry-After"]) <= 12


def test_a_token_budget_stops_a_key_once_vllm_has_counted_its_tokens(keyed):
    ask(keyed, "sk-budget", 32)  # the prompt (about 40 tokens with the template) and 32 more: over 60
    deadline = time.monotonic() + 30
    while True:  # the engine reports a request's tokens in the step after its last one
        try:
            ask(keyed, "sk-budget", 1)
        except RateLimitError as refused:
            assert "its 60 tokens per minute (tokensPerMinute)" in refused.message
            break
        assert time.monotonic() < deadline, "the budget was never charged"
    samples = keyed.metrics()
    assert samples[("gthread_key_tokens_total", (("key", "budget"),))] > 60


def test_an_edited_keys_file_takes_effect_and_a_broken_one_keeps_the_last(keyed):
    path = keyed.models_dir.parent / "keys" / "keys.yaml"
    try:
        path.write_text(keys("[smollm2, minilm]"))
        keyed.wait_for(lambda: "minilm" in [m.id for m in client(keyed, "sk-chat").models.list()], 30,
                       "the edit to apply")
        path.write_text("- name: broken\n  sha256: not-a-digest\n")
        keyed.wait_for(lambda: "API keys file refused" in keyed.log_path.read_text(), 30, "the refusal")
        assert "keys.yaml:2: [0].sha256: expected the key's SHA-256 digest" in keyed.log_tail(200)
        assert "minilm" in [m.id for m in client(keyed, "sk-chat").models.list()], "the last good keys stay"
    finally:
        path.write_text(keys())


def test_a_quiet_keys_request_is_served_in_its_turn_not_behind_a_flood(keyed):
    """vLLM runs one request at a time here and said so (max_num_seqs): the daemon holds the rest,
    and lets keys in by turns. Flood sends 6 at once, and quiet 1 once at least 4 of them wait: first
    come, first served would finish the one running and the 4 or more waiting before quiet. By turns,
    at most 3 finish between quiet's arrival and its answer: the one running, the one let in when quiet
    had not yet arrived, and the one whose turn came before quiet joined. (Counted from quiet's
    arrival, not from the flood's: on CI the flood took a whole answer to be seen queued.)"""
    finished: dict[str, float] = {}

    def send(key: str, name: str, max_tokens: int) -> None:
        ask(keyed, key, max_tokens, ignore_eos=True)
        finished[name] = time.monotonic()

    with ThreadPoolExecutor(8) as pool:
        floods = [pool.submit(send, "sk-flood", f"flood-{i}", 128) for i in range(6)]
        keyed.wait_for(lambda: keyed.status("smollm2")["queue"]["queued"] >= 4, 60, "the flood to queue")
        sent = time.monotonic()
        quiet = pool.submit(send, "sk-quiet", "quiet", 8)
        for future in floods + [quiet]:
            future.result()
    before_quiet = [name for name, t in finished.items() if name.startswith("flood") and sent < t < finished["quiet"]]
    assert len(before_quiet) <= 3, f"quiet waited behind the flood: {sorted(finished, key=finished.get)}"
