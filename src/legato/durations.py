"""Durations as people write them: ``30s``, ``5m``, ``1h30m``, ``250ms`` or a number of seconds."""

from __future__ import annotations

import math
import re
from datetime import timedelta

__all__ = ["parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
#: the longest duration taken (100 years): a time that far ahead is still a time
#: both databases can hold, so a timer, lease or timeout never overflows a query
MAX_SECONDS = 100 * 365.25 * 86400


def parse_duration(
    value: str | float | int | timedelta | None,
    *,
    field: str = "duration",
    allow_zero: bool = True,
) -> float | None:
    """Return seconds as a float; ``None`` stays ``None``.

    Raises ``ValueError`` naming ``field`` when the value is not a duration, is
    negative, is not finite (``inf``, ``nan``, ``1e999``), is longer than 100
    years, or, with
    ``allow_zero=False`` (where zero would mean nothing, such as a timeout), is
    zero, so callers can report where the bad value was written.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a duration such as '30s', got {value!r}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(
                    f"{field}: expected a duration such as '30s', '5m', '1h30m' "
                    f"or a number of seconds, got {value!r}"
                ) from None
    else:
        raise ValueError(f"{field}: expected a duration such as '30s', got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"{field}: a duration must be a finite number of seconds, got {value!r}")
    if seconds < 0:
        raise ValueError(f"{field}: a duration cannot be negative, got {value!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{field}: a duration can be at most 100 years, got {value!r}")
    if seconds == 0 and not allow_zero:
        raise ValueError(f"{field}: a duration must be more than zero, got {value!r}")
    return seconds
