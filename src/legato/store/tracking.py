"""Runs tracked from outside: their status as their creator reports it, and the
task runs spawned into them.

An ``external`` run has no steps: the application drives the work and tells
legato where it stands. Each write is one transaction that locks the run's row
first, as every operation does (:mod:`legato.store.operations`), and moves the
status only along the transition table (:mod:`legato.model.states`), guarded in
SQL by the statuses it may move from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from legato.errors import ConflictError, RunNotFoundError
from legato.model.runs import StepError
from legato.model.states import RUN_MOVES, RunStatus
from legato.payload import dumps
from legato.store.base import TrackedStatus
from legato.store.unit import Unit

if TYPE_CHECKING:
    from legato.store.sql import SQLStore

__all__ = ["allowed_from", "hold_parent", "set_status"]


def allowed_from(target: RunStatus) -> list[str]:
    """The statuses a tracked run may be in to be set to ``target``: those the
    transition table moves to it, and ``target`` itself while unfinished (the
    other fields change, the status stays)."""
    # A reported status moves as a run does by itself; only an operator reopens a
    # finished run (retry, rerun, restart), and a finished tracked run is final.
    found = {old for old, new in RUN_MOVES if new is target}
    if not target.finished:
        found.add(target)
    return sorted(s.value for s in found)


def _moves_from(current: RunStatus) -> str:
    targets = sorted(new.value for old, new in RUN_MOVES if old is current)
    return ", ".join(targets) if targets else "nothing: its status is final"


def set_status(store: SQLStore, run_id: str, change: TrackedStatus, *, conn: Any = None) -> None:
    """Set a tracked run's status and what comes with it (see ``Store.set_tracked_status``)."""
    run_id = store._check_run_id(run_id)
    error = change.error
    if error is None and change.status is RunStatus.FAILED:
        error = StepError("Failed", "reported failed by its creator")
    if error is None and change.status is RunStatus.CANCELLED:
        error = StepError("Cancelled", "reported cancelled by its creator")
    error_json = None
    if error is not None:
        error_json = error.to_json()
        if change.error_details:
            error_json["details"] = change.error_details

    def update(hints: set[str]) -> None:
        with store.transaction_for(conn) as tx:
            unit = Unit(store, tx, hints)
            unit.lock_runs({run_id, *hints})
            row = tx.one("get_run", id=run_id)
            if row is None:
                raise RunNotFoundError(f"no run with id {run_id!r}")
            current = RunStatus(row["status"])
            _check(run_id, row["kind"], current, change.status)
            store.checkpoint("tracked_run_locked")
            changed = tx.one(
                "set_tracked_status",
                id=run_id,
                status=change.status.value,
                allowed=store._list(allowed_from(change.status)),
                outputs=None if change.outputs is None else dumps(change.outputs),
                error=None if error_json is None else dumps(error_json),
                started_at=_epoch(change.started_at),
                finished_at=_epoch(change.finished_at),
                task_count=change.task_count,
                now=store.clock.now(),
            )
            if changed is None:  # the run is locked and was checked: cannot happen
                raise ConflictError(f"run {run_id} changed while it was being updated")
            unit.runs[run_id] = change.status
            _record(unit, run_id, current, change, error_json)
            if change.status in (RunStatus.FAILED, RunStatus.CANCELLED):
                unit.cancel_children(run_id, f"the run it was spawned into {change.status.value}")
            unit.flush_events()

    store.retrying(update)


def _check(run_id: str, kind: str, current: RunStatus, target: RunStatus) -> None:
    if kind != "external":
        what = "a standalone task's run" if kind == "task" else "a workflow run"
        raise ConflictError(
            f"run {run_id} is {what}, driven by its steps: only a run made with "
            "create_workflow_run takes its status from outside"
        )
    if current is target and current.finished:
        raise ConflictError(f"run {run_id} is {current.value}: its status is final")
    if current is not target and (current, target) not in RUN_MOVES:
        raise ConflictError(
            f"run {run_id} is {current.value}: it cannot become {target.value} "
            f"(from {current.value} it can become {_moves_from(current)})"
        )


def _record(
    unit: Unit,
    run_id: str,
    current: RunStatus,
    change: TrackedStatus,
    error: dict[str, Any] | None,
) -> None:
    """The history entry of the change: the move, or ``run.updated`` when the status stays."""
    target = change.status
    details: dict[str, Any] = {}
    if change.task_count is not None:
        details["task_count"] = change.task_count
    if change.outputs is not None:
        details["result"] = True
    if target is current:
        unit.event(run_id, "run.updated", actor=change.actor, details=details or None)
        return
    if current is RunStatus.PAUSED and target is RunStatus.RUNNING:
        type_ = "run.resumed"
    elif target is RunStatus.RUNNING:
        type_ = "run.started"
    else:
        type_ = f"run.{target.value}"
    if error is not None:
        details["error"] = error
    unit.event(run_id, type_, actor=change.actor, details=details or None)


def hold_parent(unit: Unit, parent_run_id: str) -> None:
    """Lock the external run a task is spawned into; refuse any other run, or a finished
    one (held, it cannot finish before the task's run is stored, so its end reaches it)."""
    parent_run_id = unit.store._check_run_id(parent_run_id)
    unit.lock_runs({parent_run_id, *unit.hints})
    row = unit.tx.one("get_run", id=parent_run_id)
    if row is None:
        raise RunNotFoundError(f"no run with id {parent_run_id!r} to spawn a task into")
    if row["kind"] != "external":
        raise ConflictError(
            f"run {parent_run_id} is driven by its steps: tasks are spawned only into "
            "runs made with create_workflow_run"
        )
    status = RunStatus(row["status"])
    if status.finished:
        raise ConflictError(
            f"run {parent_run_id} is {status.value}: no task can be spawned into it"
        )
    unit.store.checkpoint("tracked_run_locked")


def _epoch(value: Any) -> float | None:
    return None if value is None else float(value.timestamp())
