"""``WorkflowSpec``: the one validated, JSON-serialisable form of a workflow.

Every front end (the Python builder now, YAML and importers later) produces
this, and it is stored with every run, so a worker elsewhere needs only the
task code. Field checks are pydantic's; graph checks (unknown dependencies,
cycles, references to unknown steps or params) are :meth:`WorkflowSpec.check`.
Both report where and what, as :class:`~legato.errors.DefinitionError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from legato.errors import DefinitionError, ParamError
from legato.model.steps import (
    KINDS,
    STEP_ID_PATTERN,
    MapStep,
    RetryPolicy,
    Step,
    TaskStep,
    check_name,
)

if TYPE_CHECKING:
    from legato.model.graph import Graph

__all__ = [
    "DEFAULT_MAX_LOST_ATTEMPTS",
    "FAILURE_FACTS",
    "NAME_PATTERN",
    "STEP_ID_PATTERN",
    "VERSION_PATTERN",
    "FailureHandler",
    "ParamSpec",
    "RetryPolicy",
    "Step",
    "StepSpec",
    "TaskStep",
    "Trigger",
    "WorkflowSpec",
    "check_max_lost_attempts",
    "check_priority",
    "check_retries",
    "format_validation_error",
]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
VERSION_PATTERN = re.compile(r"^[a-zA-Z0-9._-]+$")

ParamType = Literal[
    "any", "str", "int", "float", "bool", "list", "dict", "date", "datetime", "choice"
]


#: RetryPolicy.max_attempts allows at most 1000 attempts: the first and 999 retries
MAX_RETRIES = 999


def check_retries(value: Any) -> int:
    """Retries after the first attempt, as ``@task(retries=)`` and ``step(retry=)`` take them."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise ValueError(f"retries must be an int from 0 to {MAX_RETRIES}, got {value!r}")
    return value


def check_priority(value: Any) -> int:
    """A priority as ``@task(priority=)`` and ``step(priority=)`` take it: 0 (lowest) to 9."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise ValueError(f"priority must be an int from 0 to 9, got {value!r}")
    return value


#: how many times a step's worker may be lost before the step fails
DEFAULT_MAX_LOST_ATTEMPTS = 3


def check_max_lost_attempts(value: Any) -> int:
    """How many times a step's worker may be lost before the step fails: 1 to 1000."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ValueError(f"max_lost_attempts must be an int from 1 to 1000, got {value!r}")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Model):
    """A declared run param: its type, whether it is required, its default.

    Values stay JSON: a ``date`` is ISO text (``2024-05-01``), a ``datetime`` ISO
    8601 text (``2024-05-01T09:30:00+02:00``, kept with its offset when it has
    one), a ``choice`` one of its ``options``.
    """

    type: ParamType = "any"
    required: bool = True
    default: Any = None
    description: str | None = None
    #: the values a ``choice`` param may take (text, numbers or booleans)
    options: list[Any] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.type == "choice":
            if not self.options:
                raise ValueError(
                    "a choice param needs options: a non-empty list of the values it may take"
                )
            odd = [o for o in self.options if not isinstance(o, str | int | float)]
            if odd:
                raise ValueError(f"options are text, numbers or booleans, got {odd[0]!r}")
            if len({json.dumps(o) for o in self.options}) != len(self.options):
                raise ValueError(f"options are given twice: {self.options!r}")
        elif self.options is not None:
            raise ValueError(f"options belong to a choice param, not to a {self.type} one")
        if self.type in ("date", "datetime", "choice") and self.default is not None:
            try:
                self.accept(self.default)
            except ValueError as exc:
                raise ValueError(f"default {exc}") from None
        return self

    def accept(self, value: Any) -> Any:
        """``value`` as a run holds it (dates and times as ISO text), or a ``ValueError``
        saying what this param must be and what was found."""
        if self.type == "any":
            return value
        if self.type == "date":
            return _iso_date(value)
        if self.type == "datetime":
            return _iso_datetime(value)
        if self.type == "choice":
            options = self.options or []
            if any(_same(value, option) for option in options):
                return value
            listed = ", ".join(json.dumps(o) for o in options)
            raise ValueError(f"must be one of {listed}, got {_found(value)}")
        ok = isinstance(value, _PY_TYPES[self.type])
        if self.type in ("int", "float") and isinstance(value, bool):
            ok = False
        if not ok:
            raise ValueError(f"must be {self.type}, got {_found(value)}")
        return value


#: the fields of a cron expression, in order
CRON_FIELDS = "minute hour day-of-month month day-of-week"


