"""Which tier a converted model's weights are read from, per host and per load.

The host tier when the model is resident there (one copy from registered memory); on a miss,
KvikIO straight into device memory when the engine runs on a GPU, KvikIO is installed and the
manifest carries device sums to verify with; else the O_DIRECT disk tier with its CRC32s. The
daemon decides, the loader in the engine process follows, and status and /metrics report it.
"""

from enum import StrEnum


class ReadPath(StrEnum):
    host_tier = "host-tier"
    kvikio = "kvikio"
    disk = "disk"


def on_miss(on_gpu: bool, kvikio_installed: bool, device_sums: bool) -> ReadPath:
    """Where a load reads from when the host tier does not hold the model."""
    return ReadPath.kvikio if on_gpu and kvikio_installed and device_sums else ReadPath.disk


def read_path(resident: bool, miss: ReadPath) -> ReadPath:
    return ReadPath.host_tier if resident else miss
