"""How runs look in a terminal: the live progress of ``legato run`` and the ``runs`` tables.

Only rendering lives here; commands fetch runs and hand them over.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from legato.client import unserved_note
from legato.model.runs import Run, StepError, StepRun
from legato.model.states import RunStatus, StepStatus

__all__ = [
    "RunProgress",
    "format_duration",
    "run_details",
    "runs_table",
    "status_text",
]

_STYLES = {
    "pending": "cyan",
    "waiting": "dim",
    "queued": "cyan",
    "running": "yellow",
    "suspended": "blue",
    "paused": "blue",
    "completed": "green",
    "failed": "bold red",
    "skipped": "dim",
    "cancelled": "magenta",
}

#: which steps a long run's live table keeps when it cannot show them all
_SHOW_FIRST = {
    StepStatus.RUNNING: 0,
    StepStatus.FAILED: 0,
    StepStatus.SUSPENDED: 1,
    StepStatus.QUEUED: 2,
    StepStatus.COMPLETED: 3,
    StepStatus.CANCELLED: 3,
    StepStatus.SKIPPED: 3,
    StepStatus.WAITING: 4,
}


def status_text(status: RunStatus | StepStatus | str) -> Text:
    value = str(status)
    return Text(value, style=_STYLES.get(value, ""))


def format_duration(seconds: float | None) -> str:
    """``4.2ms``, ``420ms``, ``1.42s``, ``12.3s``, ``4m05s``, ``2h03m``; empty when unknown.

    Steps often take milliseconds, so short durations keep their digits.
    """
    if seconds is None:
        return ""
    seconds = max(seconds, 0.0)
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_time(at: datetime | None) -> str:
    """Local time, to the second: what a person reading a terminal expects."""
    return "" if at is None else at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _elapsed(started: datetime | None, finished: datetime | None) -> float | None:
    if started is None:
        return None
    return ((finished or datetime.now(UTC)) - started).total_seconds()


def _step_duration(step: StepRun) -> str:
    if step.status in (StepStatus.WAITING, StepStatus.QUEUED):
        return ""  # a retry waiting its turn: the last attempt's times are in the history
    return format_duration(_elapsed(step.started_at, step.finished_at))


def _attempt(step: StepRun) -> str:
    """``2/3``: the attempt and what retries allow; lost workers are counted apart."""
    if not step.attempt:
        return "-"
    released = sum(1 for a in step.attempts if a.status == "released")
    if not step.lost and not released:
        return f"{step.attempt}/{step.max_attempts}"
    apart = [f"{n} {what}" for n, what in ((step.lost, "lost"), (released, "handed back")) if n]
    return f"{step.attempt} ({', '.join(apart)})"


def _live_error(step: StepRun) -> str:
    """A failed step's error, or the last error of a step waiting to be retried."""
    if step.error is None:
        return ""
    if step.status is StepStatus.FAILED:
        return _one_line(step.error, 80)
    if step.status is StepStatus.QUEUED and step.attempt:
        return "retrying after " + _one_line(step.error, 66)
    return ""


