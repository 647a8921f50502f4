"""Find the model a request is for: by URL path (`/<name>/v1/...`) or by the body's `model`
(`/v1/...`), which may be the Model's name, its upstream id (spec.modelName) or one of its LoRA
adapters."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from gthreadd.spec.engine_config import served_names
from gthreadd.runtime.served_model import ServedModel


@dataclass(frozen=True)
class RouteError(Exception):
    status: int
    message: str
    param: Optional[str] = "model"


def by_path(models: Mapping[str, ServedModel], name: str) -> ServedModel:
    model = models.get(name)
    if model is None:
        raise RouteError(404, f"no Model named {name!r} on this host", param=None)
    return model


def by_body(models: Mapping[str, ServedModel], body: dict) -> ServedModel:
    requested = body.get("model")
    if not isinstance(requested, str) or not requested:
        raise RouteError(400, "the request body needs a 'model' (a Model name or its modelName) on /v1 routes")
    if requested in models:
        return models[requested]
    matches = [m for m in models.values() if requested in served_names(m.resource) or requested in m.adapters]
    if not matches:
        raise RouteError(404, f"The model `{requested}` does not exist.")
    if len(matches) > 1:
        names = ", ".join(sorted(m.name for m in matches))
        raise RouteError(400, f"`{requested}` is served by several Models ({names}); name one of them, "
                              "or use /<name>/v1/...")
    return matches[0]
