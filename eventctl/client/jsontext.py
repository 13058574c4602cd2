"""JSON text as eventctl writes and reads it: orjson's speed, with integers of any size kept exact."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_LONG_DIGITS = re.compile(rb"\d{19}")


def dumps(value: Any) -> bytes:
    """JSON text of ``value``; integers of any size are kept (orjson stops at 64 bits)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def loads(content: bytes) -> Any:
    """The JSON value of ``content``, integers exact whatever their size (orjson turns long ones into
    floats, so text with a run of 19 digits is parsed again by the standard library)."""
    value = orjson.loads(content)
    if _LONG_DIGITS.search(content):
        value = json.loads(content)
    return value
