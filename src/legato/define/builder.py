"""The Python builder: ``Workflow``, and ``Sequence`` for a straight chain of tasks.

Everything here ends as a :class:`~legato.model.spec.WorkflowSpec`; references
such as ``step.output["rows"]`` become ``${{ steps.<id>.output['rows'] }}``
expressions (see :mod:`legato.define.refs`), so a spec built in Python reads the
same as one written in YAML. The methods adding steps of each kind are in
:mod:`legato.define.steps`.
"""

from __future__ import annotations

import datetime
import typing
from collections.abc import Sequence as SequenceABC
from typing import Any

from pydantic import ValidationError

from legato.define.refs import OutputRef, ParamRef, StepRef, _literal, _to_spec_value
from legato.define.steps import Steps
from legato.define.tasks import Task
from legato.errors import DefinitionError
from legato.model.spec import ParamSpec, Trigger, WorkflowSpec, format_validation_error

__all__ = ["OutputRef", "ParamRef", "Sequence", "StepRef", "Workflow"]

_MISSING: Any = object()


class Workflow(Steps):
    """A workflow under construction. ``spec`` validates it and returns the spec."""

    def __init__(
        self,
        name: str,
        *,
        version: str = "1",
        description: str | None = None,
        on_failure: Workflow | WorkflowSpec | str | None = None,
    ) -> None:
        """``on_failure``: the workflow started when a run of this one fails (see
        :meth:`failure_handler` for its version and params)."""
        self.name = name
        self.version = version
        self.description = description
        self._params: dict[str, ParamSpec] = {}
        self._extra_params = False
        self._steps: dict[str, dict[str, Any]] = {}
        #: every step of every scope, by id (ids are unique across scopes)
        self._all: dict[str, dict[str, Any]] = {}
        self._outputs: dict[str, Any] = {}
        self._triggers: list[Trigger] = []
        self._tasks: dict[str, Task] = {}
        self._spec: WorkflowSpec | None = None
        self._on_failure: dict[str, Any] | None = None
        self._init_steps(self, self._steps)
        if on_failure is not None:
            self.failure_handler(on_failure)

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
        options: list[Any] | None = None,
    ) -> ParamRef:
        """Declare a run param (required unless it has a default) and refer to it.

        ``type`` is ``any``, ``str``, ``int``, ``float``, ``bool``, ``list``, ``dict``,
        ``date`` (ISO text ``2024-05-01``), ``datetime`` (ISO 8601 text) or ``choice``,
        which takes one of ``options``.
        """
        if default is not _MISSING:
            default = _literal(_iso(default), f"param {name!r} default")
        try:
            declared = ParamSpec(
                type=type,  # type: ignore[arg-type]
                required=default is _MISSING,
                default=None if default is _MISSING else default,
                description=description,
                options=None if options is None else _literal(options, f"param {name!r} options"),
            )
        except ValidationError as exc:
            problems = "; ".join(
                p.removeprefix("(top level): ") for p in format_validation_error(exc)
            )
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

    def outputs(self, **refs: Any) -> Workflow:
        """Declare the run's outputs, computed when its last step completes."""
        self._outputs.update({k: _to_spec_value(v, f"output {k!r}") for k, v in refs.items()})
        self._changed()
        return self

    def schedule(
        self, cron: str, *, timezone: str = "UTC", params: dict[str, Any] | None = None
    ) -> Workflow:
        """Start a run whenever ``cron`` (five fields, or ``@daily``...) matches in ``timezone``
        (an IANA name), with ``params``; several schedules may be given."""
        plain = _literal(params or {}, "schedule params")
        try:
            trigger = Trigger(cron=cron, timezone=timezone, params=plain)
        except ValidationError as exc:
            problems = "; ".join(format_validation_error(exc))
            raise DefinitionError(f"workflow {self.name!r}: schedule {problems}") from None
        self._triggers.append(trigger)
        self._changed()
        return self

    def failure_handler(
        self,
        workflow: Workflow | WorkflowSpec | str,
        *,
        version: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> Workflow:
        """Start ``workflow`` when a run of this one fails (or is cancelled, when its
        canceller asks): a workflow (its spec goes with this one) or a stored workflow's
        name (newest ``version`` unless given). ``params`` are templated from the failed
        run (``${{ run.id }}``, ``${{ run.error.message }}``, ``${{ params.x }}``);
        without them the handler gets those of ``run_id``, ``workflow``, ``status``,
        ``error`` and ``params`` it declares."""
        entry: dict[str, Any] = {}
        if isinstance(workflow, str):
            entry["workflow"] = workflow
            if version is not None:
                entry["version"] = version
        elif isinstance(workflow, Workflow | WorkflowSpec):
            if version is not None:
                raise DefinitionError(
                    f"workflow {self.name!r}: a failure handler given whole takes no version"
                )
            if isinstance(workflow, Workflow):
                self._tasks.update(workflow.tasks)
                spec = workflow.spec
            else:
                spec = workflow
            entry["spec"] = spec.to_dict()
        else:
            raise DefinitionError(
                f"workflow {self.name!r}: on_failure takes a workflow or a workflow's name, "
                f"got {workflow!r}"
            )
        if params is not None:
            entry["params"] = _literal(params, "on_failure params")
        self._on_failure = entry
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
                "triggers": [t.model_dump() for t in self._triggers],
            }
            if self._on_failure is not None:
                data["on_failure"] = self._on_failure
            self._spec = WorkflowSpec.parse(data, source=f"workflow {self.name!r}")
            from legato.define.validate import check_calls

            check_calls(self._spec, self._tasks)
        return self._spec

    def to_yaml(self) -> str:
        """The workflow as a YAML definition file; reading it back gives the same spec."""
        from legato.files import to_yaml

        return to_yaml(self.spec)

    def to_mermaid(self) -> str:
        """The workflow as a Mermaid flowchart, each kind of step in a shape of its own."""
        from legato.diagrams import to_mermaid

        return to_mermaid(self.spec)

    def to_dot(self) -> str:
        """The workflow as a Graphviz digraph, each kind of step in a shape of its own."""
        from legato.diagrams import to_dot

        return to_dot(self.spec)

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

    def _need_id(self, need: StepRef | str, field: str = "needs") -> str:
        if isinstance(need, StepRef):
            return need.id
        if isinstance(need, str):
            return need
        raise DefinitionError(
            f"workflow {self.name!r}: {field} takes steps or step ids, got {need!r}"
        )

    def _add_need(self, step_id: str, need: str) -> None:
        needs = self._all[step_id]["needs"]
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
                ref = self.step(step_id, task)
                self._steps[step_id]["inputs"] = inputs
            else:
                ref = self.step(step_id, task, needs=[previous])
                if task.takes_arguments:
                    self._steps[step_id]["args"] = [previous.output.template()]
            previous = ref
        assert previous is not None
        self.outputs(result=previous.output)

    def _unique_id(self, base: str) -> str:
        step_id, n = base, 2
        while step_id in self._all:
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


def _iso(value: Any) -> Any:
    """A date or time default as the ISO text a run holds (JSON has no dates)."""
    return value.isoformat() if isinstance(value, datetime.date) else value


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
