"""Durations as people write them (``30s``, ``7d``) and as Go prints them (``1h0m5s``)."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def format_go_duration(seconds: float) -> str:
    """Whole seconds in Go's ``time.Duration.String`` style: ``0s``, ``45s``, ``5m32s``, ``1h0m5s``."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``0``, ``90s``, ``15m``, ``1h30m``, ``7d``. Raises ``ValueError`` otherwise."""
    text = text.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 1h30m or 7d")
    return total
