"""Durations as authors write them: 90s, 30m, 48h, 2d, 1w."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
WRITTEN = re.compile(r"[\"']?(\d+\s*[smhdw])(?![A-Za-z0-9])")  # a duration where a file spells it


def parse_duration(text: str) -> int | None:
    """Seconds in a duration like '48h', or None when the text is not a duration."""
    match = _DURATION.match(str(text))
    if not match:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: int) -> str:
    """The shortest exact spelling: 172800 -> '2d', 5400 -> '90m'."""
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
