"""Sizes as Kubernetes writes them (`16Gi`, `512Mi`, `20G`), or a share of the host's RAM (`40%`),
as a pydantic field type. Kept as written, resolved to bytes where it is used, so `-o yaml` and
error messages show what the user wrote; and bytes written back for people (`4.9 GiB`)."""

import re
from typing import Annotated

from pydantic import AfterValidator

_SUFFIX = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)(%|Ki|Mi|Gi|Ti|k|M|G|T)?")


def parse_size(value: str, total: int) -> int:
    """Bytes; a percentage is of `total`."""
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"expected a size such as 16Gi, 512Mi, 20G or 40%, got {value!r}")
    number, unit = float(match.group(1)), match.group(2) or ""
    if unit == "%":
        if number > 100:
            raise ValueError(f"a share of memory is at most 100%, got {value!r}")
        return int(total * number / 100)
    return int(number * _SUFFIX[unit])


def _valid(value: str) -> str:
    parse_size(value, 0)
    return value


ByteSize = Annotated[str, AfterValidator(_valid)]


def human_bytes(n: int | None) -> str:
    if not n:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    raise AssertionError("unreachable")
