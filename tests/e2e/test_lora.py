"""A real LoRA adapter on a real engine: made here with peft (random LoRA weights on the demo
checkpoint, so its greedy answer differs from the base model's), loaded at run time, routed by
its name, kept across a sleep and wake, unloaded."""

import json

import pytest

from tests.e2e.daemon_process import DaemonProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def noisy_adapter(tmp_path_factory, checkpoint):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(checkpoint, torch_dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    path = tmp_path_factory.mktemp("noisy-adapter")
    get_peft_model(base, config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def lora(tmp_path_factory, checkpoint):
    d = DaemonProcess(tmp_path_factory.mktemp("lora"), checkpoint)
    d.write_model("lora.yaml", "lora", more="  lora: {enabled: true, maxRank: 16}\n")
    d.start()
    d.wait_state("lora", "serving", timeout=300)
    yield d
    d.kill()


def answer(daemon: DaemonProcess, model: str, path: str = "/v1") -> tuple[int, str]:
    body = json.dumps({"model": model, "messages": QUESTION, "max_tokens": 24, "temperature": 0}).encode()
    status, reply = daemon.request("POST", f"{path}/chat/completions", body)
    return status, reply["choices"][0]["message"]["content"] if status == 200 else json.dumps(reply)


def test_an_adapter_answers_under_its_name_survives_sleep_and_unloads(lora, noisy_adapter):
    status, base = answer(lora, "lora")
    assert status == 200 and "Paris" in base
    loaded = lora.cli("lora", "load", "lora", "noisy", str(noisy_adapter))
    assert loaded.returncode == 0, loaded.stderr
    status, noisy = answer(lora, "noisy")
    assert status == 200 and noisy != base, "the adapter's random weights change the greedy answer"
    assert answer(lora, "noisy", "/lora/v1") == (200, noisy), "on the Model's own route too"
    assert lora.cli("lora", "list", "lora").stdout.split() == ["noisy"]
    described = lora.cli("describe", "model", "lora").stdout
    assert "  Adapters:     noisy" in described and "AdapterLoaded" in described

    assert lora.cli("sleep", "lora").returncode == 0
    assert lora.status("lora")["state"] == "sleeping"
    assert answer(lora, "noisy") == (200, noisy), "after the wake the adapter answers as before"
    assert answer(lora, "lora") == (200, base), "and the base model as before"

    assert lora.cli("lora", "unload", "lora", "noisy").returncode == 0
    status, _ = answer(lora, "noisy")
    assert status == 404


def test_an_adapter_above_max_rank_is_refused_and_nothing_else_changes(lora, tmp_path, checkpoint):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(checkpoint, torch_dtype=torch.float32)
    get_peft_model(base, LoraConfig(r=32, target_modules=["q_proj"])).save_pretrained(tmp_path / "wide")
    refused = lora.cli("lora", "load", "lora", "wide", str(tmp_path / "wide"))
    assert refused.returncode == 1 and "has rank 32, above spec.lora.maxRank (16)" in refused.stderr
    assert lora.status("lora")["phase"] == "Ready" and "Paris" in answer(lora, "lora")[1]
