"""A model's side of the engine operations (boot, sleep, wake, stop), its phase, conditions and
edits, with FakeEngine. The scheduler's decisions are tested in test_fairness.py."""

import asyncio
from pathlib import Path

import pytest

from gthreadd.spec.desired import DesiredModel
from gthreadd.spec.manifests import ManifestError
from gthreadd.spec.resource import ModelResource, Phase
from gthreadd.runtime.unit_ops import PermanentFailure
from gthreadd.runtime.served_model import ServedModel
from memory.read_path import ReadPath
from tests.fake_engine import FakeEngine


def desired(tmp_path, **spec) -> DesiredModel:
    config = tmp_path / "config.json"
    if not config.exists():  # rewriting it would change the checkpoint's mtime, and so its conversion key
        config.write_text("{}")
    resource = ModelResource.model_validate({
        "apiVersion": "greenthread.ai/v1alpha1", "kind": "Model", "metadata": {"name": "m"},
        "spec": {"modelName": str(tmp_path), **spec},
    })
    return DesiredModel(resource, "m.yaml")


async def test_boot_reaches_ready_with_the_devices_given(tmp_path):
    model = ServedModel(desired(tmp_path), FakeEngine)
    assert model.phase == Phase.pending
    await model.boot(0, (2, 3))
    assert model.phase == Phase.ready and model.ready_condition.status == "True"
    assert model.engines[0].config.devices == (2, 3)
    assert model.engines[0].config.served_model_names == ("m", str(tmp_path))


async def test_sleep_wake_and_stop_reach_the_engine(tmp_path):
    model = ServedModel(desired(tmp_path), FakeEngine)
    await model.boot(0, (0,))
    engine = model.engines[0]
    await model.sleep(0)
    assert engine.asleep
    await model.wake(0)
    assert not engine.asleep
    await model.stop(0)
    assert engine.stopped and not model.engines


async def test_invalid_extra_args_fail_for_good_with_the_reason(tmp_path):
    model = ServedModel(desired(tmp_path, extraArgs=["--invalid"]), FakeEngine)
    with pytest.raises(PermanentFailure, match="InvalidExtraArgs: unrecognized arguments: --invalid"):
        await model.boot(0, ())
    assert model.phase == Phase.failed and model.ready_condition.reason == "InvalidExtraArgs"


async def test_missing_checkpoint_fails_for_good(tmp_path):
    model = ServedModel(desired(tmp_path, modelName=str(tmp_path / "nowhere")), FakeEngine)
    with pytest.raises(PermanentFailure, match="no config.json"):
        await model.boot(0, ())
    assert model.ready_condition.reason == "SourceUnavailable"


async def test_other_start_failures_are_retried(tmp_path):
    model = ServedModel(desired(tmp_path), lambda c: FakeEngine(c, fail_with=RuntimeError("out of memory")))
    with pytest.raises(RuntimeError):
        await model.boot(0, ())
    assert model.phase == Phase.staging and "out of memory; retrying" in model.ready_condition.message


async def test_engine_edits_start_a_new_generation_and_live_edits_do_not(tmp_path):
    model = ServedModel(desired(tmp_path), FakeEngine)
    await model.boot(0, ())
    model.update(desired(tmp_path, sleep={"idleTimeout": "1m"}))
    assert (model.generation, model.phase) == (0, Phase.ready)
    model.update(desired(tmp_path, extraArgs=["--max-model-len", "1024"]))
    assert (model.generation, model.phase) == (1, Phase.pending)


async def test_a_failed_model_retries_on_any_edit(tmp_path):
    model = ServedModel(desired(tmp_path, extraArgs=["--invalid"]), FakeEngine)
    with pytest.raises(PermanentFailure):
        await model.boot(0, ())
    model.update(desired(tmp_path))
    assert model.generation == 1
    await model.boot(0, ())
    assert model.phase == Phase.ready


def test_config_errors_show_as_a_condition(tmp_path):
    model = ServedModel(desired(tmp_path), FakeEngine)
    model.set_config_errors((ManifestError("m.yaml", "unknown field", 0, "spec.x", 7),))
    cond = model.conditions["ConfigValid"]
    assert cond.status == "False" and "m.yaml:7" in cond.message and "last good version" in cond.message


def test_bad_extra_args_fail_before_any_device_is_needed(tmp_path):
    model = ServedModel(desired(tmp_path, extraArgs=["--no-such-flag"]), FakeEngine)
    assert "unrecognized arguments: --no-such-flag" in model.check_engine_args()
    assert model.phase == Phase.failed and model.ready_condition.reason == "InvalidExtraArgs"
    assert ServedModel(desired(tmp_path), FakeEngine).check_engine_args() == ""


