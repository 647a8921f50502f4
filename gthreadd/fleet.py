"""The set of served models, brought in line with each new desired state.

Adds start a model, deletes stop it (and wait for its memory to be freed), edits go to the
model itself, which knows whether they need a new engine.
"""

import asyncio
import logging

from gthreadd.desired import DesiredState
from gthreadd.served_model import EngineFactory, ServedModel

log = logging.getLogger(__name__)


class Fleet:
    def __init__(self, engine_factory: EngineFactory):
        self.models: dict[str, ServedModel] = {}
        self.desired = DesiredState()
        self._engine_factory = engine_factory

    async def apply(self, desired: DesiredState) -> None:
        """Bring the models in line with `desired`. Errors are logged when they appear, not on
        every rescan."""
        for error in set(desired.errors) - set(self.desired.errors):
            log.error("models.d: %s", error)
        self.desired = desired
        removed = [self.models.pop(name) for name in list(self.models) if name not in desired.models]
        for name, wanted in desired.models.items():
            model = self.models.get(name)
            if model is None:
                log.info("model %s: added from %s", name, wanted.source)
                model = self.models[name] = ServedModel(wanted, self._engine_factory)
                model.start()
            else:
                model.update(wanted)
            model.set_config_errors(desired.errors_for(wanted.source))
        for model in removed:
            log.info("model %s: removed", model.name)
        await asyncio.gather(*(model.remove() for model in removed))

    async def shutdown(self) -> None:
        models, self.models = list(self.models.values()), {}
        await asyncio.gather(*(model.remove() for model in models))
