"""The API keys file (`apiKeysFile`): who may use which model, at what rate, and who may read the
daemon's own views. YAML, a list of entries; it never holds a key, only its SHA-256 digest
(`gthread keys hash` prints one). Errors name the file, line and field, as models.d's do; a bad
file is refused whole, and the daemon keeps the last good one.

    - name: team-a            # shown in metrics and logs
      sha256: 5e88...          # hex digest of the key
      models: [llama-*, whisper]
      requestsPerMinute: 600
      tokensPerMinute: 200000
      maxConcurrent: 16
    - name: ops
      sha256: 9f86...
      admin: true             # /metrics, /status, /apis/..., /ui
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from gthreadd.spec.manifests import ManifestError, compose_documents, line_of, validation_errors, yaml_error

MAX_KEYS_FILE_BYTES = 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)

    name: str
    sha256: str
    models: tuple[str, ...] = ("*",)
    """Model names, or shell-style globs (`llama-*`), the key may use: by a Model's name, or its
    modelName, as a request may name it."""
    requests_per_minute: Optional[int] = Field(None, gt=0)
    tokens_per_minute: Optional[int] = Field(None, gt=0)
    """Prompt and generated tokens, as vLLM counts them, charged when a request finishes."""
    max_concurrent: Optional[int] = Field(None, gt=0)
    """Requests in flight at once, waiting for a wake included."""
    admin: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r}: letters, digits, '.', '_' and '-', at most 63 (it labels metrics)")
        return value

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DIGEST.match(value):
            raise ValueError("expected the key's SHA-256 digest, 64 hex digits (gthread keys hash prints it); "
                             "the file never holds a key itself")
        return value


_ENTRIES = TypeAdapter(list[KeyEntry])


@dataclass(frozen=True)
class ParsedKeys:
    path: str
    entries: tuple[KeyEntry, ...]
    errors: tuple[ManifestError, ...]


def load_keys(path: Path) -> ParsedKeys:
    source = str(path)
    try:
        size = Path(path).stat().st_size
        if size > MAX_KEYS_FILE_BYTES:
            return ParsedKeys(source, (), (ManifestError(source, f"{size} bytes: a keys file is at most "
                                                                 f"{MAX_KEYS_FILE_BYTES} bytes"),))
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return ParsedKeys(source, (), (ManifestError(source, f"cannot read: {exc}"),))
    return parse_keys(text, source)


def parse_keys(text: str, source: str) -> ParsedKeys:
    try:
        documents = list(compose_documents(text))
    except yaml.YAMLError as exc:
        return ParsedKeys(source, (), (yaml_error(exc, source),))
    documents = [(node, data) for node, data in documents if data is not None]
    if len(documents) != 1 or not isinstance(documents[0][1], list):
        line = documents[0][0].start_mark.line + 1 if documents else None
        return ParsedKeys(source, (), (ManifestError(source, "expected one YAML list of keys (name, sha256, models, "
                                                             "limits, admin)", line=line),))
    node, data = documents[0]
    try:
        entries = _ENTRIES.validate_python(data)
    except ValidationError as exc:
        return ParsedKeys(source, (), tuple(validation_errors(exc, source, None, node)))
    errors = []
    for field in ("name", "sha256"):
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            value = getattr(entry, field)
            if value in seen:
                errors.append(ManifestError(source, f"the same {field} as entry {seen[value]}", None,
                                            f"[{index}].{field}", line_of(node, (index, field))))
            seen.setdefault(value, index)
    return ParsedKeys(source, () if errors else tuple(entries), tuple(errors))
