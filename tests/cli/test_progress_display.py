"""Progress with its ETA, as ``legato run``'s live view and ``legato runs show`` draw it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from legato import Client, StepRun, StepStatus, Workflow
from legato.cli.display import RunProgress, eta_text, format_progress
from legato.payload import dumps
from legato.store.base import ProgressReport
from store.helpers import claim

from .helpers import Invoke

NOW = datetime(2030, 5, 1, 12, 0, 0, tzinfo=UTC)


def step(progress: dict[str, Any] | None, status: StepStatus = StepStatus.RUNNING) -> StepRun:
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
        queued_at=NOW,
        started_at=NOW,
        finished_at=None,
        progress=progress,
    )


def local(at: datetime, fmt: str = "%H:%M:%S") -> str:
    return at.astimezone().strftime(fmt)


def test_format_progress_gives_percent_counts_message_and_eta() -> None:
    t0 = NOW.timestamp()
    reported = {
        "done": 420,
        "total": 1000,
        "message": "rows",
        "at": t0 + 42,
        "first_done": 0,
        "first_at": t0,
    }
    eta = NOW + timedelta(seconds=100)
    shown = format_progress(step(reported), NOW + timedelta(seconds=45))
    assert shown == f"42% (420/1,000) rows ETA {local(eta)} (in 55.0s)"
    # unknowable ETAs leave it out
    assert format_progress(step({**reported, "total": None}), NOW) == "420 done rows"
    assert format_progress(step({**reported, "done": 0}), NOW) == "0% (0/1,000) rows"
    assert format_progress(step(reported, StepStatus.COMPLETED), NOW) == "42% (420/1,000) rows"
    assert format_progress(step(None), NOW) == ""


def test_eta_text_reads_the_clock_it_is_given() -> None:
    eta = NOW + timedelta(minutes=2, seconds=10)
    assert eta_text(eta, NOW) == f" ETA {local(eta)} (in 2m10s)"
    assert eta_text(eta, eta + timedelta(seconds=30)) == f" ETA {local(eta)} (any moment)"
    tomorrow = NOW + timedelta(days=1, hours=1)
    assert eta_text(tomorrow, NOW) == f" ETA {local(tomorrow, '%Y-%m-%d %H:%M:%S')} (in 25h00m)"
    assert eta_text(None, NOW) == ""


def test_a_running_step_shows_its_progress_and_eta_live_and_in_runs_show(
    legato: Invoke, sqlite_url: str
) -> None:
    from store.tasks import echo

    wf = Workflow("slow_load")
    first = wf.step("load", echo, x=1)
    wf.step("after", echo, x=first.output)
    with Client(sqlite_url) as client:
        run_id = client.start(wf)
        [load] = claim(client, tasks=("store_suite.echo",))
        now = time.time()  # the attempt started before: the first report comes after
        reported = {
            "done": 250,
            "total": 1000,
            "message": "rows",
            "at": now + 20,
            "first_done": 50,
            "first_at": now,
        }
        client.store.extend_leases(
            "w1",
            [load.step_run_id],
            30,
            progress={load.step_run_id: ProgressReport(dumps(reported))},
        )
        run = client.get(run_id)
    assert run.steps["load"].eta is not None  # 200 in 20s: 750 left, 75s
    assert abs(run.steps["load"].eta.timestamp() - (now + 95)) < 0.01
    live = RunProgress(run_id, "slow_load@1")
    live.update(run)
    console = Console(record=True, width=200, force_terminal=False)
    console.print(live)
    text = console.export_text()
    assert "0% (0/2 steps)" in text
    line = next(line for line in text.splitlines() if line.startswith("load"))
    assert "25% (250/1,000) rows ETA " in line
    assert "(in 1m3" in line  # 95s from now, read a moment later
    shown = legato("runs", "show", run_id, "--url", sqlite_url).stdout
    assert "25% (250/1,000) rows ETA " in shown
    assert "0% (0/2 steps)" in shown
    document = json.loads(legato("runs", "show", run_id, "--json", "--url", sqlite_url).stdout)
    assert document["percent"] == 0.0
    assert document["steps"]["load"]["percent"] == 25.0
    assert document["steps"]["load"]["eta"] == run.steps["load"].eta.isoformat()
