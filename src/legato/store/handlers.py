"""Failure handler runs, started in the transaction that ends the run they handle.

A run whose workflow names ``on_failure`` gets a run of that workflow when it
fails (or is cancelled with ``run_failure_handler``). The handler run is
inserted by the same transaction that writes the failed status, behind the
same status guard, so a crash either loses both or keeps both, and a status
is written once: one failure, one handler run. A handler that cannot be
started (not stored, params it refuses) is recorded as the event
``run.failure_handler_failed`` and the run stays failed: the transaction
ending it never fails for it. A handler run carries the tag
``legato.handler_of`` (the run it handles) and starts no handler of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from legato.engine.handlers import failure_facts, handler_params
from legato.engine.planner import plan_new_run
from legato.errors import LegatoError
from legato.model.runs import HANDLER_TAG, StepError
from legato.model.states import RunStatus
from legato.payload import to_json
from legato.store.base import NewRun

if TYPE_CHECKING:
    from legato.model.spec import WorkflowSpec
    from legato.store.unit import Unit

__all__ = ["start_failure_handler"]


def start_failure_handler(
    unit: Unit, run_id: str, status: RunStatus, error: StepError | None
) -> str | None:
    """Start the run's failure handler, if its workflow names one; return its run id.

    Called by the unit that just ended the run (holding its lock). Never raises
    for the handler's sake: what prevents it is recorded on the failed run.
    """
    store, tx = unit.store, unit.tx
    context = store.context(tx, run_id)
    tags = context.run.get("tags") or {}
    if HANDLER_TAG in tags:
        return None  # a handler's failure starts no other handler
    spec = store.graph(tx, context.spec_hash).spec
    handler = spec.on_failure
    if handler is None:
        return None
    facts = failure_facts(
        context.run, context.params, status.value, None if error is None else error.to_json()
    )
    which = handler.name + (f"@{handler.version}" if handler.version else "")

    def refused(exc: BaseException) -> None:
        unit.event(
            run_id,
            "run.failure_handler_failed",
            details={"workflow": which, "reason": str(exc) or type(exc).__name__},
        )

    handler_spec: WorkflowSpec | None
    try:
        if handler.spec is not None:
            handler_spec = spec.failure_handler_spec
        else:
            # A query: only its answer (none stored, a stored spec unreadable) is caught;
            # a database error ends the transaction as any would.
            handler_spec = store.newest_spec(tx, handler.workflow or "", handler.version)
    except (LegatoError, ValidationError) as exc:
        refused(exc)
        return None
    assert handler_spec is not None
    try:  # pure: whatever stops the handler here is recorded; the run ends as it was
        params = handler_spec.bind_params(handler_params(handler, handler_spec, facts))
        plain, _ = to_json(
            params, what=f"params of {handler_spec.label}", max_bytes=store.max_payload_bytes
        )
    except Exception as exc:
        refused(exc)
        return None
    graph = handler_spec.graph
    defaults = store.known_defaults(tx, graph)
    new = NewRun(
        spec=handler_spec,
        params=plain,
        steps=plan_new_run(graph, defaults),
        tags={HANDLER_TAG: run_id},
        created_by=context.run.get("created_by"),
        correlation_id=context.run.get("correlation_id"),
        task_defaults=defaults,
    )
    store._insert_run(unit, new)
    details: dict[str, Any] = {"run": new.run_id, "workflow": handler_spec.label}
    unit.event(run_id, "run.failure_handler_started", details=details)
    return new.run_id