class Trigger(_Model):
    """A schedule: runs started when ``cron`` matches, read in ``timezone``, with ``params``.

    Stored with the spec (a scheduler reads it); ``cron`` has the five standard
    fields or is one of ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``,
    ``@yearly``; ``timezone`` is an IANA name, so 09:00 stays 09:00 across
    daylight saving changes.
    """

    cron: str
    timezone: str = "UTC"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        fields = value.split()
        if not value.startswith("@") and len(fields) != 5:
            raise ValueError(
                f"{value!r} is not a cron expression: it has {len(fields)} fields, "
                f"a cron expression has five ({CRON_FIELDS}) or is @hourly, @daily, ..."
            )
        if not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a cron expression (five fields: {CRON_FIELDS}, "
                "e.g. '0 6 * * 1-5'; or @hourly, @daily, @weekly, @monthly, @yearly)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone (e.g. UTC, Europe/Paris, America/New_York)"
            ) from None
        return value


#: the facts of a failed run a handler gets as params when ``params`` is not given
#: (those it declares, or all with ``extra_params``)
FAILURE_FACTS = ("run_id", "workflow", "status", "error", "params")


class FailureHandler(_Model):
    """The workflow started when a run of this one fails (Conductor's ``failureWorkflow``).

    Named (``workflow``, newest stored ``version`` unless given) or given whole
    (``spec``). Its ``params`` are templated from the failed run (``${{ run.id }}``,
    ``${{ run.error.message }}``, ``${{ params.x }}``); without them the handler
    gets the facts of the failure it declares as params (:data:`FAILURE_FACTS`).
    """

    workflow: str | None = None
    version: str | None = None
    spec: dict[str, Any] | None = None
    params: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_workflow(self) -> FailureHandler:
        if (self.workflow is None) == (self.spec is None):
            raise ValueError("a failure handler names a workflow or gives its spec, exactly one")
        if self.workflow is not None:
            check_name(
                "failure handler workflow",
                self.workflow,
                NAME_PATTERN,
                "lowercase letters, digits and '_'",
            )
        if self.spec is not None and self.version is not None:
            raise ValueError("a failure handler given whole takes no version")
        return self

    @property
    def name(self) -> str:
        return self.workflow or str((self.spec or {}).get("name", ""))


#: the task step, by the name it had when it was the only kind
StepSpec = TaskStep


