"""Step kinds: the nodes of a workflow graph, one validated model per kind.

A step is a task call (``task``, run by a worker) or one of the kinds the
engine decides by itself, without a worker: ``switch`` (one branch of several),
``group`` (steps of its own run once, as one step), ``map`` (a task or a
sub-graph once per item of a list), ``loop`` (a sub-graph until a condition
holds), ``sub_workflow`` (another workflow as one step), ``sleep``,
``wait_for_signal``, ``terminate`` and ``set_vars``. Every kind shares ``id``,
``needs``, ``after`` (order only), ``when`` (a condition; false means skipped)
and ``continue_on_error``. Compound kinds hold steps of their own (``scopes``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
)

from legato.durations import parse_duration
from legato.model.limits import (
    FlowLimits,
    check_concurrency,
    check_concurrency_key,
    parse_rate_limit,
)

__all__ = [
    "CALL_KINDS",
    "KINDS",
    "STEP_ID_PATTERN",
    "Call",
    "GroupStep",
    "LoopStep",
    "MapStep",
    "RetryPolicy",
    "SetVarsStep",
    "SignalStep",
    "SleepStep",
    "Step",
    "StepBase",
    "SubWorkflowStep",
    "SwitchStep",
    "TaskStep",
    "TerminateStep",
    "check_name",
    "whole_number",
]

STEP_ID_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
SIGNAL_PATTERN = re.compile(r"^[A-Za-z0-9_.:/-]+$")
Backoff = Literal["fixed", "linear", "exponential"]

#: every kind, as written in a spec's ``kind`` field
KINDS = (
    "task",
    "switch",
    "group",
    "map",
    "loop",
    "sub_workflow",
    "sleep",
    "wait_for_signal",
    "terminate",
    "set_vars",
)
#: kinds whose attempts a retry policy governs
CALL_KINDS = ("task", "map", "sub_workflow")


def whole_number(value: Any) -> Any:
    """Refuse ``True``/``False`` where a count or a priority belongs (pydantic reads 1/0)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


def check_name(kind: str, value: str, pattern: re.Pattern[str], shape: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"{kind} {value!r} must match {pattern.pattern} ({shape})")
    if "__" in value:
        raise ValueError(
            f"{kind} {value!r} must not contain '__' (reserved as the display separator)"
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Model):
    """How often and how soon a failed attempt is tried again."""

    max_attempts: int = Field(default=1, ge=1, le=1000)
    backoff: Backoff = "exponential"
    delay: float = Field(default=1.0, ge=0)
    max_delay: float = Field(default=300.0, ge=0)
    jitter: bool = True
    #: exception type names that are retried (``"ConnectionError"`` or
    #: ``"mypkg.errors.Flaky"``); empty means every exception is retried.
    retry_on: tuple[str, ...] = ()

    @field_validator("max_attempts", mode="before")
    @classmethod
    def _attempts(cls, value: Any) -> Any:
        return whole_number(value)

    @field_validator("delay", "max_delay", mode="before")
    @classmethod
    def _duration(cls, value: Any, info: Any) -> Any:
        return parse_duration(value, field=info.field_name or "retry delay")


