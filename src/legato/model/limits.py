"""Flow limits: how many attempts of a task may run at once, and start per window.

A limit is counted per task name, or per task name and the value of one
keyword argument of the call (``concurrency_key``), across every worker: the
store enforces it in the claim transaction (see ``legato.store.limits``).
This module only parses and checks the settings, where they enter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from legato.durations import parse_duration

__all__ = ["FlowLimits", "check_concurrency", "check_concurrency_key", "parse_rate_limit"]

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


#: the largest limit taken: what both databases hold as an integer
MAX_COUNT = 2**31 - 1


def parse_rate_limit(value: Any, *, field: str = "rate_limit") -> tuple[int, float] | None:
    """``"100/10s"`` as (100 starts, 10.0 seconds); ``None`` stays ``None``.

    Raises ``ValueError`` naming ``field`` for anything else: a count that is
    not a whole number of at least 1, a window that is not a positive duration.
    """
    if value is None:
        return None
    shape = "expected '<starts>/<window>' such as '100/10s' or '5/1m'"
    if not isinstance(value, str):
        raise ValueError(f"{field}: {shape}, got {value!r}")
    match = _RATE.match(value)
    if match is None:
        raise ValueError(f"{field}: {shape}, got {value!r}")
    count = int(match.group(1))
    if count < 1:
        raise ValueError(f"{field}: at least 1 start per window, got {value!r}")
    if count > MAX_COUNT:
        raise ValueError(f"{field}: at most {MAX_COUNT:,} starts per window, got {value!r}")
    window_text = match.group(2)
    if window_text[0].isalpha():  # "5/s": one of the unit
        window_text = "1" + window_text
    try:
        window = parse_duration(window_text, field=field, allow_zero=False)
    except ValueError:
        raise ValueError(f"{field}: {shape}, got {value!r}") from None
    assert window is not None
    return count, window


def check_concurrency(value: Any, *, field: str = "concurrency") -> int | None:
    """A concurrency limit: a whole number from 1 to ``MAX_COUNT``, or ``None`` for none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        raise ValueError(
            f"{field}: expected a whole number of at least 1 and at most {MAX_COUNT:,}, "
            f"got {value!r}"
        )
    return value


def check_concurrency_key(value: Any, *, field: str = "concurrency_key") -> str | None:
    """The name of the keyword argument whose value keys the limits, or ``None``."""
    if value is None:
        return None
    if not isinstance(value, str) or not _KEY.match(value):
        raise ValueError(
            f"{field}: expected the name of one of the task's parameters, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class FlowLimits:
    """A task call's limits, as the store enforces them.

    ``concurrency``: at most this many attempts running at once; ``rate``:
    at most ``count`` attempts started per ``window`` seconds; both counted
    per task, or per task and the value of the ``key`` argument.
    """

    concurrency: int | None = None
    key: str | None = None
    rate: tuple[int, float] | None = None

    @classmethod
    def of(
        cls, concurrency: Any = None, key: Any = None, rate_limit: Any = None
    ) -> FlowLimits | None:
        """Checked limits, or ``None`` when none is set (a key alone limits nothing)."""
        limits = cls(
            concurrency=check_concurrency(concurrency),
            key=check_concurrency_key(key),
            rate=parse_rate_limit(rate_limit),
        )
        return limits if limits.limited else None

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.rate is not None

    def over(self, other: FlowLimits | None) -> FlowLimits:
        """These limits, with what is unset here taken from ``other`` (a task's)."""
        if other is None:
            return self
        return FlowLimits(
            concurrency=self.concurrency if self.concurrency is not None else other.concurrency,
            key=self.key if self.key is not None else other.key,
            rate=self.rate if self.rate is not None else other.rate,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "key": self.key,
            "rate": None if self.rate is None else list(self.rate),
        }

    @classmethod
    def from_json(cls, data: Any) -> FlowLimits | None:
        if not isinstance(data, dict):
            return None
        rate = data.get("rate")
        limits = cls(
            concurrency=data.get("concurrency"),
            key=data.get("key"),
            rate=None if not rate else (int(rate[0]), float(rate[1])),
        )
        return limits if limits.limited else None
