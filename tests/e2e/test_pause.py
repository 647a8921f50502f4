"""A preempted model's requests are paused, not waited for: two real CPU engines on a capacity that
fits one, `drainTimeout: 0s`. A long answer streams from `long`; a question to `short` takes the
CPU at once (its answer does not wait for the long one), and the long answer resumes after it and
ends complete, its KV cache recomputed by vLLM. A model taken back just after its wake yields as
soon as its answer has begun: the port reports each answer's first chunk to the scheduler."""

import statistics
import threading
import time

import pytest
from openai import OpenAI

from scheduler.fairness import MIN_SLICE_S
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


def streamer(daemon: DaemonProcess, model: str, max_tokens: int, chunks: list[tuple[float, str]],
             usage: dict, go: threading.Event | None = None, began: threading.Event | None = None) -> threading.Thread:
    """A thread that streams an answer of `model`, appending (when, text) per chunk to `chunks`;
    with `go`, its client is made at once and the request sent when `go` is set; `began` is set at
    the first chunk."""
    client = OpenAI(base_url=f"{daemon.url}/{model}/v1", api_key="unused", timeout=600, max_retries=0)

    def stream() -> None:
        if go is not None:
            go.wait()
        for chunk in client.chat.completions.create(
                model=model, messages=QUESTION, max_tokens=max_tokens, temperature=0, stream=True,
                stream_options={"include_usage": True}, extra_body={"ignore_eos": True}):
            if chunk.usage is not None:
                usage.update(chunk.usage.model_dump())
            if chunk.choices and chunk.choices[0].delta.content:
                chunks.append((time.monotonic(), chunk.choices[0].delta.content))
                if began is not None:
                    began.set()
    return threading.Thread(target=stream)


def test_a_request_to_another_model_pauses_a_long_answer_which_then_ends_complete(paused):
    assert "Paris" in paused.ask("short") and "Paris" in paused.ask("long")  # both booted; long awake
    chunks: list[tuple[float, str]] = []
    usage = {}
    streaming = streamer(paused, "long", LONG_TOKENS, chunks, usage)
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


def test_a_model_taken_back_just_after_its_wake_yields_as_soon_as_its_answer_has_begun(paused):
    """long wakes for a long answer; a question to short sent at long's first chunk takes the CPU
    back at once: long yields with its answer begun, not a least slice (MIN_SLICE_S) after its wake,
    which at its own pace would have streamed many more chunks first. Both answers end complete."""
    assert "Paris" in paused.ask("short")  # short awake, long asleep
    paused.wait_state("long", "sleeping")
    long_chunks: list[tuple[float, str]] = []
    short_chunks: list[tuple[float, str]] = []
    long_usage, short_usage = {}, {}
    began = threading.Event()
    short = streamer(paused, "short", 16, short_chunks, short_usage, go=began)
    short.start()
    long = streamer(paused, "long", LONG_TOKENS, long_chunks, long_usage, began=began)
    long.start()
    for thread in (short, long):
        thread.join(300)
        assert not thread.is_alive()
    assert long_usage["completion_tokens"] == LONG_TOKENS and short_usage["completion_tokens"] == 16
    assert "Paris" in "".join(text for _, text in short_chunks)
    times = [t for t, _ in long_chunks]
    gaps = [b - a for a, b in zip(times, times[1:])]
    before = gaps.index(max(gaps)) + 1  # long's chunks before its pause, the longest gap in its stream
    pace = statistics.median(gaps)
    assert times[before] > short_chunks[0][0], "long was paused until short's answer had begun"
    assert before < MIN_SLICE_S / 2 / pace, \
        f"long streamed {before} chunks before yielding; half a slice at its pace ({pace * 1000:.0f} ms each) is fewer"


def test_an_answer_paused_for_a_popular_model_for_good_is_answered_at_the_queue_timeout(tmp_path, checkpoint):
    """A popular Model added while long streams takes the only room for good: long's answer is
    paused (its engine asleep) and, once paused for the queue timeout, ends with the daemon's error
    naming why, as a request queued that long would; nothing stays paused."""
    d = DaemonProcess(tmp_path, checkpoint, flags=("--cpu-memory-share", "0.3", "--queue-timeout", "15s"))
    d.write_model("long.yaml", "long", more=SPEC)
    d.start()
    try:
        assert "Paris" in d.ask("long")
        chunks: list[tuple[float, str]] = []
        began = threading.Event()
        failure: list[Exception] = []

        def stream() -> None:
            try:
                streamer(d, "long", 2000, chunks, {}, began=began).run()
            except Exception as exc:  # the error event the daemon ends the stream with
                failure.append(exc)

        streaming = threading.Thread(target=stream)
        streaming.start()
        assert began.wait(120), "long's answer began"
        d.write_model("pop.yaml", "pop", more="  fairness: {popular: true}\n")
        streaming.join(300)
        assert not streaming.is_alive()
        assert failure and "paused for 15s" in str(failure[0]), failure
        d.wait_state("pop", "serving")
        d.wait_for(lambda: not d.status("long").get("queue", {}).get("paused"), 30, "long to hold no paused answer")
    finally:
        d.kill()
