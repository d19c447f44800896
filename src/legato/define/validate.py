"""Checks that need the task code: is every task registered, do the calls fit."""

from __future__ import annotations

from collections.abc import Mapping

from legato.define.tasks import Task, TaskRegistry
from legato.errors import DefinitionError, UnknownTaskError
from legato.model.spec import WorkflowSpec

__all__ = ["check_calls", "check_tasks", "known_tasks"]

_PLACEHOLDER = object()


def known_tasks(
    spec: WorkflowSpec, registry: TaskRegistry, extra: Mapping[str, Task] | None = None
) -> tuple[dict[str, Task], dict[str, str]]:
    """The tasks of the spec this process has (their calls checked against their
    signatures), and the others: name -> the first step calling it."""
    extra = extra or {}
    found: dict[str, Task] = {}
    missing: dict[str, str] = {}
    for step in spec.task_calls():
        name = step.task or ""
        if name in found or name in missing:
            continue
        task = extra.get(name)
        if task is None and name in registry:
            task = registry.get(name)
        if task is None:
            missing[name] = step.id
        else:
            found[name] = task
    check_calls(spec, found)
    return found, missing


def check_tasks(
    spec: WorkflowSpec, registry: TaskRegistry, extra: Mapping[str, Task] | None = None
) -> dict[str, Task]:
    """Return the task for every step, or raise naming each unregistered one."""
    extra = extra or {}
    found: dict[str, Task] = {}
    missing: list[str] = []
    for step in spec.task_calls():
        name = step.task or ""
        if name in found:
            continue
        task = extra.get(name)
        if task is None and name in registry:
            task = registry.get(name)
        if task is None:
            tagged = registry.tagged(name)
            hint = f" (tagged versions: {', '.join(tagged)})" if tagged else ""
            missing.append(f"step {step.id!r} calls task {name!r}, which is not registered{hint}")
        else:
            found[name] = task
    if missing:
        known = ", ".join(registry.names()[:10]) or "none"
        raise UnknownTaskError(
            f"workflow {spec.label}: "
            + "; ".join(missing)
            + f" (registered: {known}; import the module that defines it)"
        )
    check_calls(spec, found)
    return found


def check_calls(spec: WorkflowSpec, tasks: Mapping[str, Task]) -> None:
    """Each step's arguments must bind to its task's signature (where it is known), and
    a step with a heartbeat timeout must call a task that can heartbeat."""
    problems = []
    for step in spec.task_calls():
        task = tasks.get(step.task or "")
        if task is None:
            continue
        key = step.concurrency_key
        if key is not None and not _takes(task, key):
            params = ", ".join(task.signature.parameters) or "none"
            problems.append(
                f"step {step.id!r}: concurrency_key={key!r} is not a parameter of task "
                f"{task.name} (its parameters: {params})"
            )
        if step.heartbeat_timeout is not None and task.context_param is None:
            problems.append(
                f"step {step.id!r} has a heartbeat_timeout, but task {task.name} takes no "
                "legato.Context to call ctx.heartbeat() with"
            )
        if isinstance(step.inputs, str):
            continue  # inputs computed at run time are checked when the call is made
        args = [_PLACEHOLDER] * len(step.args)
        kwargs = dict.fromkeys(step.inputs, _PLACEHOLDER)
        try:
            task.signature.bind(*args, **kwargs)
        except TypeError as exc:
            params = ", ".join(task.signature.parameters) or "none"
            problems.append(
                f"step {step.id!r} cannot call task {task.name}: {exc} (its parameters: {params})"
            )
    if problems:
        raise DefinitionError.from_problems(f"workflow {spec.name!r}", problems)


def _takes(task: Task, name: str) -> bool:
    """Whether a call of ``task`` can pass ``name`` by keyword."""
    params = task.signature.parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
