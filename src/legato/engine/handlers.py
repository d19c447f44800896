"""Failure handlers, decided purely: what a handler run is told of the run it handles.

The store starts the handler run in the transaction that ends the failed run;
what it starts it with is decided here, from the failed run's facts alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legato.expressions import evaluate
from legato.model.spec import FAILURE_FACTS, FailureHandler, WorkflowSpec

__all__ = ["failure_facts", "handler_params"]


def failure_facts(
    run: Mapping[str, Any], params: Mapping[str, Any], status: str, error: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The failed run as its handler's params read it (``${{ run.* }}``).

    ``run`` is the run's context (id, workflow, version, tags, ...); ``error`` its
    error as JSON (type, message, step), without the traceback.
    """
    shown = None
    if error is not None:
        shown = {k: error[k] for k in ("type", "message", "step") if error.get(k) is not None}
    return {
        "id": run.get("id"),
        "run_id": run.get("id"),
        "workflow": run.get("workflow"),
        "version": run.get("version"),
        "status": status,
        "error": shown,
        "params": dict(params),
        "tags": dict(run.get("tags") or {}),
        "correlation_id": run.get("correlation_id"),
        "logical_date": run.get("logical_date"),
    }


def handler_params(
    handler: FailureHandler, spec: WorkflowSpec, facts: Mapping[str, Any]
) -> dict[str, Any]:
    """The params the handler run is started with (not yet bound to ``spec``).

    Given ``params`` are evaluated against ``run`` (the facts) and ``params`` (the
    failed run's). Without them, the handler gets those of :data:`FAILURE_FACTS`
    it declares (all of them if it takes extra params). Raises what evaluating raises.
    """
    if handler.params is not None:
        context = {"run": dict(facts), "params": dict(facts.get("params") or {})}
        value = evaluate(handler.params, context)
        return dict(value)
    offered = {name: facts[name] for name in FAILURE_FACTS}
    if spec.extra_params:
        return offered
    return {name: value for name, value in offered.items() if name in spec.params}
