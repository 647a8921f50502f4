"""Read Model manifests from YAML files, with errors that point at the file, document, field and line.

A file is the unit of change: if any document in it is invalid, none of it is taken, so the
daemon keeps that file's last good version (see desired.py).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from gthreadd.spec.resource import API_VERSION, KIND, ModelResource

YAML_SUFFIXES = (".yaml", ".yml")
MAX_MANIFEST_BYTES = 1024 * 1024
"""Far above any real Model file; a file this large is a mistake (or an attack on the parser)."""


@dataclass(frozen=True)
class ManifestError:
    file: str
    message: str
    document: Optional[int] = None
    field: str = ""
    line: Optional[int] = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        doc = f" (document {self.document})" if self.document is not None else ""
        field = f" {self.field}:" if self.field else ""
        return f"{where}{doc}:{field} {self.message}"


@dataclass(frozen=True)
class ParsedFile:
    path: str
    models: tuple[ModelResource, ...]
    errors: tuple[ManifestError, ...]


def is_manifest(path: Path) -> bool:
    """YAML files only; dotfiles and editor leftovers (`.x.swp`, `x~`, `#x#`) are not manifests."""
    name = path.name
    return name.endswith(YAML_SUFFIXES) and not name.startswith((".", "#")) and not name.endswith("~")


def load_file(path: Path) -> ParsedFile:
    """A models.d file; a symlink out of its directory, or a file too large to be a Model, is an error."""
    path = Path(path)
    try:
        target = path.resolve()
        if path.is_symlink() and path.parent.resolve() not in target.parents:
            return ParsedFile(str(path), (), (ManifestError(str(path), f"a symlink out of {path.parent} (to {target}): "
                                                                       "refused; copy the file in instead"),))
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            return ParsedFile(str(path), (), (ManifestError(str(path), f"{size} bytes: a Model file is at most "
                                                                       f"{MAX_MANIFEST_BYTES} bytes"),))
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return ParsedFile(str(path), (), (ManifestError(str(path), f"cannot read: {exc}"),))
    return parse_text(text, str(path))


def parse_text(text: str, source: str) -> ParsedFile:
    models: list[ModelResource] = []
    errors: list[ManifestError] = []
    try:
        documents = list(compose_documents(text))
    except yaml.YAMLError as exc:
        return ParsedFile(source, (), (yaml_error(exc, source),))

    names: dict[str, int] = {}
    for index, (node, data) in enumerate(documents):
        if data is None:
            continue
        line = node.start_mark.line + 1
        if not isinstance(data, dict):
            errors.append(ManifestError(source, "expected a mapping (a Model resource)", index, line=line))
            continue
        if data.get("apiVersion") != API_VERSION or data.get("kind") != KIND:
            errors.append(ManifestError(
                source,
                f"expected apiVersion: {API_VERSION} and kind: {KIND}, "
                f"got apiVersion: {data.get('apiVersion')!r}, kind: {data.get('kind')!r}",
                index, line=line,
            ))
            continue
        try:
            model = ModelResource.model_validate(data)
        except ValidationError as exc:
            errors.extend(validation_errors(exc, source, index, node))
            continue
        if model.metadata.name in names:
            errors.append(ManifestError(
                source, f"Model {model.metadata.name!r} is already defined in document {names[model.metadata.name]}",
                index, "metadata.name", line_of(node, ("metadata", "name")),
            ))
            continue
        names[model.metadata.name] = index
        models.append(model)
    return ParsedFile(source, tuple(models), tuple(errors))


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser where PyYAML was built with it: 1,000 files parse in a fraction of the time."""


def yaml_error(exc: yaml.YAMLError, source: str) -> ManifestError:
    """What the YAML parser found wrong, at its line."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark:
        problem += f" ({context} that starts on line {context_mark.line + 1})"
    return ManifestError(source, f"invalid YAML: {problem}", line=mark.line + 1 if mark else None)


def compose_documents(text: str):
    """Each YAML document's node (for the lines of its fields) and its data."""
    loader = _LOADER(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            yield node, loader.construct_document(node)
    finally:
        loader.dispose()


def validation_errors(exc: ValidationError, source: str, index: Optional[int], node: yaml.Node) -> list[ManifestError]:
    """pydantic's errors as the file, document, field and line they concern."""
    out = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "required field is missing"
        out.append(ManifestError(source, message, index, _dotted(loc), line_of(node, loc)))
    return out


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def line_of(node: yaml.Node, loc: tuple[Any, ...]) -> int:
    """The line of the deepest node that `loc` reaches (a key's line for mapping entries)."""
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
