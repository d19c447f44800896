"""Pure decisions: what an unfolding run's instances look like, what a step that has
become ready does, what a finished scope outputs. No database handle here; the
store applies these decisions inside its transactions.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from legato.errors import LegatoError, TemplateError
from legato.expressions import evaluate, references
from legato.model.graph import Graph
from legato.model.instances import Place
from legato.model.limits import FlowLimits
from legato.model.spec import DEFAULT_MAX_LOST_ATTEMPTS, RetryPolicy, StepSpec
from legato.model.states import StepStatus
from legato.model.steps import LoopStep, MapStep, SleepStep, Step, TaskStep, TerminateStep

__all__ = [
    "DEFAULT_MAX_LOST_ATTEMPTS",
    "MASK",
    "NewInstance",
    "NewStep",
    "ResolvedCall",
    "StepPolicy",
    "TaskDefaults",
    "conceal",
    "condition_holds",
    "expression_context",
    "items_of",
    "loop_continues",
    "plan_new_run",
    "plan_scope",
    "reacts_to_failure",
    "resolve_call",
    "resolve_inputs",
    "resolve_outputs",
    "resolve_with_secrets",
    "scope_output",
    "shard_of",
    "shards_for",
    "stage_of",
    "stages",
    "truthy",
    "wake_time",
]


@dataclass(frozen=True)
class TaskDefaults:
    """What a registered task contributes when a step does not override it."""

    retry: RetryPolicy
    timeout: float | None
    queue: str
    priority: int
    max_lost_attempts: int = DEFAULT_MAX_LOST_ATTEMPTS
    #: concurrency and rate limits of the task's calls
    flow: FlowLimits | None = None
    #: how long an attempt may wait in its queue unclaimed (None: as long as it takes)
    schedule_to_start_timeout: float | None = None
    #: how long the running task may go without ``ctx.heartbeat()`` (None: no limit)
    heartbeat_timeout: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = {
            "retry": self.retry.model_dump(mode="json"),
            "timeout": self.timeout,
            "queue": self.queue,
            "priority": self.priority,
            "max_lost_attempts": self.max_lost_attempts,
            "schedule_to_start_timeout": self.schedule_to_start_timeout,
            "heartbeat_timeout": self.heartbeat_timeout,
        }
        if self.flow is not None:
            data["flow"] = self.flow.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskDefaults:
        return cls(
            retry=RetryPolicy.model_validate(data["retry"]),
            timeout=data.get("timeout"),
            queue=data.get("queue") or "default",
            priority=data.get("priority") or 0,
            max_lost_attempts=data.get("max_lost_attempts") or DEFAULT_MAX_LOST_ATTEMPTS,
            flow=FlowLimits.from_json(data.get("flow")),
            schedule_to_start_timeout=data.get("schedule_to_start_timeout"),
            heartbeat_timeout=data.get("heartbeat_timeout"),
        )


@dataclass(frozen=True)
class StepPolicy:
    """A task call's policies. ``None`` fields are the task's defaults, not known where
    the run was started (no task code there): the worker that claims it fills them in."""

    retry: RetryPolicy | None
    timeout: float | None
    queue: str
    priority: int
    max_lost_attempts: int | None = DEFAULT_MAX_LOST_ATTEMPTS
    #: the call's flow limits, the step's over its task's (None: none known)
    flow: FlowLimits | None = None
    schedule_to_start_timeout: float | None = None
    heartbeat_timeout: float | None = None

    @classmethod
    def of(cls, step: TaskStep | MapStep, defaults: TaskDefaults | None) -> StepPolicy:
        lost = step.max_lost_attempts
        own = step.flow_limits
        if defaults is None:
            return cls(
                retry=step.retry,
                timeout=step.timeout,
                queue=step.queue or "default",
                priority=step.priority if step.priority is not None else 0,
                max_lost_attempts=lost,
                flow=own,
                schedule_to_start_timeout=step.schedule_to_start_timeout,
                heartbeat_timeout=step.heartbeat_timeout,
            )
        return cls(
            retry=step.retry or defaults.retry,
            timeout=step.timeout if step.timeout is not None else defaults.timeout,
            queue=step.queue or defaults.queue,
            priority=step.priority if step.priority is not None else defaults.priority,
            max_lost_attempts=lost if lost is not None else defaults.max_lost_attempts,
            flow=defaults.flow if own is None else own.over(defaults.flow),
            schedule_to_start_timeout=_given(
                step.schedule_to_start_timeout, defaults.schedule_to_start_timeout
            ),
            heartbeat_timeout=_given(step.heartbeat_timeout, defaults.heartbeat_timeout),
        )

    @property
    def resolved(self) -> bool:
        return self.retry is not None and self.max_lost_attempts is not None


def _given(value: float | None, default: float | None) -> float | None:
    return value if value is not None else default


@dataclass(frozen=True)
class NewInstance:
    """A step instance row as it is created (waiting, unless a decision says otherwise)."""

    key: str
    step_id: str
    scope: str
    kind: str
    position: int
    deps_remaining: int
    task: str | None = None
    policy: StepPolicy | None = None
    idx: int | None = None
    item: Any = None
    status: StepStatus = StepStatus.WAITING
    #: a task with the default condition: queued by the statement that releases it
    queue_on_release: bool = False
    #: how far into its workflow the instance is (see :func:`stages`): claims prefer later
    stage: int = 0


#: the instance rows of a run as it starts, by their former name
NewStep = NewInstance


def plan_scope(
    graph: Graph,
    scope: str,
    place: Place,
    scope_key: str,
    defaults: Mapping[str, TaskDefaults],
    position: int = 0,
) -> list[NewInstance]:
    """The instances of every step of ``scope`` at ``place``, all waiting on their counters."""
    rows = []
    stage = stages(graph)
    for offset, step_id in enumerate(graph.scopes[scope].order):
        step = graph.steps[step_id]
        task = step.task if isinstance(step, TaskStep) else None
        policy = None
        if isinstance(step, TaskStep):
            policy = StepPolicy.of(step, defaults.get(step.task))
        rows.append(
            NewInstance(
                key=place.key(step_id),
                step_id=step_id,
                scope=scope_key,
                kind=step.kind,
                position=position + offset if scope == "" else position,
                deps_remaining=len(graph.deps[step_id]),
                task=task,
                policy=policy,
                queue_on_release=queued_when_ready(step),
                stage=stage_of(graph, stage, step_id),
            )
        )
    return rows


def stages(graph: Graph) -> dict[str, int]:
    """Each top-level step's stage: 0 for a step that waits for none, else one more
    than the latest stage it waits for (the longest chain of dependencies before it).

    Claims take a queue's steps of equal priority latest stage first, so a run under
    way finishes before steps that start new runs; steps of one stage go first
    queued, first claimed.
    """
    top = graph.scopes[""]
    found: dict[str, int] = {}
    for step_id in top.order:
        found[step_id] = 1 + max((found.get(d, 0) for d in top.deps[step_id]), default=-1)
    return found


def stage_of(graph: Graph, top_stages: Mapping[str, int], step_id: str) -> int:
    """A step's stage: its own at the top level, its outermost compound's inside one."""
    chain = graph.info[step_id].chain if step_id in graph.info else ()
    return top_stages.get(chain[0] if chain else step_id, 0)


def queued_when_ready(step: Step) -> bool:
    """Whether the step, once ready, just goes to the queue: a task with the default
    condition (every dependency completed), which nothing needs to be read to decide."""
    return isinstance(step, TaskStep) and step.when is None


def plan_new_run(graph: Graph, defaults: Mapping[str, TaskDefaults]) -> list[NewInstance]:
    """The run's top-level instances, waiting on their dependencies; roots have none."""
    return plan_scope(graph, "", Place(), "", defaults)


