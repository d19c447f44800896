"""The Python builder: ``Workflow``, step references, ``>>`` ordering and ``Sequence``.

Everything here ends as a :class:`~legato.model.spec.WorkflowSpec`; references
such as ``step.output["rows"]`` become ``${{ steps.<id>.output['rows'] }}``
expressions, so a spec built in Python reads the same as one written in YAML.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable
from collections.abc import Sequence as SequenceABC
from typing import Any

from pydantic import ValidationError

from legato.define.tasks import Task
from legato.durations import parse_duration
from legato.errors import DefinitionError, PayloadError
from legato.model.spec import (
    ParamSpec,
    RetryPolicy,
    WorkflowSpec,
    check_max_lost_attempts,
    check_priority,
    check_retries,
    format_validation_error,
)
from legato.payload import to_json

__all__ = ["OutputRef", "ParamRef", "Sequence", "StepRef", "Workflow"]

_MISSING: Any = object()


class _Ref:
    """A value known only when the run gets there, written as an expression."""

    expression: str

    def template(self) -> str:
        return "${{ " + self.expression + " }}"

    def __repr__(self) -> str:
        return self.template()


class ParamRef(_Ref):
    def __init__(self, name: str) -> None:
        self.name = name
        self.expression = f"params{_accessor(name)}"


class OutputRef(_Ref):
    """A step's output, or a part of it: ``step.output["rows"][0]``."""

    def __init__(self, step_id: str, path: tuple[str | int, ...] = ()) -> None:
        self.step_id = step_id
        self.path = path
        self.expression = f"steps{_accessor(step_id)}.output" + "".join(
            f"[{json.dumps(p)}]" if isinstance(p, str) else f"[{p}]" for p in path
        )

    def __getitem__(self, key: str | int) -> OutputRef:
        if not isinstance(key, str | int) or isinstance(key, bool):
            raise DefinitionError(f"output keys are strings or list indexes, got {key!r}")
        return OutputRef(self.step_id, (*self.path, key))


def _accessor(name: str) -> str:
    return f".{name}" if name.isidentifier() else f"[{json.dumps(name)}]"


class StepRef:
    """What ``wf.step(...)`` returns: use ``.output`` for data, ``>>`` for order."""

    def __init__(self, workflow: Workflow, step_id: str) -> None:
        self._workflow = workflow
        self.id = step_id

    @property
    def output(self) -> OutputRef:
        return OutputRef(self.id)

    def __rshift__(self, other: StepRef | list[StepRef]) -> StepRef | list[StepRef]:
        for target in _as_refs(other, "a >> b"):
            target._workflow._add_need(target.id, self.id)
        return other

    def __rrshift__(self, other: list[StepRef]) -> StepRef:
        for source in _as_refs(other, "[a, b] >> c"):
            self._workflow._add_need(self.id, source.id)
        return self

    def __repr__(self) -> str:
        return f"<step {self.id!r} of {self._workflow.name!r}>"


def _as_refs(value: Any, where: str) -> list[StepRef]:
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if not isinstance(item, StepRef):
            raise DefinitionError(f"{where}: expected steps, got {item!r}")
    return list(items)


