"""A Model's LoRA adapters: checked before an engine sees them, fetched when named by repo id.

vLLM's runtime adapters live in its engine and are forgotten with it; the Model remembers them
(runtime/served_model.py) and loads them again into every engine it boots or wakes.
"""

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

CONFIG = "adapter_config.json"


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
        path = await asyncio.wait_for(asyncio.to_thread(
            snapshot_download, source, cache_dir=cache_dir or None, local_files_only=offline), timeout_s)
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
