"""``legato runs logs`` and ``legato runs watch``: what a run's tasks wrote, and the run live.

``logs`` prints the lines its tasks logged and printed (``--follow`` keeps
printing new ones until the run ends); ``watch`` draws the run's steps, their
progress and the latest lines until it ends. Both end like ``legato run``:
exit 0 when the run completed, 1 when it failed or was cancelled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections import deque
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from legato.cli.display import RunProgress, format_duration, format_progress
from legato.cli.options import RunIdArgument, UrlOption
from legato.cli.output import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    configure_logging,
    error_line,
    exit_now,
    stderr,
    stdout,
    user_errors,
)
from legato.client import Client
from legato.model.logs import LogLine
from legato.model.runs import Run
from legato.model.states import RunStatus, StepStatus

__all__ = ["RunWatch", "follow_logs", "logs", "watch"]

#: how far back (in seconds) a follower reads again, for lines whose transaction drew
#: their ids before another's but committed after it (PostgreSQL)
LOOKBACK = 5.0
#: lines asked for at a time
_PAGE = 1000

_LEVEL_STYLES = {
    "DEBUG": "dim",
    "INFO": "",
    "WARNING": "yellow",
    "ERROR": "red",
    "CRITICAL": "bold red",
    "stdout": "dim cyan",
    "stderr": "magenta",
}

StepArgument = Annotated[
    str | None,
    typer.Argument(
        metavar="STEP",
        help="Only this step's lines (its id, as `runs show` lists it: fetch, m[3].load).",
        show_default=False,
    ),
]
IntervalOption = Annotated[
    float,
    typer.Option("--interval", min=0.05, metavar="SECONDS", help="Seconds between two reads."),
]


def follow_logs(
    client: Client,
    run_id: str,
    step: str | None = None,
    *,
    attempt: int | None = None,
    interval: float = 0.5,
) -> Iterator[LogLine | Run]:
    """Every line of the run (or step), then new ones as they are stored, each round of
    lines followed by the run (without its steps) as it was just before they were read;
    the last thing given is the run, finished.

    Lines are read by id; a line whose id was drawn before another's but committed
    after it (two workers' transactions) is found by reading again ``LOOKBACK``
    seconds of ids, and lines already given are not given twice.
    """
    cursor = 0  # the highest id given
    marks: deque[tuple[float, int]] = deque()  # (when, cursor then): where to read again from
    given: set[int] = set()
    while True:
        run = client.get(run_id, with_steps=False)  # before the lines: none is missed
        now = time.monotonic()
        while marks and now - marks[0][0] > LOOKBACK:
            marks.popleft()
        low = marks[0][1] if marks else cursor
        while True:
            lines = client.logs(run_id, step, attempt=attempt, after=low, limit=_PAGE)
            for line in lines:
                if line.id not in given:
                    given.add(line.id)
                    yield line
            if len(lines) < _PAGE:
                break
            low = lines[-1].id
        cursor = max(given, default=0)
        marks.append((now, cursor))
        given = {i for i in given if i > marks[0][1]}
        yield run
        if run.finished:
            return
        time.sleep(interval)


def logs(
    run_id: RunIdArgument,
    step: StepArgument = None,
    attempt: Annotated[
        int | None,
        typer.Option("--attempt", min=1, metavar="N", help="Only this attempt's lines."),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Print new lines as they come until the run ends."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object a line (JSON Lines).")
    ] = False,
    interval: IntervalOption = 0.5,
    url: UrlOption = None,
) -> None:
    """Print what a run's tasks logged and printed, attempt by attempt, oldest first.

    With --follow, keep printing new lines until the run ends, then exit 0 if it
    completed and 1 if it failed or was cancelled. Child runs keep their own lines.
    """
    configure_logging(logging.WARNING)
    try:
        with user_errors(), Client(url, migrate=False) as client:  # reading creates nothing
            full_id = client.resolve_run_id(run_id)
            if not follow:
                after = 0
                while True:
                    lines = client.logs(full_id, step, attempt=attempt, after=after, limit=_PAGE)
                    for line in lines:
                        _print_line(line, as_json)
                    if not lines and not after and not as_json:
                        whose = f"step {step} of run" if step else "run"
                        stderr().print(f"{whose} {full_id} has no log lines", highlight=False)
                    if len(lines) < _PAGE:
                        return
                    after = lines[-1].id
            for item in follow_logs(client, full_id, step, attempt=attempt, interval=interval):
                if isinstance(item, LogLine):
                    _print_line(item, as_json)
                elif item.finished:
                    _end(item)
    except KeyboardInterrupt:
        exit_now(EXIT_INTERRUPTED)


def watch(
    run_id: RunIdArgument,
    lines: Annotated[
        int,
        typer.Option("--lines", "-n", min=0, metavar="N", help="How many recent log lines."),
    ] = 10,
    interval: IntervalOption = 0.5,
    url: UrlOption = None,
) -> None:
    """Watch a run live: its steps, their progress and its latest log lines, until it ends.

    Then print its final state and exit 0 if it completed, 1 if it failed or was
    cancelled.
    """
    configure_logging(logging.WARNING)
    try:
        with user_errors(), Client(url, migrate=False) as client:  # reading creates nothing
            full_id = client.resolve_run_id(run_id)
            console = stdout()
            view = RunWatch(full_id, max_rows=max(5, console.height - lines - 8), lines=lines)
            view.update(client.get(full_id))
            with Live(view, console=console, refresh_per_second=4, transient=False):
                for item in follow_logs(client, full_id, interval=interval):
                    if isinstance(item, LogLine):
                        view.add(item)
                    else:
                        view.update(client.get(full_id))
                final = view.run
            assert final is not None
    except KeyboardInterrupt:
        exit_now(EXIT_INTERRUPTED)
    _end(final)


class RunWatch:
    """``legato run``'s live view of a run, with its steps' progress and latest lines."""

    def __init__(self, run_id: str, *, max_rows: int = 20, lines: int = 10) -> None:
        self.progress = RunProgress(run_id, "run", max_rows=max_rows)
        self.lines: deque[LogLine] = deque(maxlen=max(lines, 0) or None)
        self._show_lines = lines > 0

    @property
    def run(self) -> Run | None:
        return self.progress.run

    def update(self, run: Run) -> None:
        self.progress.label = f"{run.workflow}@{run.version}"
        self.progress.update(run)

    def add(self, line: LogLine) -> None:
        if self._show_lines:
            self.lines.append(line)

    def __rich__(self) -> RenderableType:
        parts: list[RenderableType] = [self.progress]
        run = self.run
        reporting = [
            s
            for s in (run.steps.values() if run is not None else ())
            if s.progress and s.status in (StepStatus.RUNNING, StepStatus.COMPLETED)
        ]
        if reporting:
            table = Table(box=None, pad_edge=False, show_edge=False, show_header=False)
            table.add_column("step", no_wrap=True)
            table.add_column("progress", overflow="ellipsis", no_wrap=True)
            for step in reporting:
                table.add_row(step.step_id, format_progress(step))
            parts += [Text("progress", style="bold"), table]
        if self.lines:
            parts.append(Text("latest lines", style="bold"))
            parts += [_line_text(line, one_line=True) for line in self.lines]
        return Group(*parts)


def _line_text(line: LogLine, *, one_line: bool = False) -> Text:
    text = Text(no_wrap=one_line, overflow="ellipsis")
    shown = "%H:%M:%S " if one_line else "%Y-%m-%d %H:%M:%S "
    text.append(line.at.astimezone().strftime(shown), style="dim")
    text.append(f"{line.step_id}#{line.attempt} ", style="cyan")
    text.append(line.level, style=_LEVEL_STYLES.get(line.level, ""))
    if line.logger:
        text.append(f" {line.logger}", style="dim")
    message = line.message.splitlines()[0] if one_line and line.message else line.message
    text.append(": " + message)
    return text


def _print_line(line: LogLine, as_json: bool) -> None:
    if as_json:
        document = dataclasses.asdict(line)
        document["at"] = line.at.isoformat()
        sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    stdout().print(_line_text(line), soft_wrap=True, highlight=False)
    sys.stdout.flush()  # a follower's reader sees each line as it comes


def _end(run: Run) -> None:
    """The run ended: a line saying how (on stderr), and ``legato run``'s exit code."""
    console = typer.get_text_stream("stderr")
    if run.status is RunStatus.COMPLETED:
        took = format_duration(run.duration)
        console.write(f"run {run.id} completed" + (f" in {took}" if took else "") + "\n")
        return
    error_line(
        f"run {run.id} {run.status.value}"
        + (f": {run.error.type}: {run.error.message}" if run.error else "")
    )
    raise typer.Exit(EXIT_FAILED)
