"""What a stored run looks like to its readers: runs, step runs, attempts, events.

Plain frozen data, the same whichever database or transport produced it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from legato.model.limits import FlowLimits
from legato.model.progress import estimate_eta, progress_percent
from legato.model.states import RunStatus, StepStatus

#: the tag a failure handler run carries: the id of the run it handles
HANDLER_TAG = "legato.handler_of"

__all__ = ["Attempt", "Event", "Run", "StepError", "StepRun", "clean_text", "exception_details"]


#: longest message and traceback kept; a traceback keeps its end, where the error is
MAX_MESSAGE_CHARS = 10_000
MAX_TRACEBACK_CHARS = 20_000
MAX_DETAILS_CHARS = 16_000


@dataclass(frozen=True)
class StepError:
    """Why an attempt, step or run failed.

    Its text is made storable as it is built: characters no database can hold
    (NUL, lone surrogates) are escaped and lengths are bounded, so recording
    an error can never fail the way the error itself did.
    """

    type: str
    message: str
    traceback: str | None = None
    step: str | None = None
    #: what else is known, as JSON: an exception's ``details`` attribute, its notes
    #: (``add_note``) and its cause; bounded like the message
    details: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", clean_text(self.type, 200))
        object.__setattr__(self, "message", clean_text(self.message, MAX_MESSAGE_CHARS))
        if self.traceback is not None:
            text = clean_text(self.traceback, None)
            object.__setattr__(self, "traceback", text[-MAX_TRACEBACK_CHARS:])
        if self.details is not None:
            object.__setattr__(self, "details", _bounded_details(self.details))

    @classmethod
    def of(cls, exc: BaseException, *, traceback: str | None = None) -> StepError:
        """The error an exception stands for: its class name, message and details."""
        return cls(
            type=type(exc).__qualname__,
            message=str(exc) or type(exc).__qualname__,
            traceback=traceback,
            details=exception_details(exc),
        )

    def at_step(self, step_id: str) -> StepError:
        """The same error, naming the step it happened in (for the run's error)."""
        return StepError(
            self.type, self.message, self.traceback, step=step_id, details=self.details
        )

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> StepError | None:
        if not data:
            return None
        details = data.get("details")
        return cls(
            type=data.get("type", "Error"),
            message=data.get("message", ""),
            traceback=data.get("traceback"),
            step=data.get("step"),
            details=details if isinstance(details, dict) else None,
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.details:
            data["details"] = self.details
        if self.traceback:
            data["traceback"] = self.traceback
        if self.step:
            data["step"] = self.step
        return data

    def __str__(self) -> str:
        where = f"step {self.step!r}: " if self.step else ""
        return f"{where}{self.type}: {self.message}"


def exception_details(exc: BaseException) -> dict[str, Any] | None:
    """What an exception tells beyond its message: its ``details`` attribute (a mapping,
    as a task raising its own error may give), its notes and its cause."""
    details: dict[str, Any] = {}
    given = getattr(exc, "details", None)
    if isinstance(given, Mapping) and given:
        details.update({str(k): v for k, v in given.items()})
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list) and notes:
        details["notes"] = [clean_text(n, MAX_MESSAGE_CHARS) for n in notes]
    cause = exc.__cause__
    if cause is not None:
        details["cause"] = clean_text(f"{type(cause).__qualname__}: {cause}", MAX_MESSAGE_CHARS)
    return details or None


def _bounded_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """Details every database stores: JSON (anything else as its text), at most
    ``MAX_DETAILS_CHARS`` of it. Never raises: recording an error must not fail."""
    try:
        plain = _clean_value(json.loads(json.dumps(dict(details), default=str)))
        text = json.dumps(plain, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return {"unreadable": clean_text(repr(details), MAX_DETAILS_CHARS)}
    if len(text) > MAX_DETAILS_CHARS:
        return {"truncated": clean_text(text, MAX_DETAILS_CHARS)}
    return dict(plain)


def _clean_value(value: Any) -> Any:
    """JSON as both databases keep it: text escaped as messages are, no NaN or infinity."""
    if isinstance(value, str):
        return clean_text(value, None)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, list):
        return [_clean_value(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(k, None): _clean_value(v) for k, v in value.items()}
    return value


def clean_text(value: object, limit: int | None) -> str:
    """Text every database stores as given: NUL and lone surrogates escaped, length bounded."""
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(text) > limit:
        text = text[: limit - 20] + f"... [{len(text) - limit + 20:,} more characters]"
    return text


@dataclass(frozen=True)
class Attempt:
    """One try of a step. ``status`` is a step status, or ``lost`` (its worker
    was killed, stuck or cut off), ``released`` (its worker stopped on purpose
    and handed it back) or ``stopped`` (asked to stop by a pause with
    ``stop_now``, it went back to the queue)."""

    number: int
    status: str
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    error: StepError | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


@dataclass(frozen=True)
class StepRun:
    step_id: str
    task: str
    status: StepStatus
    attempt: int
    max_attempts: int
    #: keyword arguments as resolved for the latest attempt (None before it ran)
    inputs: dict[str, Any] | None
    #: positional arguments as resolved for the latest attempt
    args: list[Any]
    output: Any
    error: StepError | None
    worker: str | None
    queue: str
    priority: int
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    #: attempts the task's own failures ended (what ``retry`` budgets)
    failures: int = 0
    #: attempts whose worker was lost (killed, stuck or cut off; budgeted apart)
    lost: int = 0
    max_lost_attempts: int = 3
    #: inputs that could not be resolved for the latest attempt, by name
    input_errors: dict[str, str] = field(default_factory=dict)
    attempts: tuple[Attempt, ...] = ()
    #: the step's kind: ``task``, ``switch``, ``map``, ... or ``item`` (a map's item
    #: with steps of its own) and ``iteration`` (a loop's)
    kind: str = "task"
    #: the spec step this is an instance of (``step_id`` is the instance: ``fetch[3]``)
    spec_step: str = ""
    #: the instance that holds it (``""``: the run itself)
    scope: str = ""
    #: its item's index in a map, or its iteration's number in a loop
    index: int | None = None
    #: its map item's value
    item: Any = None
    #: what a suspended step waits for: ``timer``, ``signal:<name>``, ``run:<id>``, ``retry``
    waiting_for: str | None = None
    #: when a suspended step's timer fires
    wake_at: datetime | None = None
    #: the child run of a sub-workflow step
    child_run_id: str | None = None
    #: what the task last reported through ``ctx.progress``: ``done``, ``total``
    #: (or None), ``message`` (or None) and ``at`` (epoch seconds)
    progress: dict[str, Any] | None = None
    #: what the task last gave ``ctx.heartbeat(details=...)``
    heartbeat_details: Any = None
    #: the run was cancelled (or paused with ``stop_now``) while this attempt ran:
    #: its worker has been asked to stop it
    stop_requested: bool = False
    #: the flow-limit slot a queued step waits its turn in (its task, or its task and
    #: key value), and the limits it is held to; None for a step without limits
    flow_slot: str | None = None
    flow_limits: FlowLimits | None = None

    @property
    def percent(self) -> float | None:
        """``progress`` as a percentage of its total (None without a total)."""
        return progress_percent(self.progress)

    @property
    def eta(self) -> datetime | None:
        """When the running attempt should end, at the rate its progress reports show
        (None when unknowable: no total, nothing done yet, not running)."""
        if self.status is not StepStatus.RUNNING:
            return None
        return estimate_eta(self.progress, self.started_at)

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


@dataclass(frozen=True)
class Run:
    id: str
    workflow: str
    version: str
    workflow_hash: str
    status: RunStatus
    params: dict[str, Any]
    outputs: dict[str, Any] | None
    error: StepError | None
    tags: dict[str, str]
    created_by: str | None
    correlation_id: str | None
    idempotency_key: str | None
    parent_run_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    steps_total: int
    #: of the ``steps_total`` step instances (the rows holding a map item's or a loop
    #: iteration's steps are not counted), those in a final state: completed, skipped,
    #: failed or cancelled
    steps_done: int
    variables: dict[str, Any] = field(default_factory=dict)
    #: instance key -> step run, in the workflow's order; empty when fetched without steps
    steps: dict[str, StepRun] = field(default_factory=dict)
    #: what drives it: ``workflow`` (its steps), ``task`` (one task call, started with
    #: ``client.enqueue``) or ``external`` (tracked from outside: no steps, its status
    #: set by its creator through ``client.update_workflow_run_status``)
    kind: str = "workflow"
    #: the step of the parent run this run is the sub-workflow of
    parent_step: str | None = None
    root_run_id: str | None = None
    #: the time the run is for (a day's batch, a schedule's slot): ``run.logical_date``
    #: in expressions; by default the time it was created
    logical_date: datetime | None = None
    #: the run's steps that call a task (map items included), as they unfold
    task_count: int = 0
    #: how often the run was set going: 1, and one more for each retry, rerun or restart
    attempt: int = 1
    #: the run its workflow's failure handler started for it (the latest, if it failed
    #: again after a retry); read with the run's steps only
    failure_handler_run_id: str | None = None

    @property
    def handler_of(self) -> str | None:
        """The run this run handles the failure of, if it is a failure handler run."""
        return self.tags.get(HANDLER_TAG)

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def percent(self) -> float | None:
        """Its steps in a final state, as a percentage of its steps (None with none)."""
        if self.steps_total <= 0:
            return None
        return max(0.0, min(100.0, 100.0 * self.steps_done / self.steps_total))

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def __repr__(self) -> str:
        parts = [
            f"id={self.id!r}",
            f"workflow='{self.workflow}@{self.version}'",
            f"status={self.status.value!r}",
            f"steps={self.steps_done}/{self.steps_total}",
        ]
        if self.outputs:
            shown = repr(self.outputs)
            parts.append(f"outputs={shown if len(shown) <= 80 else shown[:77] + '...'}")
        if self.error:
            parts.append(f"error={str(self.error)[:120]!r}")
        return f"Run({', '.join(parts)})"


@dataclass(frozen=True)
class Event:
    """One entry of a run's history."""

    id: int
    run_id: str
    step_id: str | None
    attempt: int | None
    type: str
    at: datetime
    actor: str | None
    details: dict[str, Any] | None