class WorkflowSpec(_Model):
    """A named, versioned workflow definition."""

    name: str
    version: str = "1"
    description: str | None = None
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    #: accept params that are not declared (a Sequence whose first task takes ``**kwargs``)
    extra_params: bool = False
    steps: list[Step]
    outputs: dict[str, Any] = Field(default_factory=dict)
    #: when a scheduler starts it (none: only when asked)
    triggers: list[Trigger] = Field(default_factory=list)
    #: the workflow started when a run of this one fails
    on_failure: FailureHandler | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name("workflow name", value, NAME_PATTERN, "lowercase letters, digits and '_'")

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        return check_name(
            "workflow version", value, VERSION_PATTERN, "letters, digits, '.', '_' and '-'"
        )

    # -- construction -------------------------------------------------------

    @classmethod
    def parse(cls, data: Any, *, source: str = "workflow") -> WorkflowSpec:
        """Validate ``data`` (a dict or JSON text) fully, or raise one DefinitionError."""
        try:
            spec = (
                cls.model_validate_json(data)
                if isinstance(data, str | bytes)
                else cls.model_validate(data)
            )
        except ValidationError as exc:
            problems = format_validation_error(exc, data=data)
            raise DefinitionError.from_problems(source, problems) from None
        spec.check()
        return spec

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)

    def to_json(self) -> str:
        """JSON as written (defaults left out, key order kept), as the spec is stored."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    def canonical_json(self) -> str:
        """Sorted keys, defaults left out: equal specs give equal text, hence equal hashes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy without the cached hash and graph, which describe the original."""
        copy = super().model_copy(update=update, deep=deep)
        for cached in ("content_hash", "graph", "inline_specs", "failure_handler_spec"):
            copy.__dict__.pop(cached, None)
        return copy

    @cached_property
    def content_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    @cached_property
    def graph(self) -> Graph:
        """The dependency graph (raises CycleError); computed once per spec."""
        from legato.model.graph import Graph

        return Graph.of(self)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def step(self, step_id: str) -> Step:
        """The step with this id, at any depth."""
        return self.graph.steps[step_id]

    def task_calls(self) -> list[TaskStep | MapStep]:
        """Every step that calls a task (task steps, and maps calling one per item), any
        depth, in this spec and in the sub-workflow specs it holds."""
        calls = [
            step
            for step in self.graph.steps.values()
            if isinstance(step, TaskStep) or (isinstance(step, MapStep) and step.task)
        ]
        for child in self.inline_specs.values():
            calls.extend(child.task_calls())
        return calls

    @cached_property
    def inline_specs(self) -> dict[str, WorkflowSpec]:
        """The specs its sub-workflow steps give whole, by step id (parsed once per spec;
        named workflows are stored apart)."""
        from legato.model.steps import SubWorkflowStep

        return {
            step.id: WorkflowSpec.parse(step.spec, source=f"step {step.id!r} spec")
            for step in self.graph.steps.values()
            if isinstance(step, SubWorkflowStep) and step.spec is not None
        }

    @cached_property
    def failure_handler_spec(self) -> WorkflowSpec | None:
        """The failure handler's spec when it is given whole (a named one is stored apart)."""
        if self.on_failure is None or self.on_failure.spec is None:
            return None
        return WorkflowSpec.parse(self.on_failure.spec, source="on_failure spec")

    def task_step(self, step_id: str) -> TaskStep:
        """The task step with this id; a ``KeyError`` for a step of another kind."""
        step = self.step(step_id)
        if not isinstance(step, TaskStep):
            raise KeyError(f"step {step_id!r} is a {step.kind} step, not a task step")
        return step

    # -- validation ---------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`DefinitionError` listing every graph-level problem."""
        problems = _reference_problems(self)
        if problems:
            raise DefinitionError.from_problems(f"workflow {self.name!r}", problems)
        self.graph  # noqa: B018 - builds the graph, raising CycleError naming the cycle

    # -- params ---------------------------------------------------------------

    def bind_params(self, given: dict[str, Any] | None) -> dict[str, Any]:
        """Return the run's params: given values checked against declarations, defaults filled."""
        given = dict(given or {})
        problems: list[str] = []
        bound: dict[str, Any] = {}
        for name, param in self.params.items():
            if name in given:
                value = given.pop(name)
                try:
                    bound[name] = param.accept(value)
                except ValueError as exc:
                    problems.append(f"param {name!r} {exc}")
                    bound[name] = value
            elif param.required:
                problems.append(f"missing required param {name!r}")
            else:
                bound[name] = param.default
        if given:
            if self.extra_params:
                bound.update(given)
            else:
                known = ", ".join(sorted(self.params)) or "none"
                problems.extend(
                    f"unknown param {name!r} (declared: {known})" for name in sorted(given)
                )
        if problems:
            where = f"workflow {self.label}"
            if len(problems) == 1:
                raise ParamError(f"{where}: {problems[0]}")
            raise ParamError(f"{where}: " + "; ".join(problems))
        return bound


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list, tuple),
    "dict": (dict,),
}

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _found(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"


def _iso_date(value: Any) -> str:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise ValueError(f"must be a date, ISO text YYYY-MM-DD (e.g. 2024-05-01), got {_found(value)}")


def _iso_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and _ISO_DATE.match(value[:10]):
        try:
            return datetime.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise ValueError(
        f"must be a datetime, ISO 8601 text (e.g. 2024-05-01T09:30:00+02:00), got {_found(value)}"
    )


def _same(value: Any, option: Any) -> bool:
    """Equal as JSON values: ``True`` is not ``1``, ``"1"`` is not ``1``."""
    return isinstance(value, bool) == isinstance(option, bool) and value == option


def _reference_problems(spec: WorkflowSpec) -> list[str]:
    from legato.model.checks import spec_problems

    return spec_problems(spec)


def _location(loc: tuple[int | str, ...], data: Any) -> str:
    """``step 'load' timeout`` rather than ``steps.0.task.timeout``, at any depth.

    Walks the data as written along pydantic's path: an item of a list that
    has an ``id`` is a step and is named by it, and the kind tag pydantic puts
    after a step's position is left out.
    """
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError:
            data = None
    named: str | None = None
    parts: list[str] = []
    node: Any = data
    i = 0
    while i < len(loc):
        part = loc[i]
        child = _get(node, part)
        if isinstance(part, int) and isinstance(child, Mapping):
            j = i + 1
            if j < len(loc) and loc[j] in KINDS:
                j += 1  # the union's tag, which pydantic puts after a step's position
            if isinstance(child.get("id"), str) and j < len(loc) and loc[j] != "id":
                named, parts, node, i = child["id"], [], child, j
                continue
            parts.append(str(part))
            node, i = child, j
            continue
        parts.append(str(part))
        node = child
        i += 1
    path = ".".join(parts)
    if named is not None:
        return f"step {named!r} {path}".rstrip()
    return path or "(top level)"


def _get(node: Any, key: int | str) -> Any:
    if isinstance(node, Mapping):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    return None


def format_validation_error(exc: ValidationError, *, data: Any = None) -> list[str]:
    """Turn pydantic's errors into lines naming the field path and what was wrong.

    ``data`` (what was validated) lets a step's field be named ``step 'load'
    timeout`` rather than ``steps.0.timeout``.
    """
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = _location(loc, data)
        message = err["msg"].removeprefix("Value error, ")
        if loc:
            # Checks that name their field already (durations do) need not name it twice.
            message = message.removeprefix(f"{loc[-1]}: ")
        if err["type"] in ("extra_forbidden",):
            message = "unknown field"
        elif err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "union_tag_invalid":
            found_kind = err.get("ctx", {}).get("tag")
            message = f"unknown step kind {found_kind!r}; expected one of {', '.join(KINDS)}"
        found = err.get("input")
        quiet = ("missing", "value_error", "union_tag_invalid")
        suffix = "" if err["type"] in quiet else f" (found {found!r})"
        if isinstance(found, dict | list) and len(repr(found)) > 80:
            suffix = ""
        lines.append(f"{path}: {message}{suffix}")
    return lines
