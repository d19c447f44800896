"""What a stored run looks like to its readers: runs, step runs, attempts, events.

Plain frozen data, the same whichever database or transport produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from legato.model.states import RunStatus, StepStatus

__all__ = ["Attempt", "Event", "Run", "StepError", "StepRun"]


@dataclass(frozen=True)
class StepError:
    """Why an attempt, step or run failed."""

    type: str
    message: str
    traceback: str | None = None
    step: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> StepError | None:
        if not data:
            return None
        return cls(
            type=data.get("type", "Error"),
            message=data.get("message", ""),
            traceback=data.get("traceback"),
            step=data.get("step"),
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.traceback:
            data["traceback"] = self.traceback
        if self.step:
            data["step"] = self.step
        return data

    def __str__(self) -> str:
        where = f"step {self.step!r}: " if self.step else ""
        return f"{where}{self.type}: {self.message}"


@dataclass(frozen=True)
class Attempt:
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
    attempts: tuple[Attempt, ...] = ()

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
    steps_done: int
    variables: dict[str, Any] = field(default_factory=dict)
    #: step id -> step run, in the workflow's order; empty when fetched without steps
    steps: dict[str, StepRun] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status.finished

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
