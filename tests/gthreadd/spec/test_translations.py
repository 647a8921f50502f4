"""The spec's translations into what others need: the scheduler's Policy (nodeSelector and
product matched against this host), the EngineConfig and which edits need new engines, and the
conversion key that decides when converted weights are reused."""

import socket

from gthreadd.spec.conversion_key import conversion_key
from gthreadd.spec.engine_config import engine_config_for, extra_args_error, needs_restart, served_names
from gthreadd.spec.policy import policy_for
from gthreadd.spec.resource import ModelResource
from scheduler.inventory import Device

A40 = [Device(0, "GPU-0", "NVIDIA-A40", 48 * 2**30, 48 * 2**30), Device(1, "GPU-1", "NVIDIA-A40", 48 * 2**30, 48 * 2**30)]


def model(**spec) -> ModelResource:
    return ModelResource.model_validate({"apiVersion": "greenthread.ai/v1alpha1", "kind": "Model",
                                         "metadata": {"name": "m"}, "spec": {"modelName": "org/model", **spec}})


def test_the_policy_carries_the_fairness_and_sleep_fields_in_seconds():
    policy = policy_for(model(tensorParallelSize=2, gpuMemoryUtilization="0.5",
                              fairness={"popular": True, "minRuntime": "2m", "maxWaitTime": "5s"},
                              sleep={"idleTimeout": "1h", "drainTimeout": "10s"}), A40)
    assert (policy.tensor_parallel, policy.memory_fraction, policy.popular) == (2, 0.5, True)
    assert (policy.min_runtime, policy.max_wait, policy.idle_timeout, policy.drain_timeout) == (120, 5, 3600, 10)
    assert policy.unschedulable_reason == ""


def test_a_node_selector_this_host_matches_is_schedulable():
    selector = {"kubernetes.io/hostname": socket.gethostname(), "nvidia.com/gpu.product": "NVIDIA-A40",
                "nvidia.com/gpu.count": "2", "nvidia.com/gpu.present": "true"}
    assert policy_for(model(nodeSelector=selector), A40).unschedulable_reason == ""


def test_a_node_selector_this_host_does_not_match_says_which_label():
    reason = policy_for(model(nodeSelector={"nvidia.com/gpu.product": "NVIDIA-H100"}), A40).unschedulable_reason
    assert reason.startswith("nodeSelector nvidia.com/gpu.product=NVIDIA-H100 does not match this host (")
    assert "nvidia.com/gpu.product=NVIDIA-A40" in reason


def test_a_product_this_host_lacks_names_what_it_has():
    reason = policy_for(model(product="NVIDIA-H100"), A40).unschedulable_reason
    assert reason == "product NVIDIA-H100 is not on this host (it has NVIDIA-A40)"
    assert policy_for(model(product="NVIDIA-A40"), A40).product == "NVIDIA-A40"


def test_a_cpu_host_has_no_gpu_labels():
    cpu = [Device(0, "cpu-0", "cpu", 2**34, 2**33)]
    reason = policy_for(model(nodeSelector={"nvidia.com/gpu.present": "true"}), cpu).unschedulable_reason
    assert "nvidia.com/gpu.present=false" in reason


def test_served_names_put_the_upstream_id_first_for_a_hub_model_and_the_name_for_a_path(tmp_path):
    assert served_names(model()) == ("org/model", "m")
    assert served_names(model(modelName=str(tmp_path))) == ("m", str(tmp_path))
    assert served_names(model(modelName="m")) == ("m",)


def test_engine_config_and_what_needs_new_engines(tmp_path):
    config = engine_config_for(model(loadFormat="gthread", dtype="float16"), tmp_path, (1,), "/dev/shm/x")
    assert (config.model_path, config.dtype, config.devices, config.host_tier) == (str(tmp_path), "float16", (1,),
                                                                                 "/dev/shm/x")
    assert engine_config_for(model(), tmp_path, host_tier="/dev/shm/x").host_tier == "", "only gthread reads it"
    assert needs_restart(model(), model(dtype="float16"))
    assert needs_restart(model(), model(extraArgs=["--max-model-len", "64"]))
    assert not needs_restart(model(), model(sleep={"idleTimeout": "1m"}, fairness={"popular": True}))


def test_extra_args_are_checked_by_vllms_own_parser():
    assert extra_args_error(model(extraArgs=["--max-model-len", "64"])) == ""
    assert "unrecognized arguments: --no-such-flag" in extra_args_error(model(extraArgs=["--no-such-flag"]))
    assert "spec.dtype" in extra_args_error(model(extraArgs=["--dtype", "float16"])), "a flag the spec owns"


def test_the_conversion_key_changes_exactly_when_the_conversion_would(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    (tmp_path / "config.json").write_text("{}")
    key = conversion_key(model(modelName=str(tmp_path)), tmp_path)
    assert key.startswith(tmp_path.name.lower().replace("_", "-") + "-"), "readable: the checkpoint's name first"
    renamed = ModelResource.model_validate({**model(modelName=str(tmp_path)).model_dump(by_alias=True),
                                            "metadata": {"name": "other"}})
    assert conversion_key(renamed, tmp_path) == key, "a rename reuses the weights"
    assert conversion_key(model(modelName=str(tmp_path), sleep={"idleTimeout": "1m"}), tmp_path) == key
    assert conversion_key(model(modelName=str(tmp_path), dtype="float16"), tmp_path) != key
    (tmp_path / "model.safetensors").write_bytes(b"y" * 11)
    assert conversion_key(model(modelName=str(tmp_path)), tmp_path) != key, "new weights convert again"