async def test_load_format_gthread_converts_first_then_boots_from_the_store(tmp_path):
    import torch
    from safetensors.torch import save_file

    src = tmp_path / "ckpt"
    src.mkdir()
    save_file({"w": torch.ones(4, 4)}, src / "model.safetensors")
    phases = []
    model = ServedModel(desired(src, loadFormat="gthread"), FakeEngine, store=tmp_path / "store")
    model.set_phase = lambda phase, original=model.set_phase: (phases.append(phase), original(phase))
    await model.boot(0, ())
    assert phases == [Phase.converting, Phase.staging, Phase.ready]
    assert model.conversion.status == "Complete" and model.conversion.total_size_bytes == 4096
    engine_dir = Path(model.engines[0].config.model_path)
    assert engine_dir.parent == tmp_path / "store" and model.engines[0].config.load_format == "gthread"
    await model.stop(0)
    model.update(desired(src, loadFormat="gthread", extraArgs=["--max-model-len", "64"]))
    await model.boot(0, ())
    assert Path(model.engines[0].config.model_path) == engine_dir, "unchanged weights are reused"


async def test_gthread_weights_are_staged_in_the_host_tier_and_corruption_converts_again(tmp_path, caplog):
    import torch
    from safetensors.torch import save_file

    from memory.host_tier import HostTier

    src = tmp_path / "ckpt"
    src.mkdir()
    save_file({"w": torch.ones(64, 64)}, src / "model.safetensors")
    tier = HostTier(tmp_path / "shm", budget=2**20)
    tier.start()
    model = ServedModel(desired(src, loadFormat="gthread", staging={"pinned": True}), FakeEngine,
                        store=tmp_path / "store", host_tier=tier)
    await model.boot(0, ())
    config = model.engines[0].config
    assert config.host_tier == str(tmp_path / "shm") and model.staging_tier == "system"
    assert tier.path(Path(config.model_path).name).is_file()
    assert model.read_path == ReadPath.host_tier and model.bytes_read == {"host-tier": 8192}
    assert config.on_miss == ReadPath.disk, "a CPU host reads a miss from disk"
    await model.sleep(0, 1)
    await model.wake(0)
    assert model.bytes_read == {"host-tier": 8192}, "a level-1 wake on the CPU keeps the weights it had"
    await model.sleep(0, 2)
    await model.wake(0)
    assert model.bytes_read == {"host-tier": 16384}, "a level-2 wake reloads them"
    assert tier.used == 8192, "64x64 in bfloat16"
    assert not any(s.leases for s in tier._segments.values()), "a lease ends with its load"

    await model.stop(0)
    model.forget_staged()
    assert model.staging_tier == "disk" and tier.used == 0
    with open(Path(config.model_path) / "weights.gthread", "r+b") as f:
        f.write(b"\xff")
    await model.boot(0, ())
    assert model.ready_condition.reason == "Ready" and model.staging_tier == "system"
    assert "converted weights were corrupt" in caplog.text and model.conversion.status == "Complete"
    assert not (Path(config.model_path) / "gthread-corrupt.txt").exists(), "converted again in place"


async def test_an_engine_that_reads_corrupt_weights_gets_them_converted_again_by_the_daemon(tmp_path):
    """The engine process only reports the ChecksumError (as its root cause); the daemon owns the
    store, so it takes the copy out of use and the retry converts again."""
    import torch
    from safetensors.torch import save_file

    from engine.interface import EngineStartError

    src = tmp_path / "ckpt"
    src.mkdir()
    save_file({"w": torch.ones(4, 4)}, src / "model.safetensors")
    failures = [EngineStartError("ChecksumError: chunk 0 of weights.gthread does not match its manifest")]
    model = ServedModel(desired(src, loadFormat="gthread"),
                        lambda c: FakeEngine(c, fail_with=failures.pop() if failures else None),
                        store=tmp_path / "store")
    with pytest.raises(EngineStartError):
        await model.boot(0, ())
    [copy] = (tmp_path / "store").iterdir()
    assert (copy / "gthread-corrupt.txt").read_text().startswith("ChecksumError: chunk 0")
    await model.boot(0, ())
    assert model.ready_condition.reason == "Ready" and (copy / "gthread-manifest.json").is_file()
    assert not (copy / "gthread-corrupt.txt").exists()


async def test_a_cancelled_conversion_stops_its_thread_and_leaves_no_partial_copy(tmp_path, monkeypatch):
    """Converting runs in a worker thread, which cancelling the boot cannot interrupt: the
    conversion stops at its next progress report instead (a thread left running would also hold
    the interpreter's exit)."""
    import threading

    from gthreadd.runtime import served_model

    reporting, stopped = threading.Event(), threading.Event()

    def endless_convert(checkpoint, store, key, source, dtype, progress):
        """A test double for converter.convert: reports progress until told to stop."""
        try:
            while True:
                progress(0.5)
                reporting.set()
                threading.Event().wait(0.01)
        finally:
            stopped.set()

    monkeypatch.setattr(served_model, "convert", endless_convert)
    model = ServedModel(desired(tmp_path, loadFormat="gthread"), FakeEngine, store=tmp_path / "store")
    boot = asyncio.create_task(model.boot(0, ()))
    await asyncio.to_thread(reporting.wait, 10)
    boot.cancel()
    with pytest.raises(asyncio.CancelledError):
        await boot
    assert await asyncio.to_thread(stopped.wait, 10), "the conversion thread ended"


