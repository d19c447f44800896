"""Pure decisions: what a new run's steps look like, what a step's call is, what a
finished step does to its run. No database handle here; stores apply these
decisions inside their transactions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from legato.define.expressions import evaluate
from legato.errors import TemplateError
from legato.model.graph import Graph
from legato.model.spec import RetryPolicy, StepSpec
from legato.model.states import RunStatus, StepStatus

__all__ = [
    "NewStep",
    "StepPolicy",
    "TaskDefaults",
    "expression_context",
    "plan_new_run",
    "resolve_call",
    "resolve_outputs",
    "run_status_after_completion",
]


@dataclass(frozen=True)
class TaskDefaults:
    """What a registered task contributes when a step does not override it."""

    retry: RetryPolicy
    timeout: float | None
    queue: str
    priority: int


@dataclass(frozen=True)
class StepPolicy:
    retry: RetryPolicy
    timeout: float | None
    queue: str
    priority: int

    @classmethod
    def of(cls, step: StepSpec, defaults: TaskDefaults) -> StepPolicy:
        return cls(
            retry=step.retry or defaults.retry,
            timeout=step.timeout if step.timeout is not None else defaults.timeout,
            queue=step.queue or defaults.queue,
            priority=step.priority if step.priority is not None else defaults.priority,
        )


@dataclass(frozen=True)
class NewStep:
    """A step row as a new run starts."""

    step_id: str
    task: str
    position: int
    status: StepStatus
    deps_remaining: int
    policy: StepPolicy


def plan_new_run(graph: Graph, defaults: Mapping[str, TaskDefaults]) -> list[NewStep]:
    """Every step of a new run: roots queued, the rest waiting on a counter."""
    rows = []
    for position, step_id in enumerate(graph.order):
        step = graph.steps[step_id]
        deps = len(graph.deps[step_id])
        rows.append(
            NewStep(
                step_id=step_id,
                task=step.task,
                position=position,
                status=StepStatus.QUEUED if deps == 0 else StepStatus.WAITING,
                deps_remaining=deps,
                policy=StepPolicy.of(step, defaults[step.task]),
            )
        )
    return rows


def expression_context(
    params: Mapping[str, Any],
    outputs: Mapping[str, Any],
    run: Mapping[str, Any],
    variables: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The names an expression can read: ``params``, ``steps.<id>.output``, ``run``, ``vars``."""
    return {
        "params": params,
        "steps": {step_id: {"output": out} for step_id, out in outputs.items()},
        "run": run,
        "vars": variables or {},
    }


def resolve_call(step: StepSpec, context: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments a step's task is called with."""
    args = evaluate(step.args, context)
    kwargs = evaluate(step.inputs, context)
    if not isinstance(kwargs, dict):
        raise TemplateError(
            f"step {step.id!r}: inputs must evaluate to a mapping, got {type(kwargs).__name__}"
        )
    bad = [k for k in kwargs if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        raise TemplateError(f"step {step.id!r}: input names must be identifiers, got {bad!r}")
    return args, kwargs


def resolve_outputs(graph: Graph, context: Mapping[str, Any]) -> dict[str, Any]:
    """A finished run's outputs, from the workflow's output expressions."""
    return evaluate(graph.spec.outputs, context)


def run_status_after_completion(steps_done: int, steps_total: int) -> RunStatus | None:
    """A run completes when its last step does; ``None`` means it keeps running."""
    return RunStatus.COMPLETED if steps_done >= steps_total else None
