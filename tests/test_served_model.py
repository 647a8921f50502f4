"""A model's lifecycle: start, live edits, restarting edits, failures, removal (with FakeEngine)."""

import asyncio

import pytest

from gthreadd.desired import DesiredModel
from gthreadd.lifecycle import EngineState
from gthreadd.manifests import ManifestError
from gthreadd.resource import ModelResource, Phase
from gthreadd.served_model import ServedModel
from tests.fake_engine import FakeEngine


def desired(tmp_path, **spec) -> DesiredModel:
    (tmp_path / "config.json").write_text("{}")
    resource = ModelResource.model_validate({
        "apiVersion": "greenthread.ai/v1alpha1", "kind": "Model", "metadata": {"name": "m"},
        "spec": {"modelName": str(tmp_path), **spec},
    })
    return DesiredModel(resource, "m.yaml")


async def settled(model: ServedModel) -> None:
    for _ in range(200):
        await asyncio.sleep(0.005)
        if model.engine_state in (EngineState.serving, EngineState.failed, EngineState.stopped) \
                and not model._changed.is_set():
            return
    raise AssertionError("model did not settle")


@pytest.fixture
async def model(tmp_path):
    m = ServedModel(desired(tmp_path), FakeEngine)
    m.start()
    await settled(m)
    yield m
    await m.remove()


async def test_start_reaches_ready(model):
    assert model.phase == Phase.ready and model.engine_state == EngineState.serving
    assert model.engine.config.served_model_names == ("m", model.resource.spec.model_name)
    assert model.ready_condition.status == "True"


async def test_live_edit_keeps_the_engine(model, tmp_path):
    engine = model.engine
    model.update(desired(tmp_path, sleep={"idleTimeout": "1m"}))
    await settled(model)
    assert model.engine is engine and model.resource.spec.sleep.idle_timeout.total_seconds() == 60


async def test_engine_edit_restarts(model, tmp_path):
    engine = model.engine
    model.update(desired(tmp_path, extraArgs=["--max-model-len", "1024"]))
    await settled(model)
    assert engine.stopped and model.engine is not engine
    assert model.engine.config.extra_args == ("--max-model-len", "1024") and model.phase == Phase.ready


async def test_invalid_extra_args_fail_with_the_reason_and_an_edit_recovers(model, tmp_path):
    model.update(desired(tmp_path, extraArgs=["--invalid"]))
    await settled(model)
    assert model.phase == Phase.failed and model.engine is None
    assert (model.ready_condition.reason, model.ready_condition.message) == (
        "InvalidExtraArgs", "unrecognized arguments: --invalid")
    model.update(desired(tmp_path))
    await settled(model)
    assert model.phase == Phase.ready


async def test_missing_checkpoint_fails_clearly(tmp_path):
    m = ServedModel(desired(tmp_path, modelName=str(tmp_path / "nowhere")), FakeEngine)
    m.start()
    await settled(m)
    assert m.phase == Phase.failed and m.ready_condition.reason == "SourceUnavailable"
    assert "no config.json" in m.ready_condition.message
    await m.remove()


async def test_engine_crash_at_start(tmp_path):
    m = ServedModel(desired(tmp_path), lambda c: FakeEngine(c, fail_with=RuntimeError("out of memory")))
    m.start()
    await settled(m)
    assert m.ready_condition.reason == "EngineStartFailed" and "out of memory" in m.ready_condition.message
    await m.remove()


async def test_remove_stops_the_engine(model):
    engine = model.engine
    await model.remove()
    assert engine.stopped and model.engine_state == EngineState.stopped


async def test_edits_during_start_wait_for_it(tmp_path):
    m = ServedModel(desired(tmp_path), lambda c: FakeEngine(c, start_delay=0.05))
    m.start()
    await asyncio.sleep(0.01)
    m.update(desired(tmp_path, dtype="float16"))
    await asyncio.sleep(0.2)
    await settled(m)
    assert m.engine.config.dtype == "float16" and m.phase == Phase.ready
    await m.remove()


async def test_config_errors_show_as_a_condition(model):
    model.set_config_errors((ManifestError("m.yaml", "unknown field", 0, "spec.x", 7),))
    cond = model.conditions["ConfigValid"]
    assert cond.status == "False" and "m.yaml:7" in cond.message and "last good version" in cond.message
