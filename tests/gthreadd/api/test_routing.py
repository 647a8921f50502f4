import pytest

from gthreadd.spec.desired import DesiredModel
from gthreadd.spec.resource import ModelResource
from gthreadd.api.routing import RouteError, by_body, by_path
from gthreadd.runtime.served_model import ServedModel
from tests.fake_engine import FakeEngine


def served(name, upstream):
    resource = ModelResource.model_validate({"apiVersion": "greenthread.ai/v1alpha1", "kind": "Model",
                                             "metadata": {"name": name}, "spec": {"modelName": upstream}})
    return ServedModel(DesiredModel(resource, "f.yaml"), FakeEngine)


@pytest.fixture
def models():
    return {m.name: m for m in [served("llama", "meta/llama"), served("qwen-a", "qwen/q"), served("qwen-b", "qwen/q")]}


async def test_by_path(models):
    assert by_path(models, "llama").name == "llama"
    with pytest.raises(RouteError) as info:
        by_path(models, "nope")
    assert info.value.status == 404


async def test_by_body_name_or_upstream(models):
    assert by_body(models, {"model": "llama"}).name == "llama"
    assert by_body(models, {"model": "meta/llama"}).name == "llama"


@pytest.mark.parametrize("body,status,words", [
    ({"model": "nope"}, 404, "does not exist"),
    ({}, 400, "needs a 'model'"),
    ({"model": "qwen/q"}, 400, "qwen-a, qwen-b"),
])
async def test_by_body_errors(models, body, status, words):
    with pytest.raises(RouteError) as info:
        by_body(models, body)
    assert info.value.status == status and words in info.value.message
