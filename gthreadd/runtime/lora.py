"""A Model's LoRA adapters: checked before an engine sees them, fetched when named by repo id.

vLLM's runtime adapters live in its engine and are forgotten with it; the Model remembers them
(runtime/served_model.py), in an AdapterFile across daemon restarts, and loads them again into
every engine it boots or wakes.
"""

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

CONFIG = "adapter_config.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdapterError(Exception):
    status: int
    message: str

    def __str__(self) -> str:
        return self.message


async def fetch_adapter(source: str, cache_dir: str, timeout_s: float) -> Path:
    """A local directory as it is; anything else is a Hugging Face repo id, fetched into cache_dir
    (the hub's cache when empty) within timeout_s, or found there when HF_HUB_OFFLINE is set."""
    local = Path(source.removeprefix("file://"))
    if source.startswith(("file://", "/", ".")):
        if not local.is_dir():
            raise AdapterError(404, f"no LoRA adapter directory at {local}")
        return local
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    try:
        async with asyncio.timeout(timeout_s):
            path = await asyncio.to_thread(snapshot_download, source, cache_dir=cache_dir or None,
                                           local_files_only=offline)
    except TimeoutError:
        raise AdapterError(504, f"fetching LoRA adapter {source} took longer than spec.lora.downloadTimeout "
                                f"({timeout_s:g}s)") from None
    except (LocalEntryNotFoundError, HFValidationError) as exc:
        where = "in the local cache (HF_HUB_OFFLINE is set)" if offline else "on the hub"
        raise AdapterError(404, f"LoRA adapter {source} is not {where}: {exc}") from None
    except OSError as exc:
        raise AdapterError(502, f"fetching LoRA adapter {source}: {exc}") from None
    return Path(path)


def check_adapter(path: Path, max_rank: int) -> None:
    """A PEFT LoRA adapter directory whose rank the engine was started to take."""
    try:
        config = json.loads((path / CONFIG).read_text())
    except FileNotFoundError:
        raise AdapterError(400, f"{path} is not a LoRA adapter: it has no {CONFIG}") from None
    except (OSError, ValueError) as exc:
        raise AdapterError(400, f"{path / CONFIG}: {exc}") from None
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise AdapterError(400, f"{path / CONFIG}: 'r' (the adapter's rank) is {rank!r}")
    if rank > max_rank:
        raise AdapterError(400, f"LoRA adapter {path} has rank {rank}, above spec.lora.maxRank ({max_rank})")


class AdapterFile:
    """The adapters a Model has loaded, name -> directory, kept in a file of the daemon's state
    (STATE_DIR/lora/<model>.json) so that a daemon restart loads them again as a wake does. A file
    that cannot be read is reported and treated as empty: an adapter list never stops a Model."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict[str, str]:
        try:
            adapters = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s: %s; the Model's LoRA adapters are forgotten", self.path, exc)
            return {}
        if not isinstance(adapters, dict) or not all(isinstance(v, str) for v in adapters.values()):
            log.warning("%s: expected a mapping of adapter names to directories; ignored", self.path)
            return {}
        return adapters

    def write(self, adapters: dict[str, str]) -> None:
        if not adapters:
            self.remove()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.tmp")
        partial.write_text(json.dumps(adapters, indent=1, sort_keys=True))
        os.replace(partial, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
