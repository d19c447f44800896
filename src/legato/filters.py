"""The filters legato adds to ``${{ ... | filter }}`` expressions: dates, JSON, coercions.

Values in a run are JSON, so dates and times are ISO 8601 text; these filters
read such text (or the ``date``/``datetime`` objects another filter made) and
give JSON back. Each refuses what it cannot read with a ``TypeError`` or
``ValueError`` saying what it expected; the expression's evaluation turns that
into a :class:`~legato.errors.TemplateError` naming the expression.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

__all__ = [
    "BUILTIN_FILTERS",
    "fmt",
    "from_json",
    "to_bool",
    "to_date",
    "to_datetime",
    "to_json_text",
]

_TRUE = frozenset({"true", "yes", "on", "1", "y"})
_FALSE = frozenset({"false", "no", "off", "0", "n", ""})


def fmt(value: Any, fmt: str = "%Y-%m-%d") -> str:
    """A date or time as ``strftime`` writes it: ``${{ params.day | fmt(fmt='%Y%m%d') }}``."""
    if not isinstance(fmt, str):
        raise TypeError(f"fmt: the format must be text such as '%Y-%m-%d', got {fmt!r}")
    return _moment(value, "fmt").strftime(fmt)


def to_date(value: Any) -> date:
    """A date from ISO text (``2024-05-01``, or the date of ``2024-05-01T10:00:00``)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return _moment(value, "date").date()


def to_datetime(value: Any) -> datetime:
    """A date and time from ISO 8601 text; an offset, when given, is kept."""
    return _moment(value, "datetime")


def to_json_text(value: Any) -> str:
    """Compact JSON text (dates as ISO text), unlike ``tojson`` escaping nothing for HTML."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def from_json(value: Any) -> Any:
    """The value JSON text holds: ``${{ steps.cli.output.stdout | from_json }}``."""
    if not isinstance(value, str | bytes):
        raise TypeError(f"from_json needs JSON text, got {_described(value)}")
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ValueError(f"from_json: the text is not JSON ({exc})") from None


def to_bool(value: Any) -> bool:
    """``true``/``false`` from text as people write it (yes/no, on/off, 1/0) or a value.

    Text it cannot read is an error rather than a guess: ``"maybe"`` is refused.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(
            f"bool: cannot read {value[:100]!r} as true or false "
            "(write true/false, yes/no, on/off or 1/0)"
        )
    if value is None or isinstance(value, bool | int | float | list | dict):
        return bool(value)
    raise TypeError(f"bool needs text, a number, a list or a mapping, got {_described(value)}")


def _moment(value: Any, name: str) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if not isinstance(value, str):
        raise TypeError(
            f"{name} needs a date, a datetime or ISO 8601 text such as '2024-05-01', "
            f"got {_described(value)}"
        )
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{name}: {value[:100]!r} is not an ISO 8601 date or time "
            "(such as 2024-05-01 or 2024-05-01T09:30:00+00:00)"
        ) from None


def _json_default(value: Any) -> Any:
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    raise TypeError(f"json: {_described(value)} is not JSON")


def _described(value: Any) -> str:
    return f"{type(value).__name__} {repr(value)[:100]}"


#: legato's filters by name, beside Jinja's own (``default``, ``int``, ``join``, ...)
BUILTIN_FILTERS: dict[str, Callable[..., Any]] = {
    "bool": to_bool,
    "date": to_date,
    "datetime": to_datetime,
    "fmt": fmt,
    "from_json": from_json,
    "json": to_json_text,
}
