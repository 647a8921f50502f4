"""vLLM's whole serving API through the daemon, by vLLM's own handlers (engine/api_app.py): the
Responses API with the openai client, Anthropic's Messages API with the anthropic client,
tokenize and detokenize, on both URL forms; vLLM's administrative routes unreachable; errors in
the shape of the API that was called.
"""

import anthropic
import pytest
from openai import OpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0}
"""For the anthropic client, whose newest releases take no temperature argument."""
FORMS = ["path", "body"]
"""/<name>/... (the Model in the URL), and /... with the model in the body."""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, checkpoint, hf_home):
    """The demo model, with vLLM's store of responses on (off by default: it keeps them in memory)."""
    from tests.e2e.daemon_process import DaemonProcess

    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "VLLM_ENABLE_RESPONSES_API_STORE": "1"}
    d = DaemonProcess(tmp_path_factory.mktemp("vllm-api"), checkpoint, env)
    d.write_model("smollm2.yaml", "smollm2")
    d.start()
    yield d
    d.kill()


def base(daemon, form: str) -> str:
    return f"{daemon.url}/smollm2" if form == "path" else daemon.url


@pytest.mark.parametrize("form", FORMS)
def test_the_responses_api_answers_plain_and_streamed(daemon, form):
    client = OpenAI(base_url=base(daemon, form) + "/v1", api_key="unused", timeout=300)
    response = client.responses.create(model="smollm2", input="What is the capital of France?",
                                       max_output_tokens=32, temperature=0)
    assert response.status in ("completed", "incomplete") and "Paris" in response.output_text
    with client.responses.stream(model="smollm2", input="What is the capital of France?", max_output_tokens=32,
                                 temperature=0) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert "Paris" in text


def test_a_stored_response_is_found_by_its_id_with_or_without_the_models_name(daemon):
    client = OpenAI(base_url=f"{daemon.url}/v1", api_key="unused", timeout=300)
    created = client.responses.create(model="smollm2", input="What is the capital of France?", max_output_tokens=16,
                                      temperature=0, store=True)
    for url in (f"{daemon.url}/v1", f"{daemon.url}/smollm2/v1"):
        found = OpenAI(base_url=url, api_key="unused", timeout=60).responses.retrieve(created.id)
        assert found.id == created.id and found.output_text == created.output_text
    status, body = daemon.get("/v1/responses/resp_nothing")
    assert status == 404 and "no model on this host has response" in body["error"]["message"]


@pytest.mark.parametrize("form", FORMS)
def test_anthropics_messages_api_answers_counts_and_streams(daemon, form):
    client = anthropic.Anthropic(base_url=base(daemon, form), api_key="unused", timeout=300)
    message = client.messages.create(model="smollm2", max_tokens=32, messages=QUESTION, extra_body=GREEDY)
    assert message.type == "message" and message.role == "assistant" and "Paris" in message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert client.messages.count_tokens(model="smollm2", messages=QUESTION).input_tokens == message.usage.input_tokens
    with client.messages.stream(model="smollm2", max_tokens=32, messages=QUESTION, extra_body=GREEDY) as stream:
        assert "Paris" in stream.get_final_text()


def test_a_refusal_on_the_messages_api_is_in_anthropics_shape(daemon):
    client = anthropic.Anthropic(base_url=daemon.url, api_key="unused", timeout=60)
    with pytest.raises(anthropic.NotFoundError) as refused:
        client.messages.create(model="no-such-model", max_tokens=8, messages=QUESTION)
    assert refused.value.body == {"type": "error", "error": {
        "type": "not_found_error", "message": "The model `no-such-model` does not exist."}}


@pytest.mark.parametrize("form", FORMS)
def test_tokenize_and_detokenize_round_trip(daemon, form):
    prefix = "/smollm2" if form == "path" else ""
    status, tokens = daemon.request("POST", f"{prefix}/tokenize", b'{"model": "smollm2", "prompt": "Paris"}')
    assert status == 200 and tokens["count"] == len(tokens["tokens"]) > 0
    body = ('{"model": "smollm2", "tokens": %s}' % tokens["tokens"]).encode()
    assert daemon.request("POST", f"{prefix}/detokenize", body) == (200, {"prompt": "Paris"})


ADMIN = [("POST", "/sleep"), ("POST", "/wake_up"), ("GET", "/is_sleeping"), ("POST", "/collective_rpc"),
         ("POST", "/reset_prefix_cache"), ("POST", "/pause"), ("POST", "/resume"), ("POST", "/update_weights"),
         ("POST", "/start_profile"), ("POST", "/scale_elastic_ep"), ("POST", "/invocations"), ("GET", "/ping"),
         ("GET", "/server_info"), ("GET", "/health"), ("GET", "/version"), ("GET", "/load"), ("GET", "/docs"),
         ("GET", "/openapi.json"), ("POST", "/v1/load_lora_adapter"), ("POST", "/v1/unload_lora_adapter"),
         ("POST", "/v1/systemone"), ("POST", "/generative_scoring"), ("POST", "/v1/chat/completions/render")]


@pytest.mark.parametrize("method, path", ADMIN)
def test_vllms_administrative_and_development_routes_are_never_reachable(daemon, method, path):
    for url in (path, "/smollm2" + path):
        if url == "/smollm2/v1/load_lora_adapter" or url == "/smollm2/v1/unload_lora_adapter":
            continue  # the daemon's own LoRA handling (api/lora.py), tested in test_lora.py
        status, body = daemon.request(method, url, b"{}" if method == "POST" else None)
        assert status in (404, 405), (url, status, body)
        assert body["error"]["type"] in ("NotFoundError", "BadRequestError"), body


def test_vllms_own_validation_errors_come_back_unchanged(daemon):
    client = OpenAI(base_url=f"{daemon.url}/smollm2/v1", api_key="unused", timeout=60)
    with pytest.raises(Exception) as refused:
        client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=-1)
    error = refused.value.body
    assert refused.value.status_code == 400 and "max_tokens" in str(error), error
