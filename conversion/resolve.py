"""Resolve `spec.modelName` to a local Hugging Face-format directory.

Accepted: `file:///abs/dir`, `/abs/dir`, or a Hugging Face repo id. Repo ids are fetched with
huggingface-hub (HF_TOKEN is read by the library itself, never by us, so it cannot leak into our
logs); when the hub cannot be reached, the local Hugging Face cache is used.
"""

import logging
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

# What vLLM needs to load a checkpoint; skips the duplicate .bin/.pt/.gguf files many repos carry.
_ALLOW = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]


class SourceError(RuntimeError):
    """modelName cannot be resolved to a usable checkpoint."""


def is_local(model_name: str) -> bool:
    return model_name.startswith("file://") or model_name.startswith("/")


def resolve_source(model_name: str, revision: Optional[str] = None) -> Path:
    """Blocking (may download): call it off the event loop."""
    if is_local(model_name):
        path = Path(model_name.removeprefix("file://"))
        if not (path / "config.json").is_file():
            raise SourceError(f"{path} is not a Hugging Face model directory (no config.json)")
        return path
    return _from_hub(model_name, revision)


def _from_hub(repo_id: str, revision: Optional[str]) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=_ALLOW))
    except HFValidationError as exc:
        raise SourceError(f"{repo_id!r} is neither a Hugging Face repo id nor an absolute path: {exc}") from None
    except LocalEntryNotFoundError:
        # Offline (HF_HUB_OFFLINE) and not in the cache: nothing else to try.
        raise SourceError(f"{repo_id} is not in the local Hugging Face cache and the hub is offline") from None
    except Exception as exc:  # network failures come as many types; the cache is the fallback for all
        log.warning("cannot reach the Hugging Face hub for %s (%s); trying the local cache", repo_id, type(exc).__name__)
        try:
            return Path(snapshot_download(repo_id, revision=revision, allow_patterns=_ALLOW, local_files_only=True))
        except Exception:
            raise SourceError(f"cannot download {repo_id} ({exc}) and it is not in the local Hugging Face cache") from None