class Workflow:
    """A workflow under construction. ``spec`` validates it and returns the spec."""

    def __init__(self, name: str, *, version: str = "1", description: str | None = None) -> None:
        self.name = name
        self.version = version
        self.description = description
        self._params: dict[str, ParamSpec] = {}
        self._extra_params = False
        self._steps: dict[str, dict[str, Any]] = {}
        self._outputs: dict[str, Any] = {}
        self._tasks: dict[str, Task] = {}
        self._spec: WorkflowSpec | None = None

    def __repr__(self) -> str:
        return f"<Workflow {self.name}@{self.version} steps={len(self._steps)}>"

    # -- declarations ---------------------------------------------------------

    def param(
        self,
        name: str,
        default: Any = _MISSING,
        *,
        type: str = "any",
        description: str | None = None,
    ) -> ParamRef:
        """Declare a run param (required unless it has a default) and refer to it."""
        if default is not _MISSING:
            _literal(default, f"param {name!r} default")
        try:
            declared = ParamSpec(
                type=type,  # type: ignore[arg-type]
                required=default is _MISSING,
                default=None if default is _MISSING else default,
                description=description,
            )
        except ValidationError as exc:
            problems = "; ".join(format_validation_error(exc))
            raise DefinitionError(f"workflow {self.name!r}: param {name!r}: {problems}") from None
        existing = self._params.get(name)
        if existing is not None and declared != existing:
            if declared != ParamSpec():  # a bare wf.param(name) only refers to it again
                raise DefinitionError(
                    f"workflow {self.name!r}: param {name!r} is declared twice, differently"
                )
        else:
            self._params[name] = declared
        self._changed()
        return ParamRef(name)

    def step(
        self,
        step_id: str,
        task: Task | str,
        *,
        needs: Iterable[StepRef | str] | None = None,
        retry: RetryPolicy | int | dict[str, Any] | None = None,
        timeout: str | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_lost_attempts: int | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> StepRef:
        """Add a step calling ``task`` with keyword inputs.

        Inputs are literals, references (``other.output["key"]``, ``wf.param("x")``)
        or ``${{ ... }}`` strings; a reference to another step is a dependency.
        ``inputs={...}`` passes names that clash with this method's own keywords.
        ``retry`` is a :class:`RetryPolicy`, a number of retries, or a dict of
        RetryPolicy fields. ``max_lost_attempts`` overrides the task's budget of
        lost workers (see :func:`legato.task`).
        """
        if step_id in self._steps:
            raise DefinitionError(f"workflow {self.name!r}: duplicate step id {step_id!r}")
        task_name = self._task_name(step_id, task)
        merged = {**(inputs or {}), **kwargs}
        entry: dict[str, Any] = {
            "id": step_id,
            "task": task_name,
            "inputs": {
                k: _to_spec_value(v, f"step {step_id!r} input {k!r}") for k, v in merged.items()
            },
            "needs": [self._need_id(n) for n in needs or ()],
        }
        # Options are checked here, so the error points at this call and names the step.
        where = f"workflow {self.name!r} step {step_id!r}"
        if retry is not None:
            entry["retry"] = _retry_policy(retry, where)
        try:
            if timeout is not None:
                entry["timeout"] = parse_duration(timeout, field="timeout", allow_zero=False)
            if priority is not None:
                entry["priority"] = check_priority(priority)
            if max_lost_attempts is not None:
                entry["max_lost_attempts"] = check_max_lost_attempts(max_lost_attempts)
        except ValueError as exc:
            raise DefinitionError(f"{where}: {exc}") from None
        if queue is not None:
            entry["queue"] = queue
        self._steps[step_id] = entry
        self._changed()
        return StepRef(self, step_id)

    def add_group(
        self,
        items: Iterable[Task | tuple[str, Task] | tuple[str, Task, dict[str, Any]]],
        *,
        needs: Iterable[StepRef | str] | None = None,
    ) -> list[StepRef]:
        """Add parallel sibling steps that share ``needs``.

        Each item is a task (its step id is the function's name), ``(id, task)``
        or ``(id, task, inputs)``.
        """
        needs = list(needs or ())
        refs = []
        for item in items:
            if isinstance(item, Task):
                step_id, task, inputs = item.fn.__name__, item, {}
            elif isinstance(item, tuple) and len(item) in (2, 3):
                step_id, task = item[0], item[1]
                inputs = item[2] if len(item) == 3 else {}
            else:
                raise DefinitionError(
                    f"workflow {self.name!r}: add_group items are tasks, (id, task) or "
                    f"(id, task, inputs), got {item!r}"
                )
            refs.append(self.step(step_id, task, needs=needs, inputs=inputs))
        return refs

    def outputs(self, **refs: Any) -> Workflow:
        """Declare the run's outputs, computed when its last step completes."""
        self._outputs.update({k: _to_spec_value(v, f"output {k!r}") for k, v in refs.items()})
        self._changed()
        return self

    # -- results --------------------------------------------------------------

    @property
    def spec(self) -> WorkflowSpec:
        """The validated spec; raises :class:`DefinitionError` on any problem."""
        if self._spec is None:
            data = {
                "name": self.name,
                "version": self.version,
                "description": self.description,
                "params": {k: v.model_dump() for k, v in self._params.items()},
                "extra_params": self._extra_params,
                "steps": list(self._steps.values()),
                "outputs": self._outputs,
            }
            self._spec = WorkflowSpec.parse(data, source=f"workflow {self.name!r}")
            from legato.define.validate import check_calls

            check_calls(self._spec, self._tasks)
        return self._spec

    @property
    def tasks(self) -> dict[str, Task]:
        """Task objects given to ``step()``, by name: the client registers nothing else."""
        return dict(self._tasks)

    # -- internals --------------------------------------------------------------

    def _changed(self) -> None:
        self._spec = None

    def _task_name(self, step_id: str, task: Task | str) -> str:
        if isinstance(task, Task):
            self._tasks[task.name] = task
            return task.name
        if isinstance(task, str):
            return task
        name = getattr(task, "__qualname__", repr(task))
        raise DefinitionError(
            f"workflow {self.name!r} step {step_id!r}: {name} is not a task; "
            "decorate it with @legato.task"
        )

    def _need_id(self, need: StepRef | str) -> str:
        if isinstance(need, StepRef):
            return need.id
        if isinstance(need, str):
            return need
        raise DefinitionError(
            f"workflow {self.name!r}: needs takes steps or step ids, got {need!r}"
        )

    def _add_need(self, step_id: str, need: str) -> None:
        needs = self._steps[step_id]["needs"]
        if need not in needs:
            needs.append(need)
        self._changed()


class Sequence(Workflow):
    """A straight chain of tasks.

    The first task gets the run's params as keyword arguments (its signature
    declares them), each later task gets the previous output as its one
    argument, and a task that takes no arguments gets none. The run's output is
    ``{"result": <last output>}``.
    """

    def __init__(
        self,
        name: str,
        tasks: SequenceABC[Task],
        *,
        version: str = "1",
        description: str | None = None,
    ) -> None:
        super().__init__(name, version=version, description=description)
        if not tasks:
            raise DefinitionError(f"sequence {name!r} needs at least one task")
        previous: StepRef | None = None
        for index, task in enumerate(tasks):
            if not isinstance(task, Task):
                raise DefinitionError(
                    f"sequence {name!r} item {index}: {task!r} is not a task; "
                    "decorate it with @legato.task"
                )
            step_id = self._unique_id(task.fn.__name__)
            if previous is None:
                inputs: Any = {}
                if task.takes_arguments:
                    self._declare_params_from(task)
                    inputs = "${{ params }}"
                self._steps[step_id] = {
                    "id": step_id,
                    "task": task.name,
                    "inputs": inputs,
                    "needs": [],
                }
                self._tasks[task.name] = task
                ref = StepRef(self, step_id)
            else:
                ref = self.step(step_id, task, needs=[previous])
                if task.takes_arguments:
                    self._steps[step_id]["args"] = [previous.output.template()]
            previous = ref
        assert previous is not None
        self.outputs(result=previous.output)

    def _unique_id(self, base: str) -> str:
        step_id, n = base, 2
        while step_id in self._steps:
            step_id, n = f"{base}_{n}", n + 1
        return step_id

    def _declare_params_from(self, task: Task) -> None:
        hints = _type_hints(task)
        for p in task.signature.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                self._extra_params = True
            elif p.kind is p.VAR_POSITIONAL:
                continue
            elif p.kind is p.POSITIONAL_ONLY:
                raise DefinitionError(
                    f"sequence {self.name!r}: first task {task.name} takes positional-only "
                    f"parameter {p.name!r}; params are passed by keyword"
                )
            else:
                default = _MISSING if p.default is p.empty else p.default
                self.param(p.name, default, type=_param_type(hints.get(p.name)))


def _type_hints(task: Task) -> dict[str, Any]:
    try:
        return typing.get_type_hints(task.fn)
    except Exception:
        return {}


def _param_type(hint: Any) -> str:
    origin = typing.get_origin(hint) or hint
    return {str: "str", int: "int", float: "float", bool: "bool", list: "list", dict: "dict"}.get(
        origin, "any"
    )


def _retry_policy(retry: RetryPolicy | int | dict[str, Any], where: str) -> dict[str, Any]:
    try:
        if isinstance(retry, RetryPolicy):
            policy = retry
        elif isinstance(retry, int) and not isinstance(retry, bool):
            policy = RetryPolicy(max_attempts=check_retries(retry) + 1)
        elif isinstance(retry, dict):
            policy = RetryPolicy(**retry)
        else:
            raise TypeError(f"expected RetryPolicy, a number of retries or a dict, got {retry!r}")
    except ValidationError as exc:
        problems = "; ".join(format_validation_error(exc))
        raise DefinitionError(f"{where}: invalid retry: {problems}") from None
    except Exception as exc:
        raise DefinitionError(f"{where}: invalid retry: {exc}") from None
    return policy.model_dump(mode="json", exclude_defaults=True)


def _to_spec_value(value: Any, where: str) -> Any:
    # References become text first, then the whole value passes the JSON gate
    # once, so an error names the path inside it and keys are checked too.
    return _literal(_with_templates(value, where), where)


def _with_templates(value: Any, where: str) -> Any:
    if isinstance(value, _Ref):
        return value.template()
    if isinstance(value, StepRef):
        raise DefinitionError(f"{where}: pass {value.id}.output, not the step itself")
    if isinstance(value, dict):
        return {k: _with_templates(v, where) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_with_templates(v, where) for v in value]
    return value


def _literal(value: Any, where: str) -> Any:
    try:
        plain, _ = to_json(value, what=where, max_bytes=None)
    except PayloadError as exc:
        raise DefinitionError(str(exc)) from None
    return plain
