"""Durations in the config: `90s`, `10m`, `24h`, `7d`, or a number of seconds.

A duration is finite and at most 100 years: YAML's `.nan` and `.inf` (or `1e999`) are
floats that compare false with everything, and huge values overflow timers and date
arithmetic; none of them is what anyone means.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
MAX_DURATION = 36500 * 86400.0  # 100 years


def parse_duration(value: object) -> float:
    """Seconds in `value`; raises ValueError with an example of what is accepted."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 10m, 24h or 7d")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float
            seconds = math.inf
    else:
        match = _DURATION.match(str(value))
        if not match:
            shown = str(value) if len(str(value)) <= 40 else f"{str(value)[:39]}…"
            raise ValueError(f"'{shown}' is not a duration: write e.g. 30s, 10m, 24h or 7d")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if math.isnan(seconds):
        raise ValueError("a duration must be a number of seconds, not NaN: write e.g. 30s or 24h")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    if seconds > MAX_DURATION:
        raise ValueError("a duration must be at most 100 years (36500d): write e.g. 24h or 7d")
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "description": "a duration: 30s, 10m, 24h, 7d, or seconds",
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"},
            ],
        }
    ),
]
