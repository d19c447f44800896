"""Rows as the objects readers get: a run with its steps, a step with its attempts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from legato.model.limits import FlowLimits
from legato.model.runs import Attempt, Run, StepError, StepRun
from legato.model.states import RunStatus, StepStatus

if TYPE_CHECKING:
    from legato.store.sql import SQLStore

__all__ = ["run_from_row", "step_from_row"]


def run_from_row(
    store: SQLStore,
    row: dict[str, Any],
    step_rows: list[dict[str, Any]],
    total: int,
    done: int,
    tasks: int = 0,
) -> Run:
    """A run row (and its step rows) as the :class:`~legato.Run` readers get."""
    if row.get("task_count") is not None:  # reported by an external run's creator
        tasks = int(row["task_count"])
    return Run(
        id=store._id(row["id"]) or "",
        workflow=row["workflow_name"],
        version=row["workflow_version"],
        # an external run's is the hash its creator gave, if any
        workflow_hash=row.get("workflow_hash") or row["spec_hash"],
        status=RunStatus(row["status"]),
        params=store._json(row["params"]),
        outputs=store._json(row["outputs"]),
        error=StepError.from_json(store._json(row["error"])),
        tags=store._json(row["tags"]),
        created_by=row["created_by"],
        correlation_id=row["correlation_id"],
        idempotency_key=row["idempotency_key"],
        parent_run_id=store._id(row["parent_run_id"]),
        created_at=store._ts(row["created_at"]),  # type: ignore[arg-type]
        started_at=store._ts(row["started_at"]),
        finished_at=store._ts(row["finished_at"]),
        steps_total=total,
        steps_done=done,
        task_count=tasks,
        variables=store._json(row["variables"]) or {},
        parent_step=row["parent_step"],
        root_run_id=store._id(row["root_run_id"]),
        # runs created before logical dates were kept read their created time
        logical_date=store._ts(row["logical_date"]) or store._ts(row["created_at"]),
        attempt=int(row.get("attempt") or 1),
        steps={s["key"]: step_from_row(store, s) for s in step_rows},
        kind=row.get("kind") or "workflow",
    )


def step_from_row(store: SQLStore, row: dict[str, Any]) -> StepRun:
    """A step row as a :class:`~legato.StepRun`, with its attempts, the current one last."""
    inputs = store._json(row["inputs"])
    attempts = [
        Attempt(
            number=h["attempt"],
            status=h["status"],
            worker=h.get("worker"),
            started_at=_epoch(h.get("started_at")),
            finished_at=_epoch(h.get("finished_at")),
            error=StepError.from_json(h.get("error")),
        )
        for h in store._json(row["history"]) or []
    ]
    status = StepStatus(row["status"])
    error = StepError.from_json(store._json(row["error"]))
    recorded = bool(attempts) and attempts[-1].number == row["attempt"]
    if row["attempt"] and not recorded and status not in (StepStatus.QUEUED, StepStatus.WAITING):
        # The current attempt: its row holds it until a retry moves it to the history.
        lost = error is not None and error.type == "LeaseExpired"
        attempts.append(
            Attempt(
                number=row["attempt"],
                status="lost" if lost and status is not StepStatus.RUNNING else status.value,
                worker=row["worker_id"],
                started_at=store._ts(row["started_at"]),
                finished_at=store._ts(row["finished_at"]),
                error=error if status in (StepStatus.FAILED, StepStatus.CANCELLED) else None,
            )
        )
    call = row["kind"] == "task" and isinstance(inputs, dict)
    return StepRun(
        step_id=row["key"],
        task=row["task"] or "",
        status=status,
        attempt=row["attempt"],
        max_attempts=row["max_attempts"] or 1,
        inputs=(inputs.get("kwargs", {}) if call else inputs) if inputs is not None else None,
        args=inputs.get("args", []) if call else [],
        input_errors=inputs.get("errors", {}) if call else {},
        output=store._json(row["output"]),
        error=error,
        worker=row["worker_id"],
        queue=row["queue"],
        priority=row["priority"],
        queued_at=store._ts(row["queued_at"]),
        started_at=store._ts(row["started_at"]),
        finished_at=store._ts(row["finished_at"]),
        failures=row["failures"],
        lost=row["lost"],
        max_lost_attempts=row["max_lost"] or 3,
        attempts=tuple(attempts),
        kind=row["kind"],
        spec_step=row["step_id"],
        scope=row["scope"],
        index=row["idx"],
        item=store._json(row["item"]) if row["idx"] is not None else None,
        waiting_for=row["waiting_for"] if status is StepStatus.SUSPENDED else None,
        wake_at=store._ts(row["wake_at"]) if status is StepStatus.SUSPENDED else None,
        child_run_id=store._id(row["child_run_id"]),
        progress=store._json(row.get("progress")),
        heartbeat_details=store._json(row.get("heartbeat_details")),
        stop_requested=bool(row.get("stop_requested")) and status is StepStatus.RUNNING,
        flow_slot=row.get("flow_key") if status is StepStatus.QUEUED else None,
        flow_limits=_flow_limits(row) if status is StepStatus.QUEUED else None,
    )


def _flow_limits(row: dict[str, Any]) -> FlowLimits | None:
    """A step row's flow limits as stored (None without any)."""
    rate = None
    if row.get("flow_rate") is not None and row.get("flow_window") is not None:
        rate = (int(row["flow_rate"]), float(row["flow_window"]))
    limits = FlowLimits(row.get("flow_concurrency"), row.get("flow_by"), rate)
    return limits if limits.limited else None


def _epoch(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(float(value), UTC)
