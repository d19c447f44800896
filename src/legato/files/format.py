"""The definition file format: what a YAML or JSON workflow may say, as pydantic models.

These models check a document's shape (known keys, one kind per stage, the
types of values) with paths that point into the file, and they are where
``legato schema`` comes from, so editors validate and complete files by the
same rules. Meaning is checked after compiling (:mod:`legato.files.compile`)
by the spec, which every front end shares.

A stage's kind is told by the key that names it, as in GitHub Actions and
ddeutil-workflow: ``uses`` (a task), ``run``/``bash`` (a shell command),
``foreach`` (a map), ``parallel``, ``switch``/``case``, ``until`` (a loop),
``trigger`` (a sub-workflow), ``sleep``, ``wait_for`` (a signal),
``raise``/``terminate``, ``set_vars``, and ``stages``/``steps`` alone (a group).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from legato.durations import parse_duration
from legato.model.limits import check_concurrency, parse_rate_limit

__all__ = [
    "KIND_KEYS",
    "PARAM_TYPES",
    "Block",
    "Definition",
    "GroupStage",
    "JobDef",
    "LoopStage",
    "MapStage",
    "MatchCase",
    "ParallelStage",
    "ParamDef",
    "RaiseStage",
    "RetryDef",
    "SetVarsStage",
    "ShellStage",
    "SignalStage",
    "SleepStage",
    "Stage",
    "StrategyDef",
    "SwitchStage",
    "TaskStage",
    "TerminateStage",
    "TriggerDef",
    "TriggerStage",
    "stage_kind",
]

PARAM_TYPES = (
    "any",
    "str",
    "int",
    "float",
    "bool",
    "list",
    "dict",
    "date",
    "datetime",
    "choice",
)
ParamType = Literal[
    "any", "str", "int", "float", "bool", "list", "dict", "date", "datetime", "choice"
]

#: stage kind -> the keys that name it, in the order they are looked for
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "map": ("foreach",),
    "loop": ("until",),
    "switch": ("switch", "case"),
    "parallel": ("parallel",),
    "trigger": ("trigger",),
    "sleep": ("sleep",),
    "wait_for": ("wait_for",),
    "raise": ("raise",),
    "terminate": ("terminate",),
    "set_vars": ("set_vars",),
    "shell": ("run", "bash"),
    "task": ("uses",),
}

Seconds = float | int | str


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


def _duration(value: Any, field: str, *, allow_zero: bool = True) -> Any:
    if isinstance(value, str) and "${{" in value:
        return value
    return parse_duration(value, field=field, allow_zero=allow_zero)


# -- params and triggers -----------------------------------------------------------------------


class ParamDef(_Model):
    """A declared param: ``name: str`` is short for ``name: {type: str}`` (required)."""

    type: ParamType = "any"
    default: Any = None
    #: without it, a param is required unless it has a default
    required: bool | None = None
    description: str | None = None
    #: the values a ``choice`` param may take
    options: list[Any] | None = None


class TriggerDef(_Model):
    """A cron schedule; the scheduler starts a run at each time it names."""

    cron: str = Field(validation_alias=AliasChoices("cron", "cronjob"))
    timezone: str = "UTC"
    params: dict[str, Any] = Field(default_factory=dict)


class FailureHandlerDef(_Model):
    """``on_failure:``: the workflow started when a run of this one fails.

    ``workflow`` is a stored workflow's name (newest ``version`` unless given) or a
    whole definition; ``params`` are templated from the failed run (``${{ run.id }}``,
    ``${{ run.error.message }}``, ``${{ params.x }}``). Without ``params`` the
    handler gets those of ``run_id``, ``workflow``, ``status``, ``error`` and
    ``params`` it declares.
    """

    workflow: str | dict[str, Any]
    version: str | None = None
    params: dict[str, Any] | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return _version(value)


class RetryDef(_Model):
    """How often a failed attempt is tried again: ``retry: 3`` is short for ``retries: 3``."""

    retries: int | None = Field(default=None, ge=0, le=999)
    max_attempts: int | None = Field(default=None, ge=1, le=1000)
    backoff: Literal["fixed", "linear", "exponential"] | None = None
    delay: Seconds | None = None
    max_delay: Seconds | None = None
    jitter: bool | None = None
    retry_on: list[str] | None = None

    @field_validator("delay", "max_delay", mode="before")
    @classmethod
    def _seconds(cls, value: Any, info: Any) -> Any:
        return None if value is None else parse_duration(value, field=info.field_name)

    @model_validator(mode="after")
    def _one_count(self) -> RetryDef:
        if self.retries is not None and self.max_attempts is not None:
            raise ValueError("give retries or max_attempts, not both")
        return self


# -- stages ----------------------------------------------------------------------------------


class StageBase(_Model):
    """What every stage may say."""

    #: unique in the workflow; made from ``name`` (or the position) when left out
    id: str | None = None
    #: a label for people; becomes the step's description
    name: str | None = None
    description: str | None = None
    needs: list[str] | str = Field(default_factory=list)
    #: steps this one runs after, whatever they did (ordering only)
    after: list[str] | str = Field(default_factory=list)
    if_: str | bool | None = Field(default=None, alias="if")
    continue_on_error: bool = False


class CallOptions(_Model):
    """Policies of a stage whose attempts are counted (a task, a map's task calls)."""

    retry: int | RetryDef | None = None
    timeout: Seconds | None = None
    queue: str | None = None
    priority: int | None = Field(default=None, ge=0, le=9)
    max_lost_attempts: int | None = Field(default=None, ge=1, le=1000)
    #: at most this many attempts of the task running at once, across every worker
    concurrency: int | None = Field(default=None, ge=1)
    #: the ``with`` input whose value the limits count per (e.g. ``customer``)
    concurrency_key: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    #: at most N attempts started per window, e.g. ``"100/10s"``
    rate_limit: str | None = Field(default=None, pattern=r"^\s*\d+\s*/\s*\S+\s*$")
    schedule_to_start_timeout: Seconds | None = None
    heartbeat_timeout: Seconds | None = None

    @field_validator("timeout", "schedule_to_start_timeout", "heartbeat_timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any, info: ValidationInfo) -> Any:
        field = info.field_name or "timeout"
        return None if value is None else parse_duration(value, field=field, allow_zero=False)

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _rate_limit(cls, value: Any) -> Any:
        parse_rate_limit(value)
        return value

    @field_validator("concurrency", mode="before")
    @classmethod
    def _concurrency(cls, value: Any) -> Any:
        return check_concurrency(value)

    @field_validator("retry", mode="before")
    @classmethod
    def _retries(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected a number of retries or a mapping, got {value!r}")
        if isinstance(value, int) and not 0 <= value <= 999:
            raise ValueError(f"retries must be from 0 to 999, got {value}")
        return value


class TaskStage(CallOptions, StageBase):
    """``uses: module.task`` calls a registered task with ``with`` (keyword) and ``args``."""

    uses: str
    with_: dict[str, Any] | str = Field(default_factory=dict, alias="with")
    args: list[Any] = Field(default_factory=list)


class ShellStage(CallOptions, StageBase):
    """``run: <script>`` runs a shell script (only where the operator allows shell)."""

    run: str | None = None
    bash: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    shell: str | None = None

    @model_validator(mode="after")
    def _one_script(self) -> ShellStage:
        if (self.run is None) == (self.bash is None):
            raise ValueError("give the script as run or bash, not both")
        return self


class Block(_Model):
    """Steps as a graph (``steps``: by ``needs``) or in order (``stages``)."""

    stages: list[Stage] | None = None
    steps: list[Stage] | None = None

    @model_validator(mode="after")
    def _one_list(self) -> Block:
        if (self.stages is None) == (self.steps is None):
            raise ValueError("give stages (in order) or steps (a graph), exactly one")
        return self


#: a branch: a list of stages (run in order), or a block
Branch = list["Stage"] | Block


class MapStage(CallOptions, StageBase):
    """``foreach: <list>``: a task (``uses``) or stages once per item (``item``, ``index``)."""

    foreach: Any
    max_parallel: int | None = Field(default=None, ge=1)
    uses: str | None = None
    with_: dict[str, Any] | str | None = Field(default=None, alias="with")
    args: list[Any] | None = None
    stages: list[Stage] | None = None
    steps: list[Stage] | None = None
    output: Any = None
    #: its items are matrix combinations: ``matrix`` reads them at any depth inside
    #: (what a job's ``strategy.matrix`` compiles to)
    matrix: bool = False


class ParallelStage(StageBase):
    """``parallel: {name: [stages], ...}``: every branch at once; the output is by branch."""

    parallel: dict[str, Branch]
    output: Any = None


class GroupStage(StageBase):
    """``stages`` (in order) or ``steps`` (a graph) as one step; its output is the last one's."""

    stages: list[Stage] | None = None
    steps: list[Stage] | None = None
    output: Any = None


class MatchCase(_Model):
    """One case of ddeutil-workflow's ``case``/``match`` form (``case: _`` is the default)."""

    case: Any
    stages: list[Stage] | None = None
    steps: list[Stage] | None = None


class SwitchStage(StageBase):
    """``switch: <value>`` with ``cases`` and ``default``, or ``case: <value>`` with ``match``."""

    switch: Any = None
    cases: dict[str, Branch] | None = None
    default: Branch | None = None
    case: Any = None
    match: list[MatchCase] | None = None


class LoopStage(StageBase):
    """``until: <condition>``: its stages again until the condition holds after one."""

    until: str
    max_iterations: int = Field(default=100, ge=1, le=100_000)
    stages: list[Stage] | None = None
    steps: list[Stage] | None = None
    output: Any = None


class TriggerStage(StageBase):
    """``trigger: <workflow>`` (a name, or a whole definition) runs it as a child run."""

    trigger: str | dict[str, Any]
    version: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    retry: int | RetryDef | None = None
    timeout: Seconds | None = None

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value, field="timeout", allow_zero=False)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return _version(value)


class SleepUntil(_Model):
    until: Any = None
    duration: Seconds | None = None


class SleepStage(StageBase):
    """``sleep: 10m`` (or an expression), or ``sleep: {until: <time>}``."""

    sleep: Seconds | SleepUntil

    @field_validator("sleep", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return value
        return _duration(value, "sleep")


class SignalStage(StageBase):
    """``wait_for: <signal>``: suspended until the signal comes; its payload is the output."""

    wait_for: str
    timeout: Seconds | None = None
    on_timeout: Literal["fail", "default"] = "fail"
    default: Any = None

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value, field="timeout", allow_zero=False)


class RaiseStage(StageBase):
    """``raise: <message>``: the run fails at once with that reason."""

    raise_: str = Field(alias="raise")


class TerminateStage(StageBase):
    """``terminate: completed|failed``: the run ends at once."""

    terminate: Literal["completed", "failed"]
    reason: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)


class SetVarsStage(StageBase):
    """``set_vars: {name: value}`` sets run variables (``vars`` in expressions)."""

    set_vars: dict[str, Any]


class _NoKind(_Model):
    """Stands for a stage whose kind cannot be told, to say why in one message."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _explain(cls, value: Any) -> Any:
        raise ValueError(_kind_problem(value))


def stage_kind(value: Any) -> str | None:
    """The kind a stage's keys name, ``"group"`` for bare stages/steps, or None when no
    key names one or several do."""
    if not isinstance(value, dict):
        return None
    found = [kind for kind, keys in KIND_KEYS.items() if any(k in value for k in keys)]
    # uses/stages/steps beside foreach or until belong to the map or loop.
    if "map" in found or "loop" in found:
        found = [k for k in found if k != "task"]
    if len(found) == 1:
        return found[0]
    if not found and ("stages" in value or "steps" in value):
        return "group"
    return None


def _kind_problem(value: Any) -> str:
    if not isinstance(value, dict):
        return f"a stage is a mapping, found {type(value).__name__} {value!r}"[:200]
    found = [k for keys in KIND_KEYS.values() for k in keys if k in value]
    if "foreach" in found or "until" in found:
        found = [k for k in found if k != "uses"]
    names = ", ".join(k for keys in KIND_KEYS.values() for k in keys)
    if not found:
        return f"a stage needs a key that says what it does: one of {names}, or stages/steps"
    return f"a stage does one thing: found {' and '.join(found)}"


def _stage_tag(value: Any) -> str:
    return stage_kind(value) or "invalid"


Stage = Annotated[
    Annotated[TaskStage, Tag("task")]
    | Annotated[ShellStage, Tag("shell")]
    | Annotated[MapStage, Tag("map")]
    | Annotated[ParallelStage, Tag("parallel")]
    | Annotated[GroupStage, Tag("group")]
    | Annotated[SwitchStage, Tag("switch")]
    | Annotated[LoopStage, Tag("loop")]
    | Annotated[TriggerStage, Tag("trigger")]
    | Annotated[SleepStage, Tag("sleep")]
    | Annotated[SignalStage, Tag("wait_for")]
    | Annotated[RaiseStage, Tag("raise")]
    | Annotated[TerminateStage, Tag("terminate")]
    | Annotated[SetVarsStage, Tag("set_vars")]
    | SkipJsonSchema[Annotated[_NoKind, Tag("invalid")]],
    Discriminator(_stage_tag),
]


# -- jobs and the workflow --------------------------------------------------------------------


class StrategyDef(_Model):
    """A job once per combination of its matrix (``matrix`` in expressions)."""

    #: axis -> its values; the job runs once per combination (for a list known only at
    #: run time, use a ``foreach`` stage)
    matrix: dict[str, list[Any]] = Field(default_factory=dict)
    include: list[dict[str, Any]] = Field(default_factory=list)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    max_parallel: int | None = Field(default=None, ge=1)


class JobDef(_Model):
    """A job: stages run in order, after the jobs it needs, once or per matrix combination."""

    name: str | None = None
    description: str | None = None
    needs: list[str] | str = Field(default_factory=list)
    if_: str | bool | None = Field(default=None, alias="if")
    continue_on_error: bool = False
    strategy: StrategyDef | None = None
    stages: list[Stage] | None = None
    steps: list[Stage] | None = None
    #: the job's output (``jobs.<id>.outputs``): a mapping of expressions, or one
    outputs: Any = None

    @model_validator(mode="after")
    def _one_list(self) -> JobDef:
        if (self.stages is None) == (self.steps is None):
            raise ValueError("a job gives stages (in order) or steps (a graph), exactly one")
        return self


def _version(value: Any) -> Any:
    # A bare 1 or 2.0 in YAML is a number; a version is text (the loader keeps what was
    # written, "1.10", where it can).
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class Definition(_Model):
    """A workflow definition file's document."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=False,
        title="legato workflow",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    name: str
    version: str = "1"
    description: str | None = None
    params: dict[str, ParamType | ParamDef] = Field(default_factory=dict)
    #: accept params that are not declared
    extra_params: bool = False
    on: TriggerDef | list[TriggerDef] | None = None
    jobs: dict[str, JobDef] | None = None
    stages: list[Stage] | None = None
    steps: list[Stage] | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    #: the workflow started when a run of this one fails
    on_failure: FailureHandlerDef | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return _version(value)

    @model_validator(mode="after")
    def _one_body(self) -> Definition:
        given = [k for k in ("jobs", "stages", "steps") if getattr(self, k) is not None]
        if len(given) != 1:
            found = f"found {' and '.join(given)}" if given else "found none"
            raise ValueError(
                "a workflow gives jobs, stages (in order) or steps (a graph), exactly one; " + found
            )
        return self


for _model in (
    Block,
    MapStage,
    ParallelStage,
    GroupStage,
    MatchCase,
    SwitchStage,
    LoopStage,
    JobDef,
    Definition,
):
    _model.model_rebuild()
