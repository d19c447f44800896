"""The ETA of a step from its progress reports: a pure function of the reports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from legato.model.progress import estimate_eta, eta_seconds, progress_percent
from legato.model.runs import StepRun
from legato.model.states import StepStatus

T0 = 1_700_000_000.0
STARTED = datetime.fromtimestamp(T0, UTC)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


# -- eta_seconds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("done", "total", "kwargs", "expected"),
    [
        # rate between the first report and the latest: 100 in 10s, 600 left
        (400, 1000, {"at": T0 + 40, "first_done": 300, "first_at": T0 + 30}, 60.0),
        # the set-up before the first report does not slow the estimate
        (
            400,
            1000,
            {"at": T0 + 40, "first_done": 300, "first_at": T0 + 30, "started_at": T0},
            60.0,
        ),
        # one report: the rate since the attempt started (400 in 40s)
        (
            400,
            1000,
            {"at": T0 + 40, "first_done": 400, "first_at": T0 + 40, "started_at": T0},
            60.0,
        ),
        (400, 1000, {"at": T0 + 40, "started_at": T0}, 60.0),
        # fractions of work
        (0.5, 1.0, {"at": T0 + 2, "started_at": T0}, 2.0),
        # done, or past the total: nothing left
        (1000, 1000, {"at": T0 + 40}, 0.0),
        (1200, 1000, {"at": T0 + 40, "started_at": T0}, 0.0),
        # unknowable
        (400, None, {"at": T0 + 40, "started_at": T0}, None),  # no total
        (400, 0, {"at": T0 + 40, "started_at": T0}, None),  # a total of zero
        (400, -5, {"at": T0 + 40, "started_at": T0}, None),
        (0, 1000, {"at": T0 + 40, "started_at": T0}, None),  # nothing done yet
        (0, 1000, {"at": T0 + 40, "first_done": 0, "first_at": T0 + 1}, None),
        (400, 1000, {"at": T0 + 40}, None),  # no start, one report
        (400, 1000, {"at": T0, "started_at": T0}, None),  # no time elapsed
        (400, 1000, {"at": T0 - 5, "started_at": T0}, None),  # a clock behind the start
        # no progress since the first report: fall back to the rate since the start
        (
            300,
            1000,
            {"at": T0 + 40, "first_done": 300, "first_at": T0 + 30, "started_at": T0},
            700 / (300 / 40),
        ),
        # going backwards since the first report, no start known
        (200, 1000, {"at": T0 + 40, "first_done": 300, "first_at": T0 + 30}, None),
    ],
)
def test_eta_seconds(
    done: float, total: float | None, kwargs: dict[str, Any], expected: float | None
) -> None:
    found = eta_seconds(done, total, **kwargs)
    if expected is None:
        assert found is None
    else:
        assert found == pytest.approx(expected)


# -- estimate_eta: stored reports -----------------------------------------------------------


def report(**fields: Any) -> dict[str, Any]:
    return {"done": 400, "total": 1000, "message": None, "at": T0 + 40, **fields}


@pytest.mark.parametrize(
    ("progress", "started", "expected"),
    [
        (report(first_done=300, first_at=T0 + 30), STARTED, at(100)),
        (report(), STARTED, at(100)),
        (report(first_done=300, first_at=T0 + 30), None, at(100)),
        (None, STARTED, None),  # no progress
        ({}, STARTED, None),
        (report(total=None), STARTED, None),  # total missing
        (report(done=0), STARTED, None),  # zero done
        (report(done=1000), STARTED, at(40)),  # done: now
        (report(done=1500), STARTED, at(40)),  # done > total
        (report(at=T0 - 60), STARTED, None),  # a previous attempt's report
        # a previous attempt's first report: this attempt's start is used instead
        (report(first_done=900, first_at=T0 - 60), STARTED, at(100)),
        (report(at="yesterday"), STARTED, None),  # not numbers
        (report(done=True), STARTED, None),
        (report(done=float("nan")), STARTED, None),
        (report(done=1e-300, total=1e308), STARTED, None),  # beyond any calendar
    ],
)
def test_estimate_eta(
    progress: dict[str, Any] | None, started: datetime | None, expected: datetime | None
) -> None:
    found = estimate_eta(progress, started)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert abs((found - expected).total_seconds()) < 1e-3


def test_the_estimate_does_not_move_with_the_clock() -> None:
    """The same reports give the same time whenever they are read."""
    progress = report(first_done=300, first_at=T0 + 30)
    assert estimate_eta(progress, STARTED) == estimate_eta(dict(progress), STARTED)


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        (None, None),
        ({"done": 5}, None),
        ({"done": 5, "total": None}, None),
        ({"done": 5, "total": 0}, None),
        ({"done": 25, "total": 100}, 25.0),
        ({"done": None, "total": 100}, 0.0),
        ({"done": 150, "total": 100}, 100.0),
        ({"done": -5, "total": 100}, 0.0),
        ({"done": 1, "total": 3}, pytest.approx(100 / 3)),
    ],
)
def test_progress_percent(progress: dict[str, Any] | None, expected: Any) -> None:
    assert progress_percent(progress) == expected


def step(status: StepStatus, progress: dict[str, Any] | None) -> StepRun:
    return StepRun(
        step_id="load",
        task="t",
        status=status,
        attempt=1,
        max_attempts=1,
        inputs=None,
        args=[],
        output=None,
        error=None,
        worker="w1",
        queue="default",
        priority=0,
        queued_at=STARTED,
        started_at=STARTED,
        finished_at=None,
        progress=progress,
    )


def test_a_step_run_gives_its_percent_and_eta_while_it_runs() -> None:
    running = step(StepStatus.RUNNING, report(first_done=300, first_at=T0 + 30))
    assert running.percent == 40.0
    assert running.eta == at(100)
    finished = step(StepStatus.COMPLETED, report())
    assert finished.percent == 40.0
    assert finished.eta is None
    assert step(StepStatus.RUNNING, None).eta is None


def test_a_context_keeps_the_attempts_first_report_with_the_latest() -> None:
    import json

    from legato.context import Context

    ctx = Context(run_id="r", step_id="load", attempt=1, task="t")
    ctx.progress(10, 100)
    first = json.loads((ctx.take_reports() or ("", None))[0] or "{}")
    ctx.progress(40, 100, message="rows")
    latest = json.loads((ctx.take_reports() or ("", None))[0] or "{}")
    assert (first["first_done"], first["first_at"]) == (10, first["at"])
    assert (latest["done"], latest["first_done"], latest["first_at"]) == (40, 10, first["at"])
    assert latest["at"] >= first["at"]
