"""Views of a served model: the Model object with its status, and the `/<name>/status` JSON."""

import socket

from gthreadd.lifecycle import EngineState
from gthreadd.resource import ModelResource, ModelStatus, Phase
from gthreadd.served_model import ServedModel


def model_object(model: ServedModel, base_url: str) -> dict:
    serving = model.engine_state == EngineState.serving
    status = ModelStatus(
        phase=model.phase,
        url=f"{base_url}/{model.name}/v1",
        replicas=1 if model.engine_state != EngineState.stopped else 0,
        ready_replicas=int(serving),
        serving_replicas=int(serving),
        sleeping_replicas=0,
        node=socket.gethostname(),
        gpus="",
        conditions=list(model.conditions.values()),
        source_file=model.source,
    )
    resource = ModelResource(
        api_version=model.resource.api_version, kind=model.resource.kind,
        metadata=model.resource.metadata, spec=model.resource.spec, status=status,
    )
    return resource.model_dump(mode="json", by_alias=True, exclude_none=True)


def sidecar_status(model: ServedModel) -> dict:
    """The JSON of `GET /<name>/status` (seeds 002), plus phase and the reason when not serving."""
    ready = model.ready_condition
    body = {
        "model": model.name,
        "state": model.engine_state.value,
        "bootReady": model.phase == Phase.ready,
        "phase": model.phase.value,
        "queue": {"inFlight": model.in_flight, "queued": 0, "barriered": False},
    }
    if ready.status != "True":
        body["reason"] = ready.reason
        body["message"] = ready.message
    return body
