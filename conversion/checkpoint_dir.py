"""A checkpoint directory that appears only once complete: built in a temporary sibling, each file
fsynced and readable by others (the daemon's user, a container's), then renamed into place. Both
offline checkpoints (gguf_checkpoint.py, whisper_ct2.py) are written through it."""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def building(out_dir: Path) -> Iterator[Path]:
    """The temporary directory to write into; on a clean exit it becomes `out_dir`, on an error it
    is removed."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
        for path in tmp.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            path.chmod(0o644)  # safetensors writes 0600
        tmp.chmod(0o755)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
