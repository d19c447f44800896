"""Pure decisions: what a new run's steps look like, what a step's call is, what a
finished step does to its run. No database handle here; stores apply these
decisions inside their transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from legato.errors import DefinitionError, LegatoError, TemplateError
from legato.expressions import evaluate
from legato.model.graph import Graph
from legato.model.spec import DEFAULT_MAX_LOST_ATTEMPTS, RetryPolicy, StepSpec, TaskStep
from legato.model.states import RunStatus, StepStatus

__all__ = [
    "DEFAULT_MAX_LOST_ATTEMPTS",
    "NewStep",
    "ResolvedCall",
    "StepPolicy",
    "TaskDefaults",
    "expression_context",
    "plan_new_run",
    "resolve_call",
    "resolve_inputs",
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
    max_lost_attempts: int = DEFAULT_MAX_LOST_ATTEMPTS


@dataclass(frozen=True)
class StepPolicy:
    retry: RetryPolicy
    timeout: float | None
    queue: str
    priority: int
    max_lost_attempts: int = DEFAULT_MAX_LOST_ATTEMPTS

    @classmethod
    def of(cls, step: StepSpec, defaults: TaskDefaults) -> StepPolicy:
        lost = step.max_lost_attempts
        return cls(
            retry=step.retry or defaults.retry,
            timeout=step.timeout if step.timeout is not None else defaults.timeout,
            queue=step.queue or defaults.queue,
            priority=step.priority if step.priority is not None else defaults.priority,
            max_lost_attempts=lost if lost is not None else defaults.max_lost_attempts,
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
        if not isinstance(step, TaskStep):
            raise DefinitionError(f"step {step_id!r}: {step.kind} steps cannot run yet")
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


@dataclass(frozen=True)
class ResolvedCall:
    """A step's call as far as it could be resolved: what resolved, and what did not."""

    args: list[Any]
    kwargs: dict[str, Any]
    #: input name (``args[0]``, ``x``, or ``inputs`` for a whole-mapping expression) -> why
    errors: dict[str, str]
    #: the kind of the first error (``TemplateError``, ``PayloadError``, ...)
    error_type: str | None = None

    def error_message(self, step_id: str) -> str:
        """One line naming the step and each input that failed, and why."""
        named = f"step {step_id!r} "
        if len(self.errors) == 1:
            [why] = self.errors.values()
            if why.startswith(named):
                return why
        parts = [
            why.removeprefix(named) if why.startswith(named) else f"input {name!r}: {why}"
            for name, why in self.errors.items()
        ]
        return f"step {step_id!r} inputs cannot be resolved: " + "; ".join(parts)


def resolve_inputs(
    step: StepSpec,
    context: Mapping[str, Any],
    gate: Callable[[Any, str], Any] | None = None,
) -> ResolvedCall:
    """Resolve each input on its own, so one that fails leaves the others on record.

    A positional argument that failed is ``None`` in ``args`` (positions are kept).
    ``gate`` (the JSON gate) checks and copies each resolved value; whatever it
    or the expression raises becomes that input's error, never an exception.
    """
    check = gate or (lambda value, _name: value)
    errors: dict[str, str] = {}
    types: list[str] = []

    def one(name: str, source: Any) -> Any:
        try:
            return check(evaluate(source, context), name)
        except Exception as exc:  # an input's failure is that input's, whatever it is
            errors[name] = _reason(exc)
            types.append(type(exc).__name__)
            return None

    args = [one(f"args[{i}]", source) for i, source in enumerate(step.args)]
    kwargs: dict[str, Any] = {}
    if isinstance(step.inputs, str):
        whole = one("inputs", step.inputs)
        if "inputs" not in errors:
            if not isinstance(whole, dict):
                errors["inputs"] = f"must evaluate to a mapping, got {type(whole).__name__}"
                types.append("TemplateError")
            else:
                kwargs = whole
    else:
        for name, source in step.inputs.items():
            value = one(name, source)
            if name not in errors:
                kwargs[name] = value
    bad = [k for k in kwargs if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        errors["inputs"] = f"input names must be identifiers, got {bad!r}"
        types.append("TemplateError")
    return ResolvedCall(args, kwargs, errors, types[0] if types else None)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, LegatoError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def resolve_outputs(graph: Graph, context: Mapping[str, Any]) -> dict[str, Any]:
    """A finished run's outputs, from the workflow's output expressions."""
    return evaluate(graph.spec.outputs, context)


def run_status_after_completion(steps_done: int, steps_total: int) -> RunStatus | None:
    """A run completes when its last step does; ``None`` means it keeps running."""
    return RunStatus.COMPLETED if steps_done >= steps_total else None
