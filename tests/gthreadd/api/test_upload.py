"""Audio uploads (/v1/audio/...): routed by the multipart form's `model` field, refused over vLLM's
audio file limit before they are read or admitted, and held once in memory. The in-process daemon
with FakeEngine; tests/e2e/test_speech.py sends real speech to a real Whisper engine."""

import asyncio
import sys
import tracemalloc

import aiohttp
import httpx
import pytest

from gthreadd.api.routing import RouteError
from gthreadd.api.upload import FORM_FIELDS_BYTES, form_field
from tests.inprocess_daemon import serving, start_daemon, write

WAV = b"RIFF" + bytes(4000)


def openai_form(fields: dict, audio: bytes = WAV) -> tuple[bytes, str]:
    """The body and Content-Type that the openai client sends (it is built on httpx)."""
    request = httpx.Request("POST", "http://x/", data=fields, files={"file": ("speech.wav", audio, "audio/wav")})
    return request.read(), request.headers["content-type"]


def test_the_model_field_is_found_before_or_after_the_file():
    body, content_type = openai_form({"model": "whisper", "language": "en"})
    assert body.index(b'name="model"') < body.index(b'name="file"')
    assert form_field(bytearray(body), content_type, "model") == "whisper"
    assert form_field(bytearray(body), content_type, "language") == "en"
    assert form_field(bytearray(body), content_type, "prompt") is None
    boundary = content_type.split("boundary=")[1].encode()
    curl_order = (b"--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n%s\r\n"
                  b"--%s\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nw2\r\n--%s--\r\n"
                  % (boundary, WAV, boundary, boundary))
    assert form_field(bytearray(curl_order), content_type, "model") == "w2"


@pytest.mark.parametrize("body, content_type, message", [
    (b'{"model": "w"}', "application/json", "the request body must be a multipart/form-data upload"),
    (b"garbage", "multipart/form-data; boundary=b0", "malformed multipart/form-data body"),
])
def test_a_body_that_is_no_form_is_a_400_saying_so(body, content_type, message):
    with pytest.raises(RouteError) as caught:
        form_field(bytearray(body), content_type, "model")
    assert caught.value.status == 400 and caught.value.message.startswith(message)


async def upload(d, path: str, fields: dict, audio: bytes = WAV, chunked: bool = False,
                 sent: list | None = None) -> tuple[int, dict]:
    body, content_type = openai_form(fields, audio)
    if sent is not None:
        sent.append(body)

    async def chunks():
        for start in range(0, len(body), 1 << 16):
            yield body[start:start + (1 << 16)]

    async with aiohttp.ClientSession() as s:
        async with s.post(d.base_url + path, data=chunks() if chunked else body,
                          headers={"Content-Type": content_type}) as r:
            return r.status, await r.json()


async def asr_model(d, name: str = "w"):
    """A Whisper-like Model serving, and its engine."""
    write(d, f"{name}.yaml", name, "  modelType: asr\n  endpoints: [audio_transcriptions, audio_translations]\n")
    await serving(d, name)
    return d.fleet.models[name].engines[0]


@pytest.mark.parametrize("path, vllm_path", [
    ("/v1/audio/transcriptions", "/v1/audio/transcriptions"), ("/w/v1/audio/translations", "/v1/audio/translations"),
])
async def test_an_upload_reaches_the_models_engine_as_it_was_sent(daemon, path, vllm_path):
    engine = await asr_model(daemon)
    sent = []
    status, _ = await upload(daemon, path, {"model": "w"}, sent=sent)
    assert status == 200
    method, got_path, got_body, headers = engine.received[-1]
    assert (method, got_path) == ("POST", vllm_path)
    assert got_body["upload"] == sent[0]
    assert headers["content-type"].startswith("multipart/form-data; boundary=")
    assert headers["content-length"] == str(len(got_body["upload"]))


async def test_an_upload_without_a_model_or_for_another_is_refused_by_the_router(daemon):
    await asr_model(daemon)
    status, body = await upload(daemon, "/v1/audio/transcriptions", {"language": "en"})
    assert status == 400 and "needs a 'model'" in body["error"]["message"]
    status, body = await upload(daemon, "/v1/audio/transcriptions", {"model": "nope"})
    assert status == 404 and body["error"]["message"] == "The model `nope` does not exist."


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_upload_over_the_audio_limit_is_a_413_before_anything_is_admitted(tmp_path, chunked):
    d = await start_daemon(tmp_path, max_audio_bytes=1 << 20)
    try:
        engine = await asr_model(d)
        status, body = await upload(d, "/v1/audio/transcriptions", {"model": "w"},
                                    audio=bytes(1 << 20) + bytes(FORM_FIELDS_BYTES), chunked=chunked)
        assert status == 413 and body["error"] == {
            "message": "the upload is over the audio file limit of 1 MiB (vLLM's VLLM_MAX_AUDIO_CLIP_FILESIZE_MB)",
            "type": "BadRequestError", "param": "file", "code": 413}
        assert not engine.received
        status, _ = await upload(d, "/w/v1/audio/transcriptions", {}, audio=bytes(1 << 20))
        assert status == 200, "a file at the limit passes"
    finally:
        await d.shutdown()


async def test_an_upload_is_held_once(daemon, tmp_path):
    """aiohttp's request.read() would join the chunks into a second copy (41 MiB at the peak for a
    20 MiB upload); the form is not parsed into one either. The client is another process, so
    that only the daemon's allocations are traced."""
    engine = await asr_model(daemon)
    body, content_type = openai_form({"model": "w"}, bytes(20 << 20))
    (tmp_path / "body").write_bytes(body)
    send = ("import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], "
            "data=open(sys.argv[2], 'rb').read(), headers={'Content-Type': sys.argv[3]})).read()")
    del body
    tracemalloc.start()
    try:
        client = await asyncio.create_subprocess_exec(sys.executable, "-c", send,
                                                      daemon.base_url + "/v1/audio/transcriptions",
                                                      str(tmp_path / "body"), content_type)
        assert await client.wait() == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = len(engine.received[-1][2]["upload"])
    assert size == (tmp_path / "body").stat().st_size
    assert peak < 1.2 * size, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.1f} MiB upload"
