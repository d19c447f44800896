"""What ``legato run`` draws: rendered to a recording console, no terminal needed."""

from __future__ import annotations

import re

import pytest
from rich.console import Console

import legato
from legato.cli.display import RunProgress, _steps_table, format_duration
from legato.cli.loading import load_workflow

from .helpers import target


def render(progress: RunProgress) -> str:
    console = Console(record=True, width=160, force_terminal=False)
    console.print(progress)
    return console.export_text()


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, ""),
        (-1, "0.0ms"),
        (0.0042, "4.2ms"),
        (0.123, "123ms"),
        (1.234, "1.23s"),
        (12.34, "12.3s"),
        (245, "4m05s"),
        (7380, "2h03m"),
    ],
)
def test_durations_read_short(seconds: float | None, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_progress_shows_each_step_with_status_attempt_and_duration(sqlite_url: str) -> None:
    run = legato.run(load_workflow(target("failing")), url=sqlite_url)
    progress = RunProgress(run.id, "cli_failing@1")
    assert "starting" in render(progress)
    progress.update(run)
    text = render(progress)
    assert run.id in text
    assert "failed" in text.splitlines()[0]
    assert "2/2 steps" in text  # both finished, one failed
    extract = next(line for line in text.splitlines() if line.startswith("extract"))
    assert extract.split()[1:4] == ["flows.extract", "completed", "1/1"]
    explode = next(line for line in text.splitlines() if line.startswith("explode"))
    assert explode.split()[1:4] == ["flows.explode", "failed", "2/2"]
    assert "ValueError: kaput" in explode


def test_a_long_run_shows_what_matters_and_counts_the_rest(sqlite_url: str) -> None:
    @legato.task(name="cli_display.noop")
    def noop(i: int) -> int:
        return i

    wf = legato.Workflow("cli_long")
    for i in range(30):
        wf.step(f"s{i}", noop, i=i)
    run = legato.run(wf, url=sqlite_url)
    progress = RunProgress(run.id, "cli_long@1", max_rows=5)
    progress.update(run)
    text = render(progress)
    assert sum(bool(re.match(r"s\d+ ", line)) for line in text.splitlines()) == 5
    assert "… 25 more steps (25 completed)" in text


def test_a_step_waiting_to_retry_shows_its_last_error(sqlite_url: str) -> None:
    from legato.store.base import ClaimRequest, StepResult

    load_workflow(target("failing"))  # registers the flows.* tasks
    wf = legato.Workflow("cli_retrying")
    wf.step("explode", "flows.explode", message="boom")
    with legato.Client(sqlite_url) as client:
        run_id = client.start(wf)
        request = ClaimRequest("w", ("default",), ("flows.explode",), 1, 30)
        [claimed] = client.store.report_and_claim([], request).claimed
        error = legato.StepError("ValueError", "boom")
        failed = StepResult(
            claimed.step_run_id, run_id, "explode", 1, ok=False, error=error, retryable=True
        )
        client.store.report_and_claim([failed])
        run = client.get(run_id)
    assert run.steps["explode"].status is legato.StepStatus.QUEUED  # its retry waits
    progress = RunProgress(run_id, "cli_retrying@1")
    progress.update(run)
    line = next(line for line in render(progress).splitlines() if line.startswith("explode"))
    assert line.split()[1:4] == ["flows.explode", "queued", "1/2"]
    assert "retrying after ValueError: boom" in line


def test_a_queued_step_shows_the_limits_it_takes_its_turn_under(sqlite_url: str) -> None:
    from legato.store.base import ClaimRequest

    load_workflow(target("failing"))  # registers the flows.* tasks
    wf = legato.Workflow("cli_limited")
    for name in ("one", "two"):
        wf.step(name, "flows.explode", message=name, concurrency=1, rate_limit="100/1m")
    with legato.Client(sqlite_url) as client:
        run_id = client.start(wf)
        request = ClaimRequest("w", ("default",), ("flows.explode",), 2, 30)
        assert len(client.store.report_and_claim([], request).claimed) == 1
        run = client.get(run_id)
    console = Console(record=True, width=200, force_terminal=False)
    console.print(_steps_table(run))  # as legato runs show draws it
    [line] = [line for line in console.export_text().splitlines() if "queued" in line]
    assert "takes its turn in flows.explode: 1 running at most, 100 starts per 1m" in line
