"""Values the client takes, checked where they enter: durations, points in time, tags
and run ids. Each bad value is one :class:`~legato.ParamError` naming the argument."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from legato.durations import parse_duration
from legato.errors import ParamError, RunNotFoundError
from legato.payload import to_json

__all__ = [
    "logical_date_option",
    "moment_option",
    "run_id_option",
    "seconds_option",
    "tags_option",
]


def seconds_option(value: Any, name: str, *, allow_zero: bool = True) -> float | None:
    """A number of seconds or a duration, checked: finite, not negative (not zero if asked)."""
    try:
        return parse_duration(value, field=name, allow_zero=allow_zero)
    except ValueError as exc:
        raise ParamError(str(exc)) from None


def logical_date_option(value: datetime | date | str | None) -> datetime | None:
    """A run's logical date as an aware UTC datetime; text is ISO 8601, naive means UTC."""
    return moment_option(value, "logical_date")


def moment_option(value: datetime | date | str | None, name: str) -> datetime | None:
    """A point in time given as ``name``, as an aware UTC datetime: a datetime, a date or
    ISO 8601 text, read as UTC without an offset."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ParamError(
                f"{name} {value!r} is not an ISO 8601 date or time "
                "(2024-05-01, 2024-05-01T06:00:00+02:00)"
            ) from None
    elif not isinstance(value, datetime):
        if not isinstance(value, date):
            raise ParamError(
                f"{name} must be a datetime, a date or ISO 8601 text, got {type(value).__name__}"
            )
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def run_id_option(value: Any) -> str:
    """A full run id (text or a ``uuid.UUID``) in its stored form."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise RunNotFoundError(f"no run with id {value!r} (not a run id)") from None


def tags_option(tags: Mapping[str, str] | None) -> dict[str, str]:
    """A run's tags: text keys and values, as JSON."""
    if not tags:
        return {}
    bad = [k for k, v in tags.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ParamError(f"tags are text keys and values; these are not: {bad!r}")
    plain, _ = to_json(dict(tags), what="tags", max_bytes=64 * 1024)
    return plain
