"""Operations on one run from outside its workers: signal, variables, pause, resume,
cancel, retry, rerun, restart, skip.

Each is one transaction that locks the run's row first (so the run cannot finish
between the check of its status and the change), then moves it on through a
:class:`~legato.store.unit.Unit`, exactly as a worker's batch does. Each is
legal only from some statuses; from any other it raises
:class:`~legato.errors.OperationRefusedError` naming the run, its status and
what the operation needs, and changes nothing.

A paused run's signals are delivered as they arrive (the waiting step
completes), like a step finishing while it is paused; what follows waits for
the resume as all its work does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from legato.engine.planner import plan_new_run
from legato.errors import ConflictError, OperationRefusedError, ParamError, RunNotFoundError
from legato.model.instances import Place
from legato.model.states import RunStatus, StepStatus
from legato.payload import dumps, to_json
from legato.store.flow import Inst
from legato.store.repair import Repair
from legato.store.unit import Unit

if TYPE_CHECKING:
    from legato.store.sql import SQLStore

__all__ = [
    "cancel",
    "pause",
    "rerun",
    "restart",
    "resume",
    "retry",
    "signal",
    "skip",
    "update_variables",
]

T = TypeVar("T")
_GOING = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSED)
_ENDED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


def signal(
    store: SQLStore, run_id: str, name: str, payload: Any, *, sent_by: str | None = None
) -> str:
    """Deliver a signal to the step waiting for it, or keep it for the next one."""
    run_id = store._check_run_id(run_id)
    _, payload_json = to_json(
        payload, what=f"signal {name!r} payload", max_bytes=store.max_payload_bytes
    )

    def deliver(hints: set[str]) -> str:
        with store._transaction() as tx:
            # The run locked, so it cannot finish between this check and the
            # delivery (and keep a signal nobody will read).
            unit = Unit(store, tx, hints, actor=sent_by)
            unit.lock_runs({run_id, *hints})
            status = unit.runs.get(run_id)
            if status is None:
                raise RunNotFoundError(f"no run with id {run_id!r}")
            if status.finished:
                raise ConflictError(
                    f"run {run_id} is {status.value}: a signal can no longer reach it"
                )
            delivered = unit.progress.deliver_signal(run_id, name, payload_json, sent_by)
            unit.flush_events()
        return delivered

    return store.retrying(deliver)


def cancel(
    store: SQLStore,
    run_id: str,
    reason: str,
    *,
    actor: str | None = None,
    run_failure_handler: bool = False,
) -> None:
    """End an unfinished run as cancelled, with its child runs; ask its running attempts
    to stop; start its failure handler if asked."""

    def work(unit: Unit, run_id: str, status: RunStatus) -> None:
        if status.finished:
            raise _refuse(run_id, status, "only a pending, running or paused run can be cancelled")
        unit.cancel_run(run_id, reason, actor=actor, run_failure_handler=run_failure_handler)

    _operate(store, run_id, work, actor)


def update_variables(
    store: SQLStore, run_id: str, values: Mapping[str, Any], *, actor: str | None = None
) -> dict[str, Any]:
    """Merge ``values`` into an unfinished run's variables; return them all."""
    run_id = store._check_run_id(run_id)
    plain, _ = to_json(dict(values), what="variables", max_bytes=store.max_payload_bytes)

    def update(hints: set[str]) -> dict[str, Any]:
        with store._transaction() as tx:
            return _update_variables(Unit(store, tx, hints, actor=actor), run_id, plain, actor)

    return store.retrying(update)


def _update_variables(
    unit: Unit, run_id: str, plain: dict[str, Any], actor: str | None
) -> dict[str, Any]:
    unit.lock_runs([run_id, *unit.hints])
    status = unit.runs.get(run_id)
    if status is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    if status.finished:
        raise ConflictError(f"run {run_id} is {status.value}: its variables are final")
    unit.progress.set_variables(run_id, plain, actor=actor)
    merged = unit.progress.variables(run_id)
    unit.store.checkpoint("before_commit")
    unit.flush_events()
    return merged


# -- the shape every operation has ---------------------------------------------------------


def _operate(
    store: SQLStore,
    run_id: str,
    work: Callable[[Unit, str, RunStatus], T],
    actor: str | None = None,
) -> T:
    """``work(unit, run_id, status)`` in one transaction, the run locked first; events that
    name nobody are ``actor``'s."""
    run_id = store._check_run_id(run_id)

    def once(hints: set[str]) -> T:
        with store._transaction() as tx:
            unit = Unit(store, tx, hints, actor=actor)
            unit.lock_runs({run_id, *hints})
            status = unit.runs.get(run_id)
            if status is None:
                raise RunNotFoundError(f"no run with id {run_id!r}")
            result = work(unit, run_id, status)
            store.checkpoint("before_commit")
            unit.flush_events()
        return result

    return store.retrying(once)


def _refuse(run_id: str, status: RunStatus, needed: str) -> OperationRefusedError:
    return OperationRefusedError(f"run {run_id} is {status.value}: {needed}")