def _one_line(error: StepError | None, limit: int = 200) -> str:
    if error is None:
        return ""
    text = " ".join(f"{error.type}: {error.message}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# -- legato run ------------------------------------------------------------------------


class RunProgress:
    """The live view of one run: fed by :meth:`update`, drawn by ``rich.live.Live``.

    Rendering reads the last polled state, so spinners and running durations
    move on every refresh between polls. A run with more steps than
    ``max_rows`` shows the ones that matter now (running, failed, queued).
    """

    def __init__(self, run_id: str, label: str, *, max_rows: int = 20) -> None:
        self.run_id = run_id
        self.label = label
        self.max_rows = max_rows
        self.run: Run | None = None
        self._spinners: dict[str, Spinner] = {}

    def update(self, run: Run) -> None:
        self.run = run

    def __rich__(self) -> RenderableType:
        run = self.run
        head = Table.grid(padding=(0, 2))
        cells: list[RenderableType] = [Text(self.label, style="bold"), Text(self.run_id, "cyan")]
        if run is None:
            head.add_row(*cells, Text("starting", style="dim"))
            return head
        cells += [
            status_text(run.status),
            ProgressBar(total=max(run.steps_total, 1), completed=run.steps_done, width=30),
            f"{run.steps_done}/{run.steps_total} steps",
            Text(format_duration(_elapsed(run.created_at, run.finished_at)), style="dim"),
        ]
        head.add_row(*cells)
        return Group(head, *self._steps(run))

    def _steps(self, run: Run) -> list[RenderableType]:
        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column("step", no_wrap=True)
        table.add_column("task", style="dim", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("attempt", justify="right")
        table.add_column("duration", justify="right")
        table.add_column("error", style="red", overflow="ellipsis", no_wrap=True)
        steps = list(run.steps.values())
        shown = _most_relevant(steps, self.max_rows)
        for step in shown:
            table.add_row(
                step.step_id,
                step.task,
                self._status(step),
                _attempt(step),
                _step_duration(step),
                _live_error(step),
            )
        hidden = len(steps) - len(shown)
        if hidden:
            shown_ids = {step.step_id for step in shown}
            counts = Counter(s.status.value for s in steps if s.step_id not in shown_ids)
            summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            return [table, Text(f"… {hidden} more steps ({summary})", style="dim")]
        return [table]

    def _status(self, step: StepRun) -> RenderableType:
        if step.status is not StepStatus.RUNNING:
            self._spinners.pop(step.step_id, None)
            return status_text(step.status)
        spinner = self._spinners.get(step.step_id)
        if spinner is None:
            spinner = Spinner("dots", status_text(step.status), style="yellow")
            self._spinners[step.step_id] = spinner
        return spinner


def _most_relevant(steps: list[StepRun], limit: int) -> list[StepRun]:
    if len(steps) <= limit:
        return steps
    ranked = sorted(range(len(steps)), key=lambda i: _SHOW_FIRST.get(steps[i].status, 5))
    keep = sorted(ranked[:limit])
    return [steps[i] for i in keep]


# -- legato runs ------------------------------------------------------------------------


def runs_table(runs: Iterable[Run]) -> Table:
    table = Table(title=None, header_style="bold")
    table.add_column("id", no_wrap=True, min_width=36)
    table.add_column("workflow")
    table.add_column("status")
    table.add_column("steps", justify="right")
    table.add_column("created")
    table.add_column("duration", justify="right")
    for run in runs:
        table.add_row(
            run.id,
            f"{run.workflow}@{run.version}",
            status_text(run.status),
            f"{run.steps_done}/{run.steps_total}",
            format_time(run.created_at),
            format_duration(_elapsed(run.started_at, run.finished_at)),
        )
    return table


def run_details(
    run: Run, *, verbose: bool = False, unserved: list[StepRun] | None = None
) -> RenderableType:
    """Everything about one run: header, steps, and every failed attempt's error.

    ``unserved`` are queued steps no live worker serves: the run says what it waits for.
    """
    parts: list[RenderableType] = [_run_header(run), "", _steps_table(run)]
    if unserved:
        parts.append(Text(f"\nwaiting: {unserved_note(unserved)}", style="yellow"))
    return Group(*parts, *_failed_attempts(run, verbose))


def _run_header(run: Run) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    rows: list[tuple[str, RenderableType | str | None]] = [
        ("run", Text(run.id, style="cyan")),
        ("workflow", f"{run.workflow}@{run.version}  (spec {run.workflow_hash[:12]})"),
        ("status", status_text(run.status)),
        ("steps", f"{run.steps_done}/{run.steps_total} done"),
        ("params", _json(run.params)),
        ("outputs", None if run.outputs is None else _json(run.outputs)),
        ("tags", _json(run.tags) if run.tags else None),
        ("variables", _json(run.variables) if run.variables else None),
        ("created by", run.created_by),
        ("correlation id", run.correlation_id),
        ("idempotency key", run.idempotency_key),
        ("parent run", run.parent_run_id),
        ("created", format_time(run.created_at)),
        ("started", format_time(run.started_at) or None),
        ("finished", format_time(run.finished_at) or None),
        ("duration", format_duration(_elapsed(run.started_at, run.finished_at)) or None),
        ("error", Text(str(run.error), style="red") if run.error else None),
    ]
    for label, value in rows:
        if value is not None:
            grid.add_row(label, value)
    return grid


def _steps_table(run: Run) -> Table:
    table = Table(title="steps", title_justify="left", header_style="bold")
    table.add_column("step", no_wrap=True)
    table.add_column("task")
    table.add_column("status")
    table.add_column("attempt", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("error", style="red")
    for step in run.steps.values():
        table.add_row(
            step.step_id,
            step.task,
            status_text(step.status),
            _attempt(step),
            _step_duration(step),
            _one_line(step.error),
        )
    return table


def _failed_attempts(run: Run, verbose: bool) -> list[RenderableType]:
    lines: list[RenderableType] = []
    for step in run.steps.values():
        for attempt in step.attempts:
            if attempt.error is None:
                continue
            where = f"  {step.step_id} attempt {attempt.number}"
            if attempt.status == "lost":
                where += " (worker lost)"
            details = ", ".join(
                part for part in (attempt.worker, format_duration(attempt.duration)) if part
            )
            line = Text(where, style="bold")
            if details:
                line.append(f" ({details})", style="dim")
            line.append(": ")
            line.append(_one_line(attempt.error, 400), style="red")
            lines.append(line)
            if verbose and attempt.error.traceback:
                lines.append(Text(attempt.error.traceback.rstrip(), style="dim"))
    if lines:
        lines.insert(0, Text("\nattempts that did not complete", style="bold"))
    return lines
