"""Where a Model's converted weights live in the store: a key that changes exactly when the
conversion's inputs do (source files, revision, dtype, quantization, format version), so edits
that matter convert again and everything else, renames and re-deploys included, reuses."""

import hashlib
import json
import re
from pathlib import Path

from memory.store_format import FORMAT
from gthreadd.spec.resource import ModelResource


def conversion_key(resource: ModelResource, checkpoint: Path) -> str:
    spec = resource.spec
    files = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in checkpoint.iterdir() if p.is_file())
    inputs = {"format": FORMAT, "modelName": spec.model_name, "revision": spec.revision, "checkpoint": str(checkpoint),
              "files": files, "dtype": spec.dtype.value, "quantization": spec.quantization.value}
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    readable = re.sub(r"[^a-z0-9]+", "-", spec.model_name.rstrip("/").rsplit("/", 1)[-1].lower()).strip("-")
    return f"{readable}-{digest}"
