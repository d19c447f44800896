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
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from legato.durations import parse_duration
from legato.errors import DefinitionError, ParamError, TemplateError

if TYPE_CHECKING:
    from legato.model.graph import Graph

__all__ = [
    "DEFAULT_MAX_LOST_ATTEMPTS",
    "NAME_PATTERN",
    "STEP_ID_PATTERN",
    "VERSION_PATTERN",
    "ParamSpec",
    "RetryPolicy",
    "StepSpec",
    "WorkflowSpec",
    "check_max_lost_attempts",
    "check_priority",
    "check_retries",
    "format_validation_error",
]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
VERSION_PATTERN = re.compile(r"^[a-zA-Z0-9._-]+$")
STEP_ID_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

ParamType = Literal["any", "str", "int", "float", "bool", "list", "dict"]
Backoff = Literal["fixed", "linear", "exponential"]


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


def _whole_number(value: Any) -> Any:
    """Refuse ``True``/``False`` where a count or a priority belongs (pydantic reads 1/0)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


def _check_name(kind: str, value: str, pattern: re.Pattern[str], shape: str) -> str:
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
        return _whole_number(value)

    @field_validator("delay", "max_delay", mode="before")
    @classmethod
    def _duration(cls, value: Any, info: ValidationInfo) -> Any:
        return parse_duration(value, field=info.field_name or "retry delay")


class ParamSpec(_Model):
    """A declared run param: its type, whether it is required, its default."""

    type: ParamType = "any"
    required: bool = True
    default: Any = None
    description: str | None = None


class StepSpec(_Model):
    """One node of the graph: a task call with its inputs and policies."""

    id: str
    kind: Literal["task"] = "task"
    task: str
    #: positional arguments (templated)
    args: list[Any] = Field(default_factory=list)
    #: keyword arguments (templated), or one whole expression yielding a mapping
    inputs: dict[str, Any] | str = Field(default_factory=dict)
    needs: list[str] = Field(default_factory=list)
    retry: RetryPolicy | None = None
    timeout: float | None = Field(default=None, gt=0)
    queue: str | None = None
    priority: int | None = Field(default=None, ge=0, le=9)
    #: how many times the step's worker may be lost (killed, stuck, cut off)
    #: before the step fails; apart from ``retry``, which the task's own errors spend
    max_lost_attempts: int | None = Field(default=None, ge=1, le=1000)
    description: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_name("step id", value, STEP_ID_PATTERN, "letters, digits, '_' and '-'")

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        # A timeout of zero would not mean "no timeout": leave it out for that.
        return parse_duration(value, field="timeout", allow_zero=False)

    @field_validator("priority", "max_lost_attempts", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        return _whole_number(value)


class WorkflowSpec(_Model):
    """A named, versioned workflow definition."""

    name: str
    version: str = "1"
    description: str | None = None
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    #: accept params that are not declared (a Sequence whose first task takes ``**kwargs``)
    extra_params: bool = False
    steps: list[StepSpec]
    outputs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(
            "workflow name", value, NAME_PATTERN, "lowercase letters, digits and '_'"
        )

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        return _check_name(
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
            problems = format_validation_error(exc, step_ids=_step_ids(data))
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
        for cached in ("content_hash", "graph"):
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

    def step(self, step_id: str) -> StepSpec:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

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
                problem = _type_problem(name, param.type, value)
                if problem:
                    problems.append(problem)
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


def _type_problem(name: str, expected: str, value: Any) -> str | None:
    if expected == "any":
        return None
    ok = isinstance(value, _PY_TYPES[expected])
    if expected in ("int", "float") and isinstance(value, bool):
        ok = False
    if ok:
        return None
    return f"param {name!r} must be {expected}, got {type(value).__name__} {value!r}"


def _reference_problems(spec: WorkflowSpec) -> list[str]:
    from legato.expressions import references

    problems: list[str] = []
    ids: set[str] = set()
    for step in spec.steps:
        if step.id in ids:
            problems.append(f"duplicate step id {step.id!r}")
        ids.add(step.id)
    if not spec.steps:
        problems.append("a workflow needs at least one step")

    def check_refs(where: str, value: Any) -> set[str]:
        try:
            refs = references(value)
        except TemplateError as exc:
            problems.append(f"{where}: {exc}")
            return set()
        for step_id in sorted(refs.steps - ids):
            problems.append(f"{where} refers to unknown step {step_id!r}")
        if not spec.extra_params:
            for param in sorted(refs.params - set(spec.params)):
                problems.append(f"{where} refers to unknown param {param!r}")
        return set(refs.steps)

    for step in spec.steps:
        where = f"step {step.id!r}"
        for dep in step.needs:
            if dep not in ids:
                problems.append(f"{where} needs unknown step {dep!r}")
            elif dep == step.id:
                problems.append(f"{where} needs itself")
        if isinstance(step.inputs, str):
            from legato.expressions import is_whole_expression

            if not is_whole_expression(step.inputs):
                problems.append(
                    f"{where}: inputs given as text must be one ${{{{ ... }}}} expression "
                    "yielding a mapping"
                )
        own = check_refs(f"{where} inputs", step.inputs) | check_refs(f"{where} args", step.args)
        if step.id in own:
            problems.append(f"{where} refers to its own output")
    for key, value in spec.outputs.items():
        check_refs(f"output {key!r}", value)
    return problems


def _step_ids(data: Any) -> list[str | None]:
    """The step ids as written, so field errors can name a step by id, not by position."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError:
            return []
    steps = data.get("steps") if isinstance(data, Mapping) else None
    if not isinstance(steps, list):
        return []
    return [
        step.get("id") if isinstance(step, Mapping) and isinstance(step.get("id"), str) else None
        for step in steps
    ]


def _location(loc: tuple[int | str, ...], step_ids: Sequence[str | None]) -> str:
    path = ".".join(str(p) for p in loc) or "(top level)"
    if len(loc) < 3 or loc[0] != "steps" or not isinstance(loc[1], int) or loc[2] == "id":
        return path
    step_id = step_ids[loc[1]] if loc[1] < len(step_ids) else None
    if step_id is None:
        return path
    return f"step {step_id!r} " + ".".join(str(p) for p in loc[2:])


def format_validation_error(
    exc: ValidationError, *, step_ids: Sequence[str | None] = ()
) -> list[str]:
    """Turn pydantic's errors into lines naming the field path and what was wrong.

    ``step_ids`` (the ids of the steps validated, in order) lets a step's field
    be named ``step 'load' timeout`` rather than ``steps.0.timeout``.
    """
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = _location(loc, step_ids)
        message = err["msg"].removeprefix("Value error, ")
        if loc:
            # Checks that name their field already (durations do) need not name it twice.
            message = message.removeprefix(f"{loc[-1]}: ")
        if err["type"] in ("extra_forbidden",):
            message = "unknown field"
        elif err["type"] == "missing":
            message = "required field is missing"
        found = err.get("input")
        suffix = "" if err["type"] in ("missing", "value_error") else f" (found {found!r})"
        if isinstance(found, dict | list) and len(repr(found)) > 80:
            suffix = ""
        lines.append(f"{path}: {message}{suffix}")
    return lines