class StepBase(_Model):
    """What every kind of step has."""

    id: str
    needs: list[str] = Field(default_factory=list)
    #: steps of the same scope this one starts after, whatever became of them: an
    #: order, not a need. Their failure or skip does not skip it (the default
    #: ``success()`` looks at ``needs`` and data only); status functions see them.
    after: list[str] = Field(default_factory=list)
    #: a ``${{ }}`` condition, decided when the step's dependencies have finished;
    #: false means skipped. Without a status function it also needs them all to
    #: have completed (``success()``); ``always()``, ``failure()``, ``cancelled()``
    #: and ``success()`` say otherwise.
    when: str | None = None
    #: a failure of this step does not fail its scope (the run, a map, a loop)
    continue_on_error: bool = False
    description: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return check_name("step id", value, STEP_ID_PATTERN, "letters, digits, '_' and '-'")

    @field_validator("when")
    @classmethod
    def _when(cls, value: str | None) -> str | None:
        if value is not None and "${{" not in value:
            raise ValueError(f"when must be a ${{{{ ... }}}} expression, got {value!r}")
        return value

    # -- what the engine asks of a step --------------------------------------------

    @property
    def scopes(self) -> dict[str, list[Step]]:
        """The steps this step holds, by scope name (empty for simple kinds)."""
        return {}

    def expressions(self) -> dict[str, Any]:
        """Templated fields evaluated when the step becomes ready, by field name."""
        return {} if self.when is None else {"when": self.when}

    def inner_expressions(self) -> dict[str, Any]:
        """Templated fields evaluated after the step's own scopes ran (they read them)."""
        return {}