def shards_for(count: int) -> int:
    """How many counter rows a scope of ``count`` instances gets.

    One for small scopes; a large one is spread over 16, so workers finishing
    its instances at once rarely wait for the same counter row.
    """
    return 1 if count < 64 else 16


def shard_of(key: str, shards: int) -> int:
    return 0 if shards == 1 else zlib.crc32(key.encode("utf-8")) % shards


# -- contexts and conditions --------------------------------------------------------------


_NOT_GIVEN: Any = object()


def expression_context(
    params: Mapping[str, Any],
    outputs: Mapping[str, Any],
    run: Mapping[str, Any],
    variables: Mapping[str, Any] | None = None,
    *,
    statuses: Mapping[str, str] | None = None,
    item: Any = _NOT_GIVEN,
    index: int | None = None,
    iteration: int | None = None,
    matrix: Any = _NOT_GIVEN,
) -> dict[str, Any]:
    """What an expression can read: ``params``, ``steps.<id>.output`` and ``.status``
    (``jobs.<id>.outputs`` and ``.status``, as YAML jobs say it), ``run``, ``vars``,
    inside a map ``item`` and ``index``, inside a job's matrix ``matrix``, inside a
    loop ``iteration``."""
    steps: dict[str, dict[str, Any]] = {s: {"output": out} for s, out in outputs.items()}
    for step_id, status in (statuses or {}).items():
        steps.setdefault(step_id, {"output": None})["status"] = status
    jobs: dict[str, dict[str, Any]] = {}
    for step_id, read in steps.items():
        jobs[step_id] = {"outputs": read["output"]}
        if "status" in read:
            jobs[step_id]["status"] = read["status"]
    context: dict[str, Any] = {
        "params": params,
        "steps": steps,
        "jobs": jobs,
        "run": run,
        "vars": variables or {},
    }
    if item is not _NOT_GIVEN:
        context["item"] = item
        context["index"] = index
    if matrix is not _NOT_GIVEN:
        context["matrix"] = matrix
    if iteration is not None:
        context["iteration"] = iteration
    return context


