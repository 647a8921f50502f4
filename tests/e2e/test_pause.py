"""A preempted model's requests are paused, not waited for: two real CPU engines on a capacity that
fits one, `drainTimeout: 0s`. A long answer streams from `long`; a question to `short` takes the
CPU at once (its answer does not wait for the long one), and the long answer resumes after it and
ends complete, its KV cache recomputed by vLLM."""

import threading
import time

import pytest
from openai import OpenAI

from tests.e2e.daemon_process import DaemonProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SPEC = """\
  fairness: {minRuntime: 0s, maxWaitTime: 0s}
  sleep: {idleTimeout: 10m, drainTimeout: 0s}
"""
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
LONG_TOKENS = 160


@pytest.fixture(scope="module")
def paused(tmp_path_factory, checkpoint):
    d = DaemonProcess(tmp_path_factory.mktemp("pause"), checkpoint, flags=("--cpu-memory-share", "0.3"))
    d.write_model("long.yaml", "long", more=SPEC)
    d.write_model("short.yaml", "short", more=SPEC)
    d.start()
    yield d
    d.kill()


def test_a_request_to_another_model_pauses_a_long_answer_which_then_ends_complete(paused):
    assert "Paris" in paused.ask("short") and "Paris" in paused.ask("long")  # both booted; long awake
    chunks: list[tuple[float, str]] = []
    usage = {}

    def stream_long() -> None:
        client = OpenAI(base_url=f"{paused.url}/long/v1", api_key="unused", timeout=600, max_retries=0)
        for chunk in client.chat.completions.create(
                model="long", messages=QUESTION, max_tokens=LONG_TOKENS, temperature=0, stream=True,
                stream_options={"include_usage": True}, extra_body={"ignore_eos": True}):
            if chunk.usage is not None:
                usage.update(chunk.usage.model_dump())
            if chunk.choices and chunk.choices[0].delta.content:
                chunks.append((time.monotonic(), chunk.choices[0].delta.content))

    streaming = threading.Thread(target=stream_long)
    streaming.start()
    paused.wait_for(lambda: len(chunks) >= 16, 120, "the long answer to stream")
    asked = time.monotonic()
    assert "Paris" in paused.ask("short", max_tokens=16)
    answered = time.monotonic()
    streaming.join(300)
    assert not streaming.is_alive()
    assert usage["completion_tokens"] == LONG_TOKENS, "the paused answer ran to its end"
    assert "Paris" in "".join(text for _, text in chunks)
    times = [t for t, _ in chunks]
    assert times[-1] > answered, "the long answer resumed after the short one"
    assert any(a < answered < b for a, b in zip(times, times[1:])), "short was answered while long was paused"
    assert any("pausing 1 request(s) of long/0" in line for line in paused.log_tail(400).splitlines())
