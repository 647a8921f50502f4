"""models.d as a whole -> the desired set of Models, swapped in at once.

Rules: a file with any error contributes its last good version (or nothing, if it never had one);
a Model name (its URL path, `/<name>/v1`) belongs to one file at a time, and a second definition
is rejected, the current owner keeping it; a deleted file takes its Models with it.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gthreadd.spec.manifests import ManifestError, ParsedFile, is_manifest, load_file
from gthreadd.spec.resource import ModelResource


@dataclass(frozen=True)
class DesiredModel:
    resource: ModelResource
    source: str


@dataclass(frozen=True)
class DesiredState:
    models: dict[str, DesiredModel] = field(default_factory=dict)
    """By metadata.name."""
    last_good: dict[str, tuple[ModelResource, ...]] = field(default_factory=dict)
    """By file path: what each file last contributed without errors."""
    errors: tuple[ManifestError, ...] = ()

    def errors_for(self, source: str) -> tuple[ManifestError, ...]:
        return tuple(e for e in self.errors if e.file == source)


def scan_directory(directory: Path) -> list[ParsedFile]:
    if not directory.is_dir():
        return []
    return [load_file(path) for path in sorted(directory.iterdir()) if path.is_file() and is_manifest(path)]


def build_desired(files: Iterable[ParsedFile], previous: DesiredState) -> DesiredState:
    files = sorted(files, key=lambda f: f.path)
    last_good: dict[str, tuple[ModelResource, ...]] = {}
    errors: list[ManifestError] = []
    for parsed in files:
        errors.extend(parsed.errors)
        last_good[parsed.path] = previous.last_good.get(parsed.path, ()) if parsed.errors else parsed.models

    owner: dict[str, str] = {}
    for name, held in previous.models.items():
        if any(m.metadata.name == name for m in last_good.get(held.source, ())):
            owner[name] = held.source
    models: dict[str, DesiredModel] = {}
    for path, resources in last_good.items():
        for resource in resources:
            name = resource.metadata.name
            owner.setdefault(name, path)
            if owner[name] == path:
                models[name] = DesiredModel(resource, path)
            else:
                errors.append(ManifestError(
                    path,
                    f"Model {resource.metadata.namespace}/{name} is already defined in {owner[name]}; "
                    "this definition is ignored (Model names are URL paths and must be unique on a host)",
                    field="metadata.name",
                ))
    return DesiredState(dict(sorted(models.items())), last_good, tuple(errors))
