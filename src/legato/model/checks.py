"""The checks a spec passes beyond its fields: ids, scopes, references, each kind's shape,
the params each schedule trigger starts runs with.

Every problem is collected, so one pass reports them all; the spec raises one
:class:`~legato.errors.DefinitionError` listing them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from legato.errors import DefinitionError, ParamError, TemplateError
from legato.expressions import STATUS_FUNCTIONS, is_whole_expression, references
from legato.model.graph import TOP, StepInfo, walk
from legato.model.steps import (
    GroupStep,
    LoopStep,
    MapStep,
    SignalStep,
    SleepStep,
    Step,
    SubWorkflowStep,
    SwitchStep,
    TaskStep,
)

if TYPE_CHECKING:
    from legato.model.spec import WorkflowSpec

__all__ = ["spec_problems"]

#: the fields of a task call that may read ``secrets``
_SECRET_FIELDS = ("inputs", "args")


def spec_problems(spec: WorkflowSpec) -> list[str]:
    problems: list[str] = []
    if not spec.steps:
        problems.append("a workflow needs at least one step")
    infos: dict[str, StepInfo] = {}
    for info in walk(spec.steps):
        if info.step.id in infos:
            problems.append(f"duplicate step id {info.step.id!r}")
        else:
            infos[info.step.id] = info
    for info in infos.values():
        problems += _step_problems(spec, info, infos)
    for key, value in spec.outputs.items():
        problems += _reference_problems(spec, f"output {key!r}", value, TOP, infos, ())
    for number, trigger in enumerate(spec.triggers):
        try:
            spec.bind_params(trigger.params)
        except ParamError as exc:
            why = str(exc).removeprefix(f"workflow {spec.label}: ")
            problems.append(f"trigger {number} ({trigger.cron}) params: {why}")
    problems += _handler_problems(spec)
    return problems


def _handler_problems(spec: WorkflowSpec) -> list[str]:
    """A failure handler is another workflow, whose params read only the failed run."""
    handler = spec.on_failure
    if handler is None:
        return []
    problems: list[str] = []
    if handler.name == spec.name:
        problems.append(
            f"on_failure names the workflow itself ({spec.name!r}); a failure handler is "
            "another workflow"
        )
    if handler.spec is not None:
        try:
            spec.failure_handler_spec  # noqa: B018 - parses it, raising what is wrong
        except DefinitionError as exc:
            problems.extend(f"on_failure spec: {p}" for p in exc.problems)
    try:
        refs = references(handler.params or {}, check_filters=True)
    except TemplateError as exc:
        return [*problems, f"on_failure params: {exc}"]
    unknown = sorted((refs.roots - {"run", "params"}) | ({"steps"} if refs.steps else set()))
    if unknown:
        problems.append(
            f"on_failure params read {', '.join(unknown)}; they may read only the failed "
            "run (run.id, run.workflow, run.status, run.error.message, ...) and its params"
        )
    return problems


def _step_problems(spec: WorkflowSpec, info: StepInfo, infos: dict[str, StepInfo]) -> list[str]:
    step = info.step
    where = f"step {step.id!r}"
    problems: list[str] = []
    for verb, can, deps in (
        ("needs", "need", step.needs),
        ("runs after", "run after", step.after),
    ):
        for dep in deps:
            if dep == step.id:
                problems.append(f"{where} {verb} itself")
            elif dep not in infos:
                problems.append(f"{where} {verb} unknown step {dep!r}")
            elif infos[dep].scope != info.scope:
                problems.append(
                    f"{where} {verb} step {dep!r}, which is in another scope; a step can "
                    f"{can} only steps beside it (its compound step can {can} the others)"
                )
    problems += _shape_problems(step, where)
    chain = info.chain
    for name, value in step.expressions().items():
        problems += _reference_problems(
            spec,
            f"{where} {name}",
            value,
            info.scope,
            infos,
            chain,
            own=step.id,
            secrets=isinstance(step, TaskStep) and name in _SECRET_FIELDS,
        )
    if isinstance(step, MapStep) and step.task:
        for name, value in step.item_expressions().items():
            problems += _reference_problems(
                spec,
                f"{where} {name}",
                value,
                info.scope,
                infos,
                (*chain, step.id),
                own=step.id,
                secrets=name in _SECRET_FIELDS,
            )
    for name, value in step.inner_expressions().items():
        problems += _reference_problems(
            spec, f"{where} {name}", value, info.scope, infos, (*chain, step.id), inner=step.id
        )
    for name, value in _non_condition_fields(step).items():
        try:
            used = references(value).functions
        except TemplateError:
            continue
        if used:
            problems.append(
                f"{where} {name}: {', '.join(sorted(used))}() can only be used in a step's when"
            )
    return problems


def _non_condition_fields(step: Step) -> dict[str, Any]:
    fields = {k: v for k, v in step.expressions().items() if k != "when"}
    fields.update(step.inner_expressions())
    return fields


def _shape_problems(step: Step, where: str) -> list[str]:
    problems: list[str] = []
    inputs = step.inputs if isinstance(step, TaskStep | MapStep) else None
    if isinstance(inputs, str) and not is_whole_expression(inputs):
        problems.append(
            f"{where}: inputs given as text must be one ${{{{ ... }}}} expression "
            "yielding a mapping"
        )
    if isinstance(step, MapStep):
        if bool(step.task) == bool(step.steps):
            problems.append(
                f"{where}: a map calls a task per item or runs steps per item, "
                "give exactly one of task and steps"
            )
        if step.steps and (step.args or step.inputs or step.retry or step.timeout):
            problems.append(
                f"{where}: args, inputs, retry and timeout belong to a map's task; a map "
                "with steps gives them to its steps"
            )
        if step.task and step.output is not None:
            problems.append(
                f"{where}: output belongs to a map with steps; a task's output is its item's output"
            )
    if isinstance(step, LoopStep) and not step.steps:
        problems.append(f"{where}: a loop needs at least one step")
    if isinstance(step, GroupStep) and not step.steps:
        problems.append(f"{where}: a group needs at least one step")
    if isinstance(step, SwitchStep):
        if not step.cases:
            problems.append(f"{where}: a switch needs at least one case")
        for name, steps in step.cases.items():
            if not steps:
                problems.append(f"{where}: case {name!r} has no steps")
    if isinstance(step, SubWorkflowStep):
        if (step.workflow is None) == (step.spec is None):
            problems.append(f"{where}: name the workflow or give its spec, exactly one")
        if step.spec is not None:
            from legato.model.spec import WorkflowSpec

            try:
                WorkflowSpec.parse(step.spec, source=f"{where} spec")
            except DefinitionError as exc:
                problems.extend(f"{where} spec: {p}" for p in exc.problems)
    if isinstance(step, SleepStep) and (step.duration is None) == (step.until is None):
        problems.append(f"{where}: a sleep takes a duration or an until, exactly one")
    if isinstance(step, SignalStep) and step.on_timeout == "default" and step.timeout is None:
        problems.append(f"{where}: on_timeout='default' needs a timeout")
    return problems


def _reference_problems(
    spec: WorkflowSpec,
    where: str,
    value: Any,
    scope: str,
    infos: dict[str, StepInfo],
    chain: tuple[str, ...],
    *,
    own: str | None = None,
    inner: str | None = None,
    secrets: bool = False,
) -> list[str]:
    """References in ``value``, written in ``scope`` inside the compounds ``chain``.

    ``secrets``: the field is a task call's inputs or args, the only place a
    secret may be read (the worker resolves it there and records it masked).
    """
    try:
        refs = references(value, check_filters=True)
    except TemplateError as exc:
        return [f"{where}: {exc}"]
    problems: list[str] = []
    if refs.secrets and not secrets:
        names = ", ".join(f"secrets.{n}" for n in sorted(refs.secrets))
        problems.append(
            f"{where} reads {names}; secrets can be read only in the inputs and args of "
            "a task step (or of a map's task), where the worker resolves them"
        )
    visible = _visible_scopes(scope, chain, infos)
    for step_id in sorted(refs.steps):
        target = infos.get(step_id)
        if target is None:
            problems.append(f"{where} refers to unknown step {step_id!r}")
        elif step_id == own:
            problems.append(f"step {own!r} refers to its own output")
        elif inner is not None and inner in target.chain:
            if target.chain[-1] != inner:
                problems.append(
                    f"{where} refers to step {step_id!r}, which is deeper inside; refer to "
                    "the compound step around it"
                )
        elif target.scope not in visible:
            problems.append(
                f"{where} refers to step {step_id!r}, which is inside another step; refer "
                "to that step's output instead"
            )
    if not spec.extra_params:
        for param in sorted(refs.params - set(spec.params)):
            problems.append(f"{where} refers to unknown param {param!r}")
    kinds = {infos[c].step.kind for c in chain if c in infos}
    if {"item", "index"} & refs.roots and "map" not in kinds:
        problems.append(f"{where}: item and index exist only inside a map")
    matrices = [c for c in chain if c in infos and isinstance(infos[c].step, MapStep)]
    if "matrix" in refs.roots and not any(
        getattr(infos[c].step, "matrix", False) for c in matrices
    ):
        problems.append(f"{where}: matrix exists only inside a job with a strategy.matrix")
    if "iteration" in refs.roots and "loop" not in kinds:
        problems.append(f"{where}: iteration exists only inside a loop")
    unknown = refs.functions - set(STATUS_FUNCTIONS)
    if unknown:
        problems.append(f"{where}: unknown functions {sorted(unknown)}")
    return problems


def _visible_scopes(scope: str, chain: tuple[str, ...], infos: dict[str, StepInfo]) -> set[str]:
    """The scopes whose steps a step in ``scope`` may read: its own and the enclosing ones."""
    visible = {scope, TOP}
    visible.update(infos[c].scope for c in chain if c in infos)
    return visible
