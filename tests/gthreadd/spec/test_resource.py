"""The Model schema: defaults from seeds 000, the fields 002 adds, and strict validation."""

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from gthreadd.spec.manifests import load_file
from gthreadd.spec.resource import Endpoint, ModelResource

SEEDS = Path(__file__).resolve().parents[2] / "fixtures" / "seeds"


def model(**spec) -> ModelResource:
    return ModelResource.model_validate({
        "apiVersion": "greenthread.ai/v1alpha1", "kind": "Model", "metadata": {"name": "m"},
        "spec": {"modelName": "org/model", **spec},
    })


def errors(**spec) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        model(**spec)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in info.value.errors()]


@pytest.mark.parametrize("path", sorted(SEEDS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_seed_example_is_valid(path):
    parsed = load_file(path)
    assert parsed.errors == ()
    assert parsed.models


def test_defaults_follow_the_crd_reference():
    spec = model().spec
    assert spec.dtype.value == "bfloat16"
    assert spec.gpu_memory_utilization == "0.90"
    assert spec.tensor_parallel == 1 and spec.replicas == 1 and spec.quantization.value == ""
    assert spec.sleep.idle_timeout == timedelta(minutes=5) and spec.sleep.drain_timeout == timedelta(seconds=30)
    assert spec.fairness.min_runtime == timedelta(seconds=10)
    assert spec.fairness.max_wait_time == timedelta(seconds=5)
    assert spec.fairness.popular is False and spec.staging.pinned is False
    assert spec.lora.max_rank == 64 and spec.lora.download_timeout == timedelta(minutes=5)
    assert spec.load_format.value == "auto" and spec.model_type.value == "chat"
    assert spec.enabled_endpoints == [Endpoint.chat_completions, Endpoint.completions, Endpoint.responses,
                                      Endpoint.messages, Endpoint.tokenize]
    assert model().metadata.namespace == "default"


def test_model_name_is_required():
    with pytest.raises(ValidationError, match="modelName"):
        ModelResource.model_validate({"apiVersion": "greenthread.ai/v1alpha1", "kind": "Model",
                                      "metadata": {"name": "m"}, "spec": {}})


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_tensor_parallel_powers_of_two(tp):
    assert model(tensorParallelSize=tp).spec.tensor_parallel == tp
    assert model(parallelism={"tensor": tp}).spec.tensor_parallel == tp


@pytest.mark.parametrize("tp", [0, 3, 6, 16])
def test_tensor_parallel_rejected(tp):
    assert any("power of 2" in msg for _, msg in errors(tensorParallelSize=tp))


def test_conflicting_spellings_of_tensor_parallelism():
    (_, msg), = errors(tensorParallelSize=2, parallelism={"tensor": 4})
    assert "disagree" in msg
    assert model(tensorParallelSize=2, parallelism={"tensor": 2}).spec.tensor_parallel == 2


@pytest.mark.parametrize("value", ["0.5", "1", "1.0", 0.9])
def test_memory_fraction_accepted(value):
    assert model(gpuMemoryUtilization=value).spec.memory_fraction == float(value)


@pytest.mark.parametrize("value", ["0", "1.5", "-0.2", "lots", True, None])
def test_memory_fraction_rejected(value):
    assert errors(gpuMemoryUtilization=value)[0][0] == "spec.gpuMemoryUtilization"


def test_dtype_must_be_documented():
    (loc, msg), = errors(dtype="int3")
    assert loc == "spec.dtype" and "bfloat16" in msg


def test_unknown_fields_are_errors_that_name_the_field():
    assert errors(sleep={"idelTimeout": "5m"}) == [("spec.sleep.idelTimeout", "Extra inputs are not permitted")]


def test_bad_duration_names_its_field():
    (loc, msg), = errors(fairness={"minRuntime": "ten seconds"})
    assert loc == "spec.fairness.minRuntime" and "duration" in msg


def test_names_must_be_dns_labels():
    with pytest.raises(ValidationError, match="not a valid name"):
        ModelResource.model_validate({"apiVersion": "greenthread.ai/v1alpha1", "kind": "Model",
                                      "metadata": {"name": "Llama_3"}, "spec": {"modelName": "x/y"}})


def test_dump_round_trips_in_the_users_spelling():
    m = model(sleep={"idleTimeout": "1h30m"}, extraArgs=["--enforce-eager"])
    dumped = m.model_dump(mode="json", by_alias=True)
    assert dumped["spec"]["sleep"]["idleTimeout"] == "1h30m"
    assert ModelResource.model_validate(dumped) == m


def test_kv_cache_max_size_is_a_size():
    assert model(kvCache={"enabled": True, "maxSize": "16Gi"}).spec.kv_cache.max_size == "16Gi"
    ((where, message),) = errors(kvCache={"enabled": True, "maxSize": "lots"})
    assert where == "spec.kvCache.maxSize" and "expected a size such as 16Gi" in message