async def test_a_disk_that_fills_up_during_conversion_fails_the_boot_clearly_and_a_retry_converts(tmp_path,
                                                                                                   monkeypatch):
    import errno

    import torch
    from safetensors.torch import save_file

    from conversion import converter

    src = tmp_path / "ckpt"
    src.mkdir()
    save_file({"w": torch.ones(64, 64)}, src / "model.safetensors")
    model = ServedModel(desired(src, loadFormat="gthread"), FakeEngine, store=tmp_path / "store")
    write_weights = converter._write_weights

    def full(path, plan, total, progress):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(converter, "_write_weights", full)
    with pytest.raises(OSError):
        await model.boot(0, ())
    assert model.conversion.status == "Failed"
    assert model.ready_condition.reason == "ConversionFailed"
    assert "No space left on device" in model.ready_condition.message and "retrying" in model.ready_condition.message
    monkeypatch.setattr(converter, "_write_weights", write_weights)  # space was freed
    await model.boot(0, ())
    assert model.conversion.status == "Complete" and model.engines[0].running


async def test_a_gpu_host_with_kvikio_reads_a_host_tier_miss_with_kvikio(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file

    from memory import kvikio_reader

    src = tmp_path / "ckpt"
    src.mkdir()
    save_file({"w": torch.ones(64, 64)}, src / "model.safetensors")
    monkeypatch.setattr(kvikio_reader, "installed", lambda: True)
    model = ServedModel(desired(src, loadFormat="gthread"), FakeEngine, store=tmp_path / "store")
    await model.boot(0, (0,), on_gpu=True)
    assert model.engines[0].config.on_miss == ReadPath.kvikio
    assert model.read_path == ReadPath.kvikio and model.bytes_read == {"kvikio": 8192}
    await model.boot(0, ())
    assert model.engines[0].config.on_miss == ReadPath.disk and model.read_path == ReadPath.disk


async def test_kv_cache_on_the_cpu_is_reported_as_having_no_effect(tmp_path):
    model = ServedModel(desired(tmp_path, kvCache={"enabled": True, "maxSize": "2Gi"}), FakeEngine)
    await model.boot(0, ())
    assert model.engines[0].config.kv_offload_bytes == 0
    assert [e["reason"] for e in model.events.to_json() if e["type"] == "Warning"] == ["KVCacheUnsupported"]


async def test_kv_cache_on_a_gpu_is_counted_in_the_host_memory_ledger_while_its_engine_runs(tmp_path):
    from memory.host_tier import HostTier

    tier = HostTier(tmp_path / "shm", budget=3 * 2**30)
    tier.start()
    model = ServedModel(desired(tmp_path, kvCache={"enabled": True, "maxSize": "2Gi"}), FakeEngine, host_tier=tier)
    await model.boot(0, (0,), on_gpu=True)
    assert model.engines[0].config.kv_offload_bytes == 2 * 2**30 and tier.usage().reserved == 2 * 2**30
    await model.sleep(0)
    await model.wake(0)
    assert tier.usage().reserved == 2 * 2**30, "the engine keeps its offload buffer while asleep"

    await model.boot(1, (1,), on_gpu=True)
    assert model.engines[1].config.kv_offload_bytes == 0, "a second 2 GiB does not fit 3 GiB"
    warnings = [e for e in model.events.to_json() if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["KVCacheNoRoom"]
    assert "spec.kvCache.maxSize (2.00 GiB)" in warnings[0]["message"] and "replica 1" in warnings[0]["message"]
    await model.stop(0)
    await model.stop(1)
    assert tier.usage().reserved == 0
    tier.close()


async def test_a_failed_boot_gives_its_kv_cache_reservation_back(tmp_path):
    from memory.host_tier import HostTier

    tier = HostTier(tmp_path / "shm", budget=3 * 2**30)
    tier.start()
    model = ServedModel(desired(tmp_path, kvCache={"enabled": True, "maxSize": "2Gi"}),
                        lambda c: FakeEngine(c, fail_with=RuntimeError("out of memory")), host_tier=tier)
    with pytest.raises(RuntimeError):
        await model.boot(0, (0,), on_gpu=True)
    assert tier.usage().reserved == 0
    tier.close()


async def test_a_model_type_no_engine_can_serve_fails_with_the_reason(tmp_path):
    model = ServedModel(desired(tmp_path, modelType="tts"), FakeEngine)
    with pytest.raises(PermanentFailure):
        await model.boot(0, ())
    assert model.phase == Phase.failed and model.ready_condition.reason == "UnsupportedModelType"
    assert "modelType tts (text to speech: vLLM has no speech synthesis" in model.ready_condition.message