def _top_level(unit: Unit, run_id: str, what: str) -> None:
    """A sub-workflow's run is set going again through its parent's step."""
    parent = unit.store.context(unit.tx, run_id).parent_run_id
    if parent is not None:
        raise OperationRefusedError(
            f"run {run_id} is the sub-workflow run of run {parent}: {what} the parent run "
            "(its step starts a new child run)"
        )


def _nothing_running(unit: Unit, run_id: str, what: str) -> None:
    running = [
        r["key"]
        for r in unit.tx.all("get_steps", run_id=run_id)
        if r["status"] == StepStatus.RUNNING and r["kind"] == "task"
    ]
    if running:
        shown = ", ".join(running[:5]) + (" ..." if len(running) > 5 else "")
        raise OperationRefusedError(
            f"run {run_id} still has {len(running)} step(s) running ({shown}): {what} once "
            "they have finished"
        )


def _reopen(
    unit: Unit,
    run_id: str,
    *,
    params: dict[str, Any] | None = None,
    spec_hash: str | None = None,
    version: str | None = None,
    fresh: bool = False,
) -> int:
    """The ended run going again: its next attempt, its caches read anew."""
    row = unit.tx.one(
        "reopen_run",
        id=run_id,
        params=None if params is None else dumps(params),
        spec_hash=spec_hash,
        version=version,
        fresh=fresh,
        now=unit.store.clock.now(),
    )
    if row is None:  # pragma: no cover - the run is locked and was checked
        raise ConflictError(f"run {run_id} could not be set going again")
    unit.runs[run_id] = RunStatus.RUNNING
    unit.failing.discard(run_id)
    attempt = int(row["attempt"])
    unit.store.check_attempt(unit.tx, run_id, attempt)
    unit.tx.after_commit(lambda: unit.store.forget_context(run_id))
    return attempt


# -- pause and resume ----------------------------------------------------------------------


def pause(
    store: SQLStore, run_id: str, *, stop_now: bool = False, actor: str | None = None
) -> None:
    """Pause a pending or running run and its child runs: what runs finishes, nothing
    new starts (no claim, no timer) until it is resumed; ``stop_now`` also asks the
    running attempts to stop (they go back to the queue, their retries not spent)."""

    def work(unit: Unit, run_id: str, status: RunStatus) -> None:
        if status not in (RunStatus.PENDING, RunStatus.RUNNING):
            raise _refuse(run_id, status, "only a pending or running run can be paused")
        unit.pause_run(run_id, actor=actor, stop_now=stop_now)

    _operate(store, run_id, work, actor)


def resume(store: SQLStore, run_id: str, *, actor: str | None = None) -> None:
    """Resume a paused run and its paused child runs: what was held is claimable again,
    timers that fell due meanwhile fire."""

    def work(unit: Unit, run_id: str, status: RunStatus) -> None:
        if status is not RunStatus.PAUSED:
            raise _refuse(run_id, status, "only a paused run can be resumed")
        parent = unit.store.context(unit.tx, run_id).parent_run_id
        if parent is not None:
            row = unit.tx.one("get_run", id=parent)
            if row is not None and row["status"] == RunStatus.PAUSED:
                raise OperationRefusedError(
                    f"run {run_id} is paused with its parent run {parent}: resume the parent"
                )
        unit.resume_run(run_id, actor=actor)

    _operate(store, run_id, work, actor)


# -- setting an ended run going again ------------------------------------------------------------


def retry(store: SQLStore, run_id: str, *, actor: str | None = None) -> list[str]:
    """Set a failed or cancelled run going from where it stopped; return the instances that
    run again (failed and cancelled ones, with their resolved inputs)."""

    def work(unit: Unit, run_id: str, status: RunStatus) -> list[str]:
        if status not in (RunStatus.FAILED, RunStatus.CANCELLED):
            raise _refuse(run_id, status, "only a failed or cancelled run can be retried")
        _top_level(unit, run_id, "retry")
        attempt = _reopen(unit, run_id)
        unit.tx.run("clear_stop", run_id=run_id)
        repair = Repair(unit, run_id)
        again = repair.retry()
        unit.event(
            run_id, "run.retried", actor=actor, details={"attempt": attempt, "steps": len(again)}
        )
        repair.apply(actor=actor, operation="retry")
        if not again:  # nothing of it failed (its outputs did): decide its end again
            unit.progress.complete_run(run_id)
        return again

    return _operate(store, run_id, work, actor)