def truthy(value: Any) -> bool:
    """A condition's value: text reads as people write it (``"false"``, ``"0"`` are false)."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none", "null")
    return bool(value)


def status_functions(dep_statuses: Iterable[str]) -> dict[str, Callable[[], bool]]:
    """``success()``, ``failure()``, ``cancelled()``, ``always()`` over a step's dependencies."""
    statuses = list(dep_statuses)
    return {
        "always": lambda: True,
        "success": lambda: _all_completed(statuses),
        "failure": lambda: any(s == StepStatus.FAILED for s in statuses),
        "cancelled": lambda: any(s == StepStatus.CANCELLED for s in statuses),
    }


#: status functions with which a step asks to run although a dependency did not complete
_REACTING = frozenset({"always", "failure", "cancelled"})


def reacts_to_failure(step: Step) -> bool:
    """Whether the step may run after a failure: its ``when`` calls ``always()``,
    ``failure()`` or ``cancelled()`` (a failing scope still decides it)."""
    return step.when is not None and bool(references(step.when).functions & _REACTING)


def condition_holds(
    step: Step,
    context: Mapping[str, Any],
    dep_statuses: Iterable[str],
    after_statuses: Iterable[str] = (),
) -> bool:
    """Whether a ready step runs: its ``when``, or by default every dependency completed.

    As in GitHub Actions, a condition that calls no status function also needs
    ``success()``; ``always()``, ``failure()`` or ``cancelled()`` say otherwise.
    ``after_statuses`` are those of the steps it only runs after (``after``, neither
    needed nor read): the status functions see them, the default ``success()`` does not.
    """
    needed = list(dep_statuses)
    functions = status_functions([*needed, *after_statuses])
    if step.when is None:
        return _all_completed(needed)
    value = truthy(evaluate(step.when, {**context, **functions}))
    if not references(step.when).functions:
        value = value and _all_completed(needed)
    return value


def _all_completed(statuses: list[str]) -> bool:
    return all(s == StepStatus.COMPLETED for s in statuses)


# -- kinds ------------------------------------------------------------------------------------


def items_of(step: MapStep, value: Any) -> list[Any]:
    """A map's items: its ``for_each`` must give a list."""
    if isinstance(value, list | tuple):
        return list(value)
    raise TemplateError(
        f"step {step.id!r}: for_each must give a list, got {type(value).__name__} {value!r}"[:500]
    )


