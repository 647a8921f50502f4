"""The daemon's settings: one definition per option, read from the config file and overridden by
command-line flags that are generated from the same fields."""

import argparse
import os
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from gthreadd.spec.byte_size import ByteSize, parse_size
from memory.host_limit import filesystem_bytes, memory_limit
from gthreadd.spec.duration import Duration

DEFAULT_CONFIG = Path("/etc/gthread/gthreadd.yaml")


class SettingsError(ValueError):
    pass


class DaemonSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    listen: str = Field("127.0.0.1:8000", description="HOST:PORT of the OpenAI-compatible API")
    models_dir: Path = Field(Path("/etc/gthread/models.d"), description="directory of Model manifests")
    state_dir: Path = Field(Path("/var/lib/gthread"), description="daemon state: built checkpoints, caches")
    model_store: Optional[Path] = Field(None, description="converted models (loadFormat gthread); meant for "
                                        "NVMe. Default: STATE_DIR/models")
    host_tier_dir: Path = Field(Path("/dev/shm/gthread"), description="tmpfs directory for the host tier: "
                                "converted weights held in shared memory for fast wakes")
    host_tier_size: ByteSize = Field("40%", description="the host tier's budget: a size (64Gi) or a share of "
                                     "the host memory limit (40%%), and never more than hostTierDir's filesystem; "
                                     "least recently used unpinned models are evicted past it")
    host_memory_limit: ByteSize = Field("95%", description="host memory that engines (awake and asleep), the host "
                                        "tier and the daemon may hold in all: a size or a share of RAM, or of the "
                                        "daemon's memory cgroup limit where that is lower (a pod's limit, "
                                        "MemoryMax=). Past it the least recently used sleeping engines are stopped")
    max_sleeping_engines: int = Field(0, ge=0, description="at most this many engines asleep at once; more, and the "
                                      "least recently used are stopped (a request starts them cold). 0: no limit")
    control_socket: Optional[Path] = Field(None, description="unix socket for administration (gthread apply, "
                                           "delete, sleep, wake); its file mode decides who may use it. Default: "
                                           "$RUNTIME_DIRECTORY/gthreadd.sock under systemd, else STATE_DIR/gthreadd.sock")
    api_keys: list[SecretStr] = Field([], description="Bearer keys the TCP port accepts; empty: no keys needed. "
                                      "Config file only: a flag would show them in ps", json_schema_extra={"flag": False})
    api_keys_file: Optional[Path] = Field(None, description="a YAML list of keys (their SHA-256 digests), each with "
                                          "the models it may use, its rate limits and whether it may read the "
                                          "daemon's views; read again on change and on SIGHUP. Beside apiKeys")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log verbosity")
    rescan_interval: Duration = Field("30s", validate_default=True,
                                      description="rescan models.d this often even without file events")
    cpu_memory_share: float = Field(0.5, gt=0, le=1, description="without GPUs: the share of the CPU "
                                    "device's memory (NUMA node 0, or the cgroup limit where lower) that models "
                                    "may claim in all, sleeping engines' residue included")
    shutdown_timeout: Duration = Field("30s", validate_default=True,
                                       description="on SIGTERM, how long requests in flight may finish and "
                                       "engine boots settle before they are cancelled; stopping the engines "
                                       "then takes 30 s at most, and a second signal exits at once")
    max_request_bytes: ByteSize = Field("16Mi", description="the largest request body the port accepts "
                                        "(then 413): a size such as 16Mi")
    queue_limit: int = Field(256, ge=1, description="requests that may wait for a sleeping model (then 429)")
    prewake: bool = Field(True, description="when nothing waits, wake the model most likely to be asked next "
                          "into free memory (periodic traffic a wake ahead of its next request); false: off")
    queue_timeout: Duration = Field("5m", validate_default=True,
                                    description="how long a request waits for its model to wake (then 503)")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host_port(value)
        return value

    @property
    def store(self) -> Path:
        return self.model_store or self.state_dir / "models"

    @property
    def socket_path(self) -> Path:
        if self.control_socket is not None:
            return self.control_socket
        runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
        return Path(runtime) / "gthreadd.sock" if runtime else self.state_dir / "gthreadd.sock"

    @property
    def host_tier_bytes(self) -> int:
        budget = parse_size(self.host_tier_size, memory_limit())
        room = filesystem_bytes(self.host_tier_dir)
        return min(budget, room) if room is not None else budget

    @property
    def host_limit_bytes(self) -> int:
        return parse_size(self.host_memory_limit, memory_limit())

    @property
    def request_bytes(self) -> int:
        return parse_size(self.max_request_bytes, 0)

    @property
    def host(self) -> str:
        return host_port(self.listen)[0]

    @property
    def port(self) -> int:
        return host_port(self.listen)[1]


def host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8000, got {value!r}")
    return host.strip("[]"), int(port)


def add_flags(parser: argparse.ArgumentParser) -> None:
    for name, field in DaemonSettings.model_fields.items():
        if (field.json_schema_extra or {}).get("flag") is False:
            continue
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None, help=field.description)


def load_settings(config: Optional[Path], args: argparse.Namespace) -> DaemonSettings:
    """Config file (explicit, or the default one where it exists), then flags on top."""
    values: dict = {}
    path = config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    if path is not None:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"{path}: {exc}") from None
        if not isinstance(values, dict):
            raise SettingsError(f"{path}: expected a mapping of settings")
    for name in DaemonSettings.model_fields:
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    try:
        return DaemonSettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise SettingsError(f"{path or 'command line'}: {problems}") from None
