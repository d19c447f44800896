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
from legato.model.runs import Event, Run, StepError, StepRun
from legato.model.states import RunStatus, StepStatus

__all__ = [
    "RunProgress",
    "eta_text",
    "format_duration",
    "format_progress",
    "history_table",
    "progress_text",
    "run_details",
    "run_progress_text",
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
            run_progress_text(run),
            Text(format_duration(_elapsed(run.created_at, run.finished_at)), style="dim"),
        ]
        head.add_row(*cells)
        return Group(head, *self._steps(run))

    def _steps(self, run: Run) -> list[RenderableType]:
        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column("step", no_wrap=True)
        table.add_column("what", style="dim", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("attempt", justify="right")
        table.add_column("duration", justify="right")
        table.add_column("progress", style="cyan", no_wrap=True)
        table.add_column("error", style="red", overflow="ellipsis", no_wrap=True)
        steps = list(run.steps.values())
        shown = _most_relevant(steps, self.max_rows)
        now = datetime.now(UTC)
        for step in shown:
            table.add_row(
                step.step_id,
                step_what(step),
                self._status(step),
                _attempt(step),
                _step_duration(step),
                format_progress(step, now) if step.status is StepStatus.RUNNING else "",
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
    run: Run,
    *,
    verbose: bool = False,
    unserved: list[StepRun] | None = None,
    every_item: bool = False,
) -> RenderableType:
    """Everything about one run: header, steps, and every failed attempt's error.

    ``unserved`` are queued steps no live worker serves: the run says what it waits for.
    A map's or loop's many items are counted, not listed, unless ``every_item``.
    """
    parts: list[RenderableType] = [_run_header(run), "", _steps_table(run, every_item=every_item)]
    if unserved:
        parts.append(Text(f"\nwaiting: {unserved_note(unserved)}", style="yellow"))
    return Group(*parts, *_failed_attempts(run, verbose))


def _run_header(run: Run) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    rows: list[tuple[str, RenderableType | str | None]] = [
        ("run", Text(run.id, style="cyan")),
        ("workflow", f"{run.workflow}@{run.version}"),
        ("workflow hash", run.workflow_hash),
        ("status", status_text(run.status)),
        ("attempt", str(run.attempt) if run.attempt > 1 else None),
        ("steps", _step_summary(run)),
        ("tasks", _count(run.task_count, "task step")),
        ("done", run_progress_text(run) if run.steps else None),
        ("params", _json(run.params)),
        ("outputs", None if run.outputs is None else _json(run.outputs)),
        ("tags", _json(run.tags) if run.tags else None),
        ("variables", _json(run.variables) if run.variables else None),
        ("created by", run.created_by),
        ("correlation id", run.correlation_id),
        ("idempotency key", run.idempotency_key),
        ("parent run", _parent(run)),
        ("failure handler", run.failure_handler_run_id),
        ("handles failure of", run.handler_of),
        ("root run", run.root_run_id if run.root_run_id not in (None, run.id) else None),
        ("created", format_time(run.created_at)),
        ("logical date", _logical_date(run)),
        ("started", format_time(run.started_at) or None),
        ("finished", format_time(run.finished_at) or None),
        ("duration", format_duration(_elapsed(run.started_at, run.finished_at)) or None),
        ("error", Text(str(run.error), style="red") if run.error else None),
        ("error details", _json(run.error.details) if run.error and run.error.details else None),
    ]
    for label, value in rows:
        if value is not None:
            grid.add_row(label, value)
    return grid


def _logical_date(run: Run) -> str | None:
    """The time the run is for, shown when it is not simply its created time."""
    if run.logical_date is None or run.logical_date == run.created_at:
        return None
    return run.logical_date.isoformat()


def _step_summary(run: Run) -> str:
    """``12 steps: 10 completed, 1 failed, 1 skipped`` (a map's items and a loop's
    iterations counted apart), or ``done/total`` for a run read without its steps."""
    if not run.steps:
        return f"{run.steps_done}/{run.steps_total} done"
    counts: Counter[str] = Counter()
    units: Counter[str] = Counter()
    for step in run.steps.values():
        holders = _holder_kinds(step, run)
        if step.kind == "iteration":
            units["iteration"] += 1
        elif holders and holders[0] == "map":
            units["item"] += 1
        elif not any(kind in ("item", "iteration") for kind in holders):
            counts[step.status.value] += 1
    text = (
        _count(sum(counts.values()), "step")
        + ": "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    )
    extra = [_count(n, noun) for noun, n in sorted(units.items())]
    return text + (f"  ({', '.join(extra)})" if extra else "")


def _holder_kinds(step: StepRun, run: Run) -> list[str]:
    """The kinds of the instances holding ``step``, innermost first."""
    kinds = []
    scope = step.scope
    while scope and (holder := run.steps.get(scope)) is not None:
        kinds.append(holder.kind)
        scope = holder.scope
    return kinds


def _parent(run: Run) -> str | None:
    if run.parent_run_id is None:
        return None
    return run.parent_run_id + (f", step {run.parent_step}" if run.parent_step else "")


def _steps_table(run: Run, *, every_item: bool = False) -> Table:
    table = Table(title="steps", title_justify="left", header_style="bold")
    table.add_column("step", no_wrap=True)
    table.add_column("what")
    table.add_column("status")
    table.add_column("attempt", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("note")
    for depth, row in step_tree(run, max_items=None if every_item else _MAX_ITEMS):
        indent = "  " * depth
        if isinstance(row, StepRun):
            table.add_row(
                indent + row.step_id,
                step_what(row, run),
                status_text(row.status),
                _attempt(row),
                _step_duration(row),
                step_note(row),
            )
        else:
            table.add_row(Text(indent + row, style="dim"), "", "", "", "", "")
    return table


#: items (or iterations) of one map (or loop) that ``runs show`` lists before it counts
_MAX_ITEMS = 10
_COUNTED_KINDS = ("map", "loop")


def step_tree(run: Run, *, max_items: int | None = None) -> list[tuple[int, StepRun | str]]:
    """The run's steps in tree order, each with its depth: a compound step, then its own.

    A map or loop with more than ``max_items`` items keeps the first few and every
    one that is not completed, and a line counting the rest.
    """
    children: dict[str, list[StepRun]] = {}
    for step in run.steps.values():
        children.setdefault(step.scope, []).append(step)
    rows: list[tuple[int, StepRun | str]] = []

    def walk(scope: str, depth: int) -> None:
        inside = children.get(scope, [])
        holder = run.steps.get(scope)
        if (
            max_items is not None
            and holder is not None
            and holder.kind in _COUNTED_KINDS
            and len(inside) > max_items
        ):
            kept = _kept_items(inside, max_items)
            kept_keys = {s.step_id for s in kept}
            hidden = Counter(s.status.value for s in inside if s.step_id not in kept_keys)
        else:
            kept, hidden = inside, Counter()
        for step in kept:
            rows.append((depth, step))
            walk(step.step_id, depth + 1)
        if hidden:
            noun = "iterations" if holder is not None and holder.kind == "loop" else "items"
            counts = ", ".join(f"{n:,} {status}" for status, n in sorted(hidden.items()))
            rows.append((depth, f"… {sum(hidden.values()):,} more {noun} ({counts})"))

    walk("", 0)
    return rows


#: which items of a long map stay listed: failed first, then those still going
_ITEM_RANK = {StepStatus.FAILED: 0, StepStatus.RUNNING: 1, StepStatus.SUSPENDED: 1}


def _kept_items(items: list[StepRun], limit: int) -> list[StepRun]:
    """The first three items, then failed ones, then those still going, in item order."""
    ranked = sorted(
        range(len(items)),
        key=lambda n: (0 if n < 3 else 1, _ITEM_RANK.get(items[n].status, 2), n),
    )
    keep = sorted(n for n in ranked[:limit] if n < 3 or items[n].status is not StepStatus.COMPLETED)
    return [items[n] for n in keep]


def step_what(step: StepRun, run: Run | None = None) -> str:
    """What a step is: its task, or its kind with what it holds (items, iterations)."""
    if step.kind == "task":
        return step.task
    if step.kind == "item":
        return "item " + _short(step.item)
    if step.kind == "iteration":
        return "iteration"
    if step.kind in _COUNTED_KINDS and run is not None:
        inside = [s for s in run.steps.values() if s.scope == step.step_id]
        noun = "iteration" if step.kind == "loop" else "item"
        text = f"{step.kind} · {_count(len(inside), noun)}"
        failed = sum(1 for s in inside if s.status is StepStatus.FAILED)
        if failed:
            text += f", {failed:,} failed"
        return text
    if step.kind == "group" and run is not None:
        held = sum(1 for s in run.steps.values() if s.scope == step.step_id)
        return f"group · {_count(held, 'step')}"
    return step.kind


def step_note(step: StepRun) -> str:
    """A failed step's error, what a suspended step waits for, a sub-workflow's child."""
    if step.status is StepStatus.FAILED and step.error is not None:
        return _one_line(step.error)
    if step.status is StepStatus.SUSPENDED:
        return waiting_text(step)
    if step.status is StepStatus.QUEUED and step.attempt and step.error is not None:
        return "retrying after " + _one_line(step.error, 120)
    if step.status is StepStatus.QUEUED and step.flow_limits is not None:
        return limits_text(step)
    if step.status is StepStatus.RUNNING and step.kind == "task":
        notes = [format_progress(step)] if step.progress else []
        if step.stop_requested:
            notes.append("asked to stop")
        if notes:
            return "; ".join(notes)
    if step.child_run_id:
        return f"child run {step.child_run_id}"
    return ""


def limits_text(step: StepRun) -> str:
    """``takes its turn in charge[customer="acme"]: 2 running at most, 100 starts per 10s``:
    a queued step's flow limits, which may be what keeps it queued."""
    limits = step.flow_limits
    if limits is None:
        return ""
    held = []
    if limits.concurrency is not None:
        held.append(f"{limits.concurrency:,} running at most")
    if limits.rate is not None:
        count, window = limits.rate
        held.append(f"{count:,} starts per {_window(window)}")
    slot = step.flow_slot or f"{step.task}[{limits.key}=…]"
    return f"takes its turn in {slot}: " + ", ".join(held)


def _window(seconds: float) -> str:
    """A rate window as it is usually written: ``10s``, ``1m``, ``2h``."""
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def progress_text(step: StepRun) -> str:
    """``42% (420/1,000) rows loaded``, or ``420 done`` without a total."""
    progress = step.progress or {}
    done = progress.get("done") or 0
    total = progress.get("total")
    percent = step.percent
    text = f"{done:,}" + (f"/{total:,}" if total else " done")
    if percent is not None:
        text = f"{percent:.0f}% ({text})"
    message = progress.get("message")
    return f"{text} {message}" if message else text


def format_progress(step: StepRun, now: datetime | None = None) -> str:
    """``42% (420/1,000) rows ETA 13:05:12 (in 2m10s)``: the step's latest progress and,
    while it runs, when it should end at its rate so far; empty without progress."""
    if not step.progress:
        return ""
    return progress_text(step) + eta_text(step.eta, now)


def eta_text(eta: datetime | None, now: datetime | None = None) -> str:
    """`` ETA 13:05:12 (in 2m10s)`` (local time; the date too when it is not today),
    or nothing when the ETA is unknown."""
    if eta is None:
        return ""
    now = now or datetime.now(UTC)
    local, today = eta.astimezone(), now.astimezone()
    shown = local.strftime("%H:%M:%S" if local.date() == today.date() else "%Y-%m-%d %H:%M:%S")
    left = (eta - now).total_seconds()
    return f" ETA {shown} (" + (f"in {format_duration(left)}" if left >= 1 else "any moment") + ")"


def run_progress_text(run: Run) -> str:
    """``42% (420/1,000 steps)``: the run's steps in a final state."""
    percent = run.percent
    counted = f"{run.steps_done:,}/{run.steps_total:,} steps"
    return counted if percent is None else f"{percent:.0f}% ({counted})"


def waiting_text(step: StepRun) -> str:
    """``waits for signal 'approve' (until 12:00:00)``, ``sleeps until ...``, ``waits for
    child run ...``: a suspended step's ``waiting_for`` in words."""
    what = step.waiting_for or ""
    until = f" until {format_time(step.wake_at)}" if step.wake_at else ""
    if what == "timer":
        return f"sleeps{until}"
    if what.startswith("signal:"):
        timeout = f" (times out at {format_time(step.wake_at)})" if step.wake_at else ""
        return f"waits for signal {what.removeprefix('signal:')!r}{timeout}"
    if what.startswith("run:"):
        return f"waits for child run {what.removeprefix('run:')}"
    if what == "retry":
        return f"retries{until}"
    return f"waits for {what}{until}" if what else "suspended"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _short(value: Any, limit: int = 40) -> str:
    text = _json(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: failed attempts listed under a run before the rest are counted (all with --verbose)
_MAX_FAILED_ATTEMPTS = 20


def _failed_attempts(run: Run, verbose: bool) -> list[RenderableType]:
    lines: list[RenderableType] = []
    listed = more = 0
    for step in run.steps.values():
        for attempt in step.attempts:
            if attempt.error is None:
                continue
            if not verbose and listed >= _MAX_FAILED_ATTEMPTS:
                more += 1
                continue
            listed += 1
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
    if more:
        lines.append(Text(f"  … {more:,} more (--verbose lists them all)", style="dim"))
    if lines:
        lines.insert(0, Text("\nattempts that did not complete", style="bold"))
    return lines


# -- legato runs history ---------------------------------------------------------------------


def history_table(events: Iterable[Event], *, full: bool = False) -> Table:
    """A run's events, oldest first: when, what, which step (and attempt), by whom, details.

    Details are summed up on one line (an error as ``Type: message``) unless ``full``.
    """
    table = Table(header_style="bold", box=None, pad_edge=False)
    table.add_column("time", no_wrap=True, style="dim")
    table.add_column("event", no_wrap=True)
    table.add_column("step", no_wrap=True)
    table.add_column("by", no_wrap=True)
    table.add_column("details", overflow="fold" if full else "ellipsis", no_wrap=not full)
    for event in events:
        step = event.step_id or ""
        if event.attempt is not None:
            step += f" #{event.attempt}"
        table.add_row(
            _event_time(event.at),
            Text(event.type, style=_STYLES.get(event.type.rpartition(".")[2], "")),
            step,
            event.actor or "",
            _event_details(event.details, full),
        )
    return table


def _event_time(at: datetime) -> str:
    """Local time to the millisecond: a run's events are often that close together."""
    return at.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _event_details(details: dict[str, Any] | None, full: bool) -> str:
    if not details:
        return ""
    if full:
        return _json(details)
    parts = []
    rest = dict(details)
    error = StepError.from_json(rest.pop("error", None))
    if error is not None:
        parts.append(_one_line(error, 160))
    if "retry_in" in rest:
        parts.append(f"again in {format_duration(rest.pop('retry_in'))}")
    if rest:
        parts.append(_short(rest, 120))
    return "; ".join(parts)
