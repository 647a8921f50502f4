"""Tool calling through the daemon with seed 001's flags (--enable-auto-tool-choice,
--tool-call-parser) on a real engine: OpenAI's tool_calls shape, plain and streamed; and the same
engine through OpenAI's Responses API, an endpoint the Model lists."""

import json
import subprocess
import sys

import pytest
from openai import OpenAI

from gthreadd.spec.resource import model_yaml
from tests.e2e.daemon_process import DaemonProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def tools(tmp_path_factory, checkpoint):
    d = DaemonProcess(tmp_path_factory.mktemp("tools"), checkpoint)
    d.write_model("tools.yaml", "tools", "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
                  more="  endpoints: [chat_completions, completions, responses]\n")
    d.start()
    d.wait_state("tools", "serving")
    yield d
    d.kill()


def test_a_required_tool_call_comes_back_in_openais_shape(tools):
    client = OpenAI(base_url=f"{tools.url}/v1", api_key="unused")
    reply = client.chat.completions.create(model="tools", messages=ASK, tools=[WEATHER], tool_choice="required",
                                           max_tokens=64, temperature=0)
    (call,) = reply.choices[0].message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    json.loads(call.function.arguments)  # a JSON document; what is in it is the 135M model's choice
    assert "Paris" in call.function.arguments


def test_a_streamed_tool_call_assembles_to_the_same_shape(tools):
    client = OpenAI(base_url=f"{tools.url}/tools/v1", api_key="unused")
    chunks = client.chat.completions.create(model="tools", messages=ASK, tools=[WEATHER], tool_choice="required",
                                            max_tokens=64, temperature=0, stream=True)
    name, arguments = "", ""
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            name += delta.function.name or ""
            arguments += delta.function.arguments or ""
    assert name == "get_weather" and "Paris" in arguments
    json.loads(arguments)


def test_auto_tool_choice_is_enabled_by_the_extra_args(tools):
    """Without --enable-auto-tool-choice and a parser, vLLM answers tool_choice "auto" with a 400."""
    client = OpenAI(base_url=f"{tools.url}/v1", api_key="unused")
    reply = client.chat.completions.create(model="tools", messages=ASK, tools=[WEATHER], tool_choice="auto",
                                           max_tokens=32, temperature=0)
    assert reply.choices[0].message.tool_calls or reply.choices[0].message.content is not None


def test_the_responses_api_answers_plain_and_streamed(tools):
    client = OpenAI(base_url=f"{tools.url}/v1", api_key="unused")
    reply = client.responses.create(model="tools", input="What is the capital of France?", max_output_tokens=32,
                                    temperature=0)
    assert reply.status == "completed" and "Paris" in reply.output_text
    events = list(client.responses.create(model="tools", input="What is the capital of France?",
                                          max_output_tokens=32, temperature=0, stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert "Paris" in text and text == events[-1].response.output_text
    code, body = tools.request("POST", "/v1/responses", json.dumps({"model": "absent", "input": "x"}).encode())
    assert code == 404 and body["error"]["message"] == "The model `absent` does not exist."


def test_a_misspelt_parser_is_refused_naming_extra_args(tools, tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text(model_yaml("typo", tools.checkpoint,
                               '  extraArgs: ["--enable-auto-tool-choice", "--tool-call-parser", "hermez"]\n'))
    applied = subprocess.run([sys.executable, "-m", "gthreadd.cli.main", "--socket", str(tools.socket), "apply", "-f",
                              str(typo)], capture_output=True, text=True, timeout=120)
    assert applied.returncode == 1 and "typo: spec.extraArgs" in applied.stderr
    assert "--tool-call-parser 'hermez' is not one of vLLM's parsers" in applied.stderr
    tools.write_file("typo.yaml", typo.read_text())  # dropped into models.d by hand: refused at boot
    status = tools.wait_phase("typo", "Failed", timeout=60)
    assert status["reason"] == "InvalidExtraArgs" and "'hermez'" in status["message"]
    assert tools.status("tools")["state"] == "serving"