class Call(_Model):
    """Policies of a step whose attempts are counted: task calls and sub-workflows."""

    retry: RetryPolicy | None = None
    timeout: float | None = Field(default=None, gt=0)
    queue: str | None = None
    priority: int | None = Field(default=None, ge=0, le=9)
    #: how many times the step's worker may be lost (killed, stuck, cut off)
    #: before the step fails; apart from ``retry``, which the task's own errors spend
    max_lost_attempts: int | None = Field(default=None, ge=1, le=1000)
    #: how long an attempt may stay queued with no worker claiming it before it fails
    schedule_to_start_timeout: float | None = Field(default=None, gt=0)
    #: how long the running task may go without calling ``ctx.heartbeat()``
    heartbeat_timeout: float | None = Field(default=None, gt=0)

    @field_validator("timeout", "schedule_to_start_timeout", "heartbeat_timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any, info: ValidationInfo) -> Any:
        # A timeout of zero would not mean "no timeout": leave it out for that.
        return parse_duration(value, field=info.field_name or "timeout", allow_zero=False)

    @field_validator("priority", "max_lost_attempts", mode="before")
    @classmethod
    def _counts(cls, value: Any) -> Any:
        return whole_number(value)

    #: at most this many attempts of the task running at once, across every worker
    concurrency: int | None = None
    #: the keyword argument whose value the limits are counted per (e.g. ``customer``)
    concurrency_key: str | None = None
    #: at most N attempts of the task started per window: ``"100/10s"``
    rate_limit: str | None = None

    @field_validator("concurrency", mode="before")
    @classmethod
    def _concurrency(cls, value: Any) -> Any:
        return check_concurrency(value)

    @field_validator("concurrency_key", mode="before")
    @classmethod
    def _concurrency_key(cls, value: Any) -> Any:
        return check_concurrency_key(value)

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _rate_limit(cls, value: Any) -> Any:
        parse_rate_limit(value)
        return value

    @property
    def flow_limits(self) -> FlowLimits | None:
        """What the step sets of its flow limits (the task's fill in the rest), if anything."""
        if self.concurrency is None and self.concurrency_key is None and self.rate_limit is None:
            return None
        return FlowLimits(
            concurrency=self.concurrency,
            key=self.concurrency_key,
            rate=parse_rate_limit(self.rate_limit),
        )


class TaskStep(Call, StepBase):
    """A call of a registered task, run by a worker."""

    kind: Literal["task"] = "task"
    task: str
    #: positional arguments (templated)
    args: list[Any] = Field(default_factory=list)
    #: keyword arguments (templated), or one whole expression yielding a mapping
    inputs: dict[str, Any] | str = Field(default_factory=dict)

    def expressions(self) -> dict[str, Any]:
        return {**super().expressions(), "inputs": self.inputs, "args": self.args}


class SwitchStep(StepBase):
    """Runs the branch whose case matches ``value`` (or ``default``); skips the others.

    Its output is the output of the branch's last step.
    """

    kind: Literal["switch"]
    value: Any
    cases: dict[str, list[Step]]
    default: list[Step] = Field(default_factory=list)

    @property
    def scopes(self) -> dict[str, list[Step]]:
        scopes = {f"{self.id}:case:{name}": steps for name, steps in self.cases.items()}
        if self.default:
            scopes[f"{self.id}:default"] = self.default
        return scopes

    def branch_scope(self, value: Any) -> str | None:
        """The scope of the branch ``value`` selects, or None when none does."""
        name = value if isinstance(value, str) else _case_name(value)
        if name in self.cases:
            return f"{self.id}:case:{name}"
        return f"{self.id}:default" if self.default else None

    def expressions(self) -> dict[str, Any]:
        return {**super().expressions(), "value": self.value}


class GroupStep(StepBase):
    """Its ``steps`` run once, as one step: a scope of their own, like a switch's branch.

    The steps inside may depend on each other and read steps outside; steps
    outside read them only through the group's output: ``output`` (evaluated
    after its steps, reading them) or else the output of its last step (of each
    last step, by id, when several end it). A failed step inside fails the group.
    """

    kind: Literal["group"]
    steps: list[Step]
    output: Any = None

    @property
    def scopes(self) -> dict[str, list[Step]]:
        return {self.id: self.steps}

    def inner_expressions(self) -> dict[str, Any]:
        return {} if self.output is None else {"output": self.output}


def _case_name(value: Any) -> str:
    """Case names are text: ``true``/``false``/``null`` for those, numbers as written."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return str(value)


class MapStep(Call, StepBase):
    """A task, or steps of its own, once per item of ``for_each`` (a list known at run time).

    Each item sees ``item`` and ``index``. With ``task`` each item is one call;
    with ``steps`` each item runs those steps and its output is ``output``
    (default: the output of the items' last step). The map's output is the
    list of item outputs, in item order. ``max_parallel`` bounds how many items
    run at once.
    """

    kind: Literal["map"]
    for_each: Any
    max_parallel: int | None = Field(default=None, ge=1)
    task: str | None = None
    args: list[Any] = Field(default_factory=list)
    inputs: dict[str, Any] | str = Field(default_factory=dict)
    steps: list[Step] = Field(default_factory=list)
    output: Any = None
    #: its items are a job's matrix combinations: ``matrix`` reads the item at any
    #: depth inside, where ``item`` is the nearest map's
    matrix: bool = False

    @field_validator("max_parallel", mode="before")
    @classmethod
    def _parallel(cls, value: Any) -> Any:
        return whole_number(value)

    @property
    def scopes(self) -> dict[str, list[Step]]:
        return {self.id: self.steps} if self.steps else {}

    def expressions(self) -> dict[str, Any]:
        return {**super().expressions(), "for_each": self.for_each}

    def item_expressions(self) -> dict[str, Any]:
        """What each item's call reads (``task`` form): its inputs, with ``item``."""
        return {"inputs": self.inputs, "args": self.args}

    def inner_expressions(self) -> dict[str, Any]:
        return {} if self.output is None else {"output": self.output}


class LoopStep(StepBase):
    """Its ``steps`` again and again until ``until`` holds, at most ``max_iterations`` times.

    ``until`` is checked after each iteration and reads that iteration's steps;
    each iteration sees ``iteration`` (0, 1, ...). Every iteration's steps and
    outputs are kept. The loop's output is ``output`` of the last iteration
    (default: the output of its last step).
    """

    kind: Literal["loop"]
    steps: list[Step]
    until: str
    max_iterations: int = Field(default=100, ge=1, le=100_000)
    output: Any = None

    @field_validator("max_iterations", mode="before")
    @classmethod
    def _iterations(cls, value: Any) -> Any:
        return whole_number(value)

    @property
    def scopes(self) -> dict[str, list[Step]]:
        return {self.id: self.steps}

    def inner_expressions(self) -> dict[str, Any]:
        found: dict[str, Any] = {"until": self.until}
        if self.output is not None:
            found["output"] = self.output
        return found


class SubWorkflowStep(StepBase):
    """Another workflow run as one step: a child run linked to this run and step.

    Name it (``workflow`` and optionally ``version``: the newest stored version
    otherwise) or give its ``spec``. Its ``params`` are templated; its outputs
    are the step's output. A failed child fails the step, which its ``retry``
    policy may try again with a new child.
    """

    kind: Literal["sub_workflow"]
    workflow: str | None = None
    version: str | None = None
    spec: dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    retry: RetryPolicy | None = None
    timeout: float | None = Field(default=None, gt=0)

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        return parse_duration(value, field="timeout", allow_zero=False)

    def expressions(self) -> dict[str, Any]:
        return {**super().expressions(), "params": self.params}


class SleepStep(StepBase):
    """A durable timer: ``duration`` (``10m``, seconds) or ``until`` (a time expression).

    It holds no worker while it waits and fires after restarts.
    """

    kind: Literal["sleep"]
    duration: float | str | None = None
    until: Any = None

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str) and "${{" in value:
            return value
        return parse_duration(value, field="duration")

    def expressions(self) -> dict[str, Any]:
        found = super().expressions()
        if isinstance(self.duration, str):
            found["duration"] = self.duration
        if self.until is not None:
            found["until"] = self.until
        return found


class SignalStep(StepBase):
    """Suspended until ``client.signal(run_id, signal, payload)``; the payload is its output.

    A signal sent before the step is reached is kept for it. After ``timeout``
    the step fails, or completes with ``default`` when ``on_timeout`` is
    ``"default"``.
    """

    kind: Literal["wait_for_signal"]
    signal: str
    timeout: float | None = Field(default=None, gt=0)
    on_timeout: Literal["fail", "default"] = "fail"
    default: Any = None

    @field_validator("signal")
    @classmethod
    def _signal(cls, value: str) -> str:
        return check_name("signal name", value, SIGNAL_PATTERN, "letters, digits, '_.:/-'")

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        return parse_duration(value, field="timeout", allow_zero=False)


class TerminateStep(StepBase):
    """Ends the run at once with ``status``, ``reason`` and ``outputs``.

    Steps already running finish and are recorded; nothing new starts.
    """

    kind: Literal["terminate"]
    status: Literal["completed", "failed"] = "completed"
    reason: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)

    def expressions(self) -> dict[str, Any]:
        return {**super().expressions(), "reason": self.reason, "outputs": self.outputs}