def wake_time(step: SleepStep, context: Mapping[str, Any], now: float) -> float:
    """When a sleep ends, as seconds since the epoch."""
    if step.duration is not None:
        raw = evaluate(step.duration, context) if isinstance(step.duration, str) else step.duration
        from legato.durations import parse_duration

        try:
            seconds = parse_duration(raw, field=f"step {step.id!r} duration")
        except ValueError as exc:
            raise TemplateError(str(exc)) from None
        return now + (seconds or 0.0)
    value = evaluate(step.until, context)
    return _timestamp(step.id, value)


def _timestamp(step_id: str, value: Any) -> float:
    if isinstance(value, bool):
        raise TemplateError(f"step {step_id!r}: until must give a time, got {value!r}")
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                raise TemplateError(
                    f"step {step_id!r}: until {value!r} has no time zone; give one "
                    "(e.g. 2026-12-01T09:00:00+00:00)"
                )
            return moment.timestamp()
    raise TemplateError(
        f"step {step_id!r}: until must give an ISO 8601 time or seconds since the epoch, "
        f"got {value!r}"
    )


def terminate_outcome(
    step: TerminateStep, context: Mapping[str, Any]
) -> tuple[str, str | None, dict[str, Any]]:
    """A terminate step's status, reason and outputs."""
    reason = evaluate(step.reason, context) if step.reason is not None else None
    outputs = evaluate(step.outputs, context)
    return step.status, None if reason is None else str(reason), outputs


def loop_continues(step: LoopStep, iteration: int, done: bool) -> bool | None:
    """After ``iteration``: ``False`` the loop is done, ``True`` another one, ``None`` out of
    iterations before ``until`` held."""
    if done:
        return False
    if iteration + 1 >= step.max_iterations:
        return None
    return True


def scope_output(sinks: tuple[str, ...], outputs: Mapping[str, Any]) -> Any:
    """What a scope outputs by default: its last step's output (all last steps' by id)."""
    if len(sinks) == 1:
        return outputs.get(sinks[0])
    return {s: outputs.get(s) for s in sinks}


# -- task calls ---------------------------------------------------------------------------------


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
    #: the call as it is recorded, when that differs from the call made (secrets
    #: read as ``***``): ``{"args", "kwargs", "secrets"}``
    recorded: dict[str, Any] | None = None
    #: the secrets' values, to keep out of whatever this attempt records (its errors)
    hidden: tuple[str, ...] = ()

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
    step: TaskStep | MapStep,
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


#: what a secret's value is recorded as
MASK = "***"


def resolve_with_secrets(
    step: TaskStep | MapStep,
    context: Mapping[str, Any],
    secrets: Mapping[str, str],
    gate: Callable[[Any, str], Any] | None = None,
) -> ResolvedCall:
    """Resolve a call that reads ``secrets`` (name -> value): the call gets the values,
    the record gets the same inputs resolved with each secret read as ``***``.

    An input whose masked form cannot be resolved (``secrets.N | int`` of ``***``
    can, ``| from_json`` cannot) is recorded as ``***`` whole. Errors are the
    real call's, with every secret's value concealed.
    """
    real = resolve_inputs(step, {**context, "secrets": dict(secrets)}, gate)
    shown = resolve_inputs(step, {**context, "secrets": dict.fromkeys(secrets, MASK)}, gate)
    hidden = tuple(sorted({v for v in secrets.values() if v}, key=len, reverse=True))
    args = [
        None if f"args[{i}]" in real.errors else MASK if f"args[{i}]" in shown.errors else value
        for i, value in enumerate(shown.args)
    ]
    kwargs = {name: shown.kwargs.get(name, MASK) for name in real.kwargs}
    errors = {name: conceal(why, hidden) for name, why in real.errors.items()}
    recorded = {"args": args, "kwargs": kwargs, "secrets": sorted(secrets)}
    return ResolvedCall(real.args, real.kwargs, errors, real.error_type, recorded, hidden)


def conceal(text: str, hidden: Iterable[str]) -> str:
    """``text`` with each of the ``hidden`` values (longest first) replaced by ``***``."""
    for value in hidden:
        text = text.replace(value, MASK)
    return text


def _reason(exc: BaseException) -> str:
    if isinstance(exc, LegatoError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def resolve_outputs(graph: Graph, context: Mapping[str, Any]) -> dict[str, Any]:
    """A finished run's outputs, from the workflow's output expressions."""
    return evaluate(graph.spec.outputs, context)
