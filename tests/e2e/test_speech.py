"""Speech recognition through the daemon, as a user runs it: seed 002's own whisper Model (its
multi-Model file, as written but for modelName, which names the offline whisper-base, and the
share of RAM it may take on the CPU, where the GPU default of 0.90 cannot fit), a real vLLM
Whisper engine, espeak-ng's speech, and the official openai client on both routes.

espeak-ng's voice is robotic: whisper-base hears "the quick round fox jump over the lazy dog",
7 of the 9 words; a transcript holding 6 of them is the bar."""

from pathlib import Path

import pytest
import yaml
from openai import APIStatusError, OpenAI

from tests.e2e.daemon_process import DaemonProcess
from tests.speech import speak, words_heard

pytestmark = pytest.mark.timeout(900)

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seeds" / "002_multi.yaml"
NAME = "whisper-turbo"


def seed_model(checkpoint: Path, **spec) -> str:
    """Seed 002's whisper-turbo document with modelName pointing at `checkpoint`."""
    (doc,) = [d for d in yaml.safe_load_all(SEED.read_text()) if d and d["metadata"]["name"] == NAME]
    doc["spec"] |= {"modelName": str(checkpoint), "gpuMemoryUtilization": "0.08", **spec}
    return yaml.safe_dump(doc)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    return speak(tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="module")
def whisper(tmp_path_factory, checkpoint, whisper_checkpoint):
    d = DaemonProcess(tmp_path_factory.mktemp("gthreadd"), checkpoint, {"HF_HUB_OFFLINE": "1"})
    d.write_file("models.yaml", seed_model(whisper_checkpoint))
    d.start()
    d.wait_state(NAME, "serving")
    yield d
    d.kill()


def transcribe(d: DaemonProcess, speech: Path, route: str) -> str:
    """The transcript through the openai client: `route` "path" is /<name>/v1, "body" is /v1 with
    the form's model field naming the Model."""
    client = OpenAI(base_url=f"{d.url}/{NAME}/v1" if route == "path" else f"{d.url}/v1", api_key="unused",
                    timeout=300)
    with open(speech, "rb") as audio:
        return client.audio.transcriptions.create(model=NAME, file=audio, language="en").text


@pytest.mark.parametrize("route", ["path", "body"])
def test_speech_is_transcribed_on_both_routes(whisper, speech, route):
    text = transcribe(whisper, speech, route)
    assert words_heard(text) >= 6, text


def test_a_translation_and_the_verbose_format_answer(whisper, speech):
    client = OpenAI(base_url=f"{whisper.url}/v1", api_key="unused", timeout=300)
    with open(speech, "rb") as audio:
        assert words_heard(client.audio.translations.create(model=NAME, file=audio).text) >= 6
    with open(speech, "rb") as audio:
        verbose = client.audio.transcriptions.create(model=NAME, file=audio, response_format="verbose_json")
    assert verbose.language == "en" and 2 < verbose.duration < 4 and verbose.segments, verbose


def applied(d: DaemonProcess) -> tuple[bool, int]:
    spec = d.get(f"/apis/greenthread.ai/v1alpha1/models/{NAME}")[1]["spec"]
    return spec["fairness"]["popular"], spec["sleep"]["level"]


def test_the_same_transcript_after_the_model_slept_and_woke_at_either_level(whisper, speech, whisper_checkpoint):
    """Seed 002 pins it (popular), so it is edited to sleep; levels 1 (weights kept) and 2 (weights
    dropped and reloaded) of an encoder-decoder model on the CPU."""
    before = transcribe(whisper, speech, "body")
    try:
        for level in (1, 2):
            whisper.write_file("models.yaml", seed_model(whisper_checkpoint, fairness={"popular": False},
                                                         sleep={"level": level}))
            whisper.wait_for(lambda: applied(whisper) == (False, level), 60, "the edit to apply")
            assert whisper.cli("sleep", NAME).returncode == 0
            whisper.wait_state(NAME, "sleeping", 120)
            assert transcribe(whisper, speech, "path") == before, f"level {level}"
            slept = whisper.event_messages(NAME, "Slept")
            assert any(f"asleep at level {level}" in m for m in slept), slept
    finally:
        whisper.write_file("models.yaml", seed_model(whisper_checkpoint))
        whisper.wait_state(NAME, "serving", 120)


def test_an_upload_over_the_audio_limit_is_refused_in_openais_shape(whisper):
    client = OpenAI(base_url=f"{whisper.url}/v1", api_key="unused", timeout=300)
    with pytest.raises(APIStatusError) as refused:
        client.audio.transcriptions.create(model=NAME, file=("long.wav", bytes(27 << 20)))
    assert refused.value.status_code == 413
    assert refused.value.body == {"message": "the upload is over the audio file limit of 25 MiB (vLLM's "
                                             "VLLM_MAX_AUDIO_CLIP_FILESIZE_MB)", "type": "BadRequestError",
                                  "param": "file", "code": 413}


def test_a_whisper_model_is_seen_like_any_other(whisper, speech):
    """Its status, request metrics by endpoint, events and engine log, as for a chat Model."""
    transcribe(whisper, speech, "path")
    status = whisper.status(NAME)
    assert status["phase"] == "Ready" and status["replicas"][0]["state"] in ("awake", "asleep"), status
    samples = whisper.metrics()
    key = ("gthread_requests_total", (("code", "200"), ("endpoint", "audio/transcriptions"), ("model", NAME)))
    assert samples.get(key, 0) >= 1, sorted(k for k in samples if k[0] == "gthread_requests_total")
    assert whisper.event_messages(NAME, "Started"), "a Started event"
    logs = whisper.cli("logs", NAME, "--tail", "100000")
    assert logs.returncode == 0 and "Initializing a V1 LLM engine" in logs.stdout, logs.stdout[-2000:]
    assert "POST /whisper-turbo/v1/audio/transcriptions -> 200" in logs.stdout