class SetVarsStep(StepBase):
    """Sets run variables (templated values), readable as ``vars`` in every expression."""

    kind: Literal["set_vars"]
    vars: dict[str, Any]

    def expressions(self) -> dict[str, Any]:
        return {**super().expressions(), "vars": self.vars}


def _kind_of(value: Any) -> str:
    kind = value.get("kind", "task") if isinstance(value, dict) else getattr(value, "kind", "task")
    return kind if kind in KINDS else str(kind)


#: any step, told apart by its ``kind`` (``task`` when it has none)
Step = Annotated[
    Annotated[TaskStep, Tag("task")]
    | Annotated[SwitchStep, Tag("switch")]
    | Annotated[GroupStep, Tag("group")]
    | Annotated[MapStep, Tag("map")]
    | Annotated[LoopStep, Tag("loop")]
    | Annotated[SubWorkflowStep, Tag("sub_workflow")]
    | Annotated[SleepStep, Tag("sleep")]
    | Annotated[SignalStep, Tag("wait_for_signal")]
    | Annotated[TerminateStep, Tag("terminate")]
    | Annotated[SetVarsStep, Tag("set_vars")],
    Discriminator(_kind_of),
]

for _model in (SwitchStep, GroupStep, MapStep, LoopStep):
    _model.model_rebuild()
