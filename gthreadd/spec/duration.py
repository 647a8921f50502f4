"""Kubernetes-style durations (`30s`, `5m`, `1h30m`) as a pydantic field type.

Parsed into `timedelta` so the rest of the daemon does arithmetic, and written back in the
same compact form so `-o yaml` shows what the user wrote.
"""

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a duration such as 30s, 5m, 1h or 1h30m, got {value!r}")
    pos, seconds = 0, 0.0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value):
        raise ValueError(f"expected a duration such as 30s, 5m, 1h or 1h30m, got {value!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if millis:
        out += f"{seconds}.{millis:03d}".rstrip("0") + "s" if seconds else f"{millis}ms"
    elif seconds:
        out += f"{seconds}s"
    return out


PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
"""What parse_duration accepts, for the CRD's schema: the API server refuses "-5s" or "ten minutes"
at `kubectl apply`, as the daemon would."""

Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str),
                     WithJsonSchema({"type": "string", "pattern": PATTERN}, mode="validation")]
