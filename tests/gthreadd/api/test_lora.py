"""LoRA adapters through the daemon with FakeEngine (the test double for vLLM engines): checked,
routed by name, listed, and loaded again into an engine that replaced a dead one or after a daemon
restart.
tests/e2e/test_lora.py loads a real adapter into a real engine."""

import json

import aiohttp

from gthreadd.runtime.lora import AdapterFile
from tests.inprocess_daemon import post, start_daemon, until, write


def adapter(tmp_path, name: str, rank: int):
    path = tmp_path / name
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    return path


async def models(d) -> list[dict]:
    async with aiohttp.ClientSession() as s, s.get(d.base_url + "/v1/models") as r:
        return (await r.json())["data"]


async def test_adapters_are_checked_routed_listed_and_outlive_their_engine(tmp_path):
    (tmp_path / "d").mkdir()
    d = await start_daemon(tmp_path / "d")
    try:
        write(d, "m.yaml", "m", "  lora: {enabled: true, maxRank: 8}\n")
        write(d, "plain.yaml", "plain")
        d.reload()
        await until(lambda: all(n in d.fleet.models and d.fleet.models[n].engines for n in ("m", "plain")), "both")
        fr = adapter(tmp_path, "fr", 4)
        status, body = await post(d, "/m/v1/load_lora_adapter", {"lora_name": "fr", "lora_path": str(fr)})
        assert status == 200 and body["adapters"] == ["fr"], body
        assert d.fleet.models["m"].engines[0].lora_adapters() == {"fr": str(fr)}
        assert {"id": "fr", "name": "m", "parent": "m"}.items() <= next(e for e in await models(d) if e["id"] == "fr").items()
        status, _ = await post(d, "/v1/chat/completions", {"model": "fr", "messages": []})
        assert status == 200, "a request naming the adapter is routed to its Model"

        status, body = await post(d, "/m/v1/load_lora_adapter", {"lora_name": "big", "lora_path": str(adapter(tmp_path, "big", 16))})
        assert status == 400 and "has rank 16, above spec.lora.maxRank (8)" in body["error"]["message"]
        status, body = await post(d, "/m/v1/load_lora_adapter", {"lora_name": "x", "lora_path": str(tmp_path / "nope")})
        assert status == 404 and "no LoRA adapter directory at" in body["error"]["message"]
        status, body = await post(d, "/plain/v1/load_lora_adapter", {"lora_name": "fr", "lora_path": str(fr)})
        assert status == 400 and "set spec.lora.enabled" in body["error"]["message"]
        status, body = await post(d, "/m/v1/unload_lora_adapter", {"lora_name": "de"})
        assert status == 404 and "no LoRA adapter 'de'" in body["error"]["message"]

        first = d.fleet.models["m"].engines[0]
        first.die()
        await until(lambda: d.fleet.models["m"].engines.get(0) not in (None, first)
                    and d.fleet.models["m"].engines[0].running, "a new engine", timeout=10)
        assert d.fleet.models["m"].engines[0].lora_adapters() == {"fr": str(fr)}, "loaded again into the new one"

        status, body = await post(d, "/m/v1/unload_lora_adapter", {"lora_name": "fr"})
        assert status == 200 and body["adapters"] == []
        assert d.fleet.models["m"].engines[0].lora_adapters() == {}
        assert not [e for e in await models(d) if e["id"] == "fr"]
    finally:
        await d.shutdown()


async def test_adapters_outlive_a_daemon_restart_and_go_with_their_model(tmp_path):
    fr = adapter(tmp_path, "fr", 4)
    (tmp_path / "d").mkdir()
    d = await start_daemon(tmp_path / "d")
    try:
        write(d, "m.yaml", "m", "  lora: {enabled: true, maxRank: 8}\n")
        d.reload()
        await until(lambda: "m" in d.fleet.models and d.fleet.models["m"].engines, "m boots")
        assert (await post(d, "/m/v1/load_lora_adapter", {"lora_name": "fr", "lora_path": str(fr)}))[0] == 200
    finally:
        await d.shutdown()
    assert json.loads((tmp_path / "d" / "state" / "lora" / "m.json").read_text()) == {"fr": str(fr)}

    d = await start_daemon(tmp_path / "d")
    try:
        d.reload()
        await until(lambda: "m" in d.fleet.models and d.fleet.models["m"].engines, "m boots again")
        assert d.fleet.models["m"].engines[0].lora_adapters() == {"fr": str(fr)}, "loaded again after the restart"
        assert [e["id"] for e in await models(d) if e.get("parent") == "m"] == ["fr"]

        (d.settings.models_dir / "m.yaml").unlink()
        d.reload()
        await until(lambda: "m" not in d.fleet.models, "m deleted")
        assert not (tmp_path / "d" / "state" / "lora" / "m.json").exists()
        write(d, "m.yaml", "m", "  lora: {enabled: true, maxRank: 8}\n")
        d.reload()
        await until(lambda: "m" in d.fleet.models and d.fleet.models["m"].engines, "m added again")
        assert d.fleet.models["m"].engines[0].lora_adapters() == {}, "a deleted Model's adapters went with it"
    finally:
        await d.shutdown()


def test_an_unreadable_adapter_file_is_reported_and_forgets_nothing_else(tmp_path, caplog):
    remembered = AdapterFile(tmp_path / "lora" / "m.json")
    assert remembered.read() == {}
    remembered.write({"fr": "/adapters/fr"})
    assert remembered.read() == {"fr": "/adapters/fr"}
    remembered.path.write_text("{not json")
    assert remembered.read() == {} and f"{remembered.path}: Expecting property name" in caplog.text
    remembered.path.write_text('["fr"]')
    assert remembered.read() == {} and "expected a mapping of adapter names to directories" in caplog.text
    remembered.write({})
    assert not remembered.path.exists()
