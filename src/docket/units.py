"""Durations and sizes in configuration and flags.

Durations: `0`, `30s`, `5m`, `24h`, `1h30m`, `500ms`. Sizes: bytes as an integer, or
`512KiB`, `4MiB`, `1GiB` (binary units).
"""

from __future__ import annotations

import math
import re

_SIZE_RE = re.compile(r"\s*([0-9]{1,19})\s*(B|KiB|MiB|GiB|TiB)?\s*")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Return a duration in seconds, raising ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative and must be finite")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}")
    text = value.strip()
    if text == "0":
        return 0.0
    position = 0
    total = 0.0
    for match in _PART_RE.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text) or not text or not math.isfinite(total):
        raise ValueError(f"invalid duration {value!r}: use a number with a unit such as 30s, 5m, 24h or 1h30m, or 0")
    return total


def format_duration(seconds: float) -> str:
    if seconds == 0:
        return "0"
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds}s"


def parse_size(value: object) -> int:
    """Return a size in bytes, raising ValueError with the accepted forms."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _SIZE_RE.fullmatch(value)
        if match is not None:
            return int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    raise ValueError(f"invalid size {value!r}; expected bytes as an integer or a string such as '64MiB'")