def rerun(
    store: SQLStore,
    run_id: str,
    from_step: str,
    *,
    params: Mapping[str, Any] | None = None,
    actor: str | None = None,
) -> list[str]:
    """Run an ended run again from ``from_step`` (an instance key): it and everything
    downstream of it, in its scope and the scopes around it, run afresh, with ``params``
    merged into the run's if given. Returns the instances that run again."""

    def work(unit: Unit, run_id: str, status: RunStatus) -> list[str]:
        if status not in _ENDED:
            raise _refuse(
                run_id,
                status,
                "only a completed, failed or cancelled run can be rerun; pause or cancel it first",
            )
        _top_level(unit, run_id, "rerun")
        _nothing_running(unit, run_id, "rerun it")
        repair = Repair(unit, run_id)
        if from_step not in repair.rows:
            known = ", ".join(sorted(repair.rows)[:10]) or "none"
            raise ParamError(f"run {run_id} has no step {from_step!r} (its steps: {known})")
        bound = None
        if params is not None:
            context = unit.store.context(unit.tx, run_id)
            spec = unit.store.graph(unit.tx, context.spec_hash).spec
            merged = spec.bind_params({**context.params, **dict(params)})
            bound, _ = to_json(
                merged, what=f"params of {spec.label}", max_bytes=unit.store.max_payload_bytes
            )
        attempt = _reopen(unit, run_id, params=bound)
        again = repair.rerun(from_step)
        unit.event(
            run_id,
            "run.rerun",
            actor=actor,
            details={
                "attempt": attempt,
                "from_step": from_step,
                "steps": len(again),
                **({"params": bound} if bound is not None else {}),
            },
        )
        repair.apply(actor=actor, operation="rerun")
        return again

    return _operate(store, run_id, work, actor)


def restart(
    store: SQLStore, run_id: str, *, use_latest_version: bool = False, actor: str | None = None
) -> int:
    """Start an ended run again from the beginning (its events kept, its steps anew), on
    the newest deployed or stored version if asked; return its new attempt number."""

    def work(unit: Unit, run_id: str, status: RunStatus) -> int:
        if status not in _ENDED:
            raise _refuse(
                run_id, status, "only a completed, failed or cancelled run can be restarted"
            )
        _top_level(unit, run_id, "restart")
        context = unit.store.context(unit.tx, run_id)
        spec = unit.store.graph(unit.tx, context.spec_hash).spec
        if use_latest_version:
            spec = unit.store.newest_spec(unit.tx, spec.name, None)
            spec.bind_params(dict(context.params))  # the run's params must still fit
        unit.tx.run("delete_run_steps", run_id=run_id)
        unit.tx.run("delete_run_counters", run_id=run_id)
        attempt = _reopen(
            unit,
            run_id,
            spec_hash=spec.content_hash,
            version=spec.version,
            fresh=True,
        )
        unit.event(
            run_id,
            "run.restarted",
            actor=actor,
            details={"attempt": attempt, "workflow": spec.label, "hash": spec.content_hash},
        )
        graph = unit.store.graph(unit.tx, spec.content_hash)
        defaults = unit.store.run_defaults(unit.tx, run_id, graph)
        unit.progress.open_scope(run_id, "", Place(), "", 0, rows=plan_new_run(graph, defaults))
        return attempt

    return _operate(store, run_id, work, actor)


def skip(
    store: SQLStore, run_id: str, step: str, output: Any = None, *, actor: str | None = None
) -> None:
    """Mark a step done with ``output`` and release what follows it: a waiting, queued or
    suspended step of a going run, or a failed step of a failed or cancelled run (which
    then goes on, as a retry does)."""
    _, output_json = to_json(
        output, what=f"step {step!r} output", max_bytes=store.max_payload_bytes
    )

    def work(unit: Unit, run_id: str, status: RunStatus) -> None:
        row = next((r for r in unit.tx.all("get_steps", run_id=run_id) if r["key"] == step), None)
        if row is None:
            raise ParamError(f"run {run_id} has no step {step!r}")
        step_status = StepStatus(row["status"])
        if status is RunStatus.COMPLETED:
            raise _refuse(run_id, status, "a step of a completed run cannot be skipped")
        ended = status in (RunStatus.FAILED, RunStatus.CANCELLED)
        allowed = (
            {StepStatus.FAILED}
            if ended
            else {StepStatus.WAITING, StepStatus.QUEUED, StepStatus.SUSPENDED}
        )
        if step_status not in allowed:
            needed = (
                "only its failed steps can be skipped (the run then goes on)"
                if ended
                else "only a waiting, queued or suspended step of it can be skipped"
            )
            raise OperationRefusedError(
                f"run {run_id} is {status.value} and its step {step!r} is "
                f"{step_status.value}: {needed}"
            )
        if ended:
            _top_level(unit, run_id, "skip the step of")
        done = unit.tx.one(
            "skip_step", id=row["id"], output=output_json, now=unit.store.clock.now()
        )
        if done is None:  # pragma: no cover - the run is locked and the step was read
            raise ConflictError(f"step {step!r} of run {run_id} changed meanwhile")
        unit.event(run_id, "step.completed", step_id=step, actor=actor, details={"skipped": True})
        child = unit.store._id(done["child_run_id"])
        if child is not None and step_status is StepStatus.SUSPENDED:
            unit.cancel_run(child, f"its step {step} was skipped", actor=actor)
        if ended:
            attempt = _reopen(unit, run_id)
            repair = Repair(unit, run_id)
            again = repair.retry()
            unit.event(
                run_id,
                "run.retried",
                actor=actor,
                details={"attempt": attempt, "steps": len(again), "skipped": step},
            )
            repair.apply(actor=actor, operation="skip")
            if not again:
                unit.progress.complete_run(run_id)
            return
        unit.progress.finished(Inst.of(run_id, {**done, "id": row["id"]}), StepStatus.COMPLETED)

    _operate(store, run_id, work, actor)
