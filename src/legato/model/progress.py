"""How far a step is and when it should end, from what its task reported.

A task reports ``ctx.progress(done, total)``; its context keeps the first report
of the attempt beside the latest (``first_done``, ``first_at``), so the rate is
measured over the reports themselves, not over the set-up before the first one.
Everything here is pure: the same report gives the same estimate, whatever the
clock now says.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ["estimate_eta", "eta_seconds", "progress_percent"]


def _number(value: Any) -> float | None:
    """A finite number from stored JSON, else ``None`` (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def progress_percent(progress: Mapping[str, Any] | None) -> float | None:
    """``done`` as a percentage of ``total``, within 0 and 100; ``None`` without a total."""
    if not progress:
        return None
    done, total = _number(progress.get("done")) or 0.0, _number(progress.get("total"))
    if total is None or total <= 0:
        return None
    return max(0.0, min(100.0, 100.0 * done / total))


def eta_seconds(
    done: float,
    total: float | None,
    *,
    at: float,
    first_done: float | None = None,
    first_at: float | None = None,
    started_at: float | None = None,
) -> float | None:
    """Seconds after ``at`` (the latest report's time) the work should be done.

    The rate is the work done between the first report and the latest, over the
    time between them; with a single report (or none done since the first), the
    work done since ``started_at`` over the time since. ``None`` when it cannot be
    known: no total, nothing done, no time elapsed. Done (or past the total): 0.
    """
    if total is None or total <= 0:
        return None
    if done >= total:
        return 0.0
    rate = None
    if first_done is not None and first_at is not None and at > first_at and done > first_done:
        rate = (done - first_done) / (at - first_at)
    elif started_at is not None and at > started_at and done > 0:
        rate = done / (at - started_at)
    if rate is None or rate <= 0:
        return None
    return (total - done) / rate


def estimate_eta(
    progress: Mapping[str, Any] | None, started_at: datetime | None
) -> datetime | None:
    """When the attempt should end, from its stored progress report (see
    :func:`eta_seconds`); ``None`` when unknowable. A report older than the
    attempt's start (a previous attempt's) tells nothing of this one."""
    if not progress:
        return None
    at = _number(progress.get("at"))
    done = _number(progress.get("done"))
    if at is None or done is None:
        return None
    started = None if started_at is None else started_at.timestamp()
    if started is not None and at < started:
        return None
    first_at = _number(progress.get("first_at"))
    if first_at is not None and started is not None and first_at < started:
        first_at = None
    seconds = eta_seconds(
        done,
        _number(progress.get("total")),
        at=at,
        first_done=_number(progress.get("first_done")),
        first_at=first_at,
        started_at=started,
    )
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(at + seconds, UTC)
    except (OverflowError, OSError, ValueError):  # beyond any calendar: unknowable
        return None
