"""Adding steps of every kind to a scope: the workflow's top level, a branch, a body.

:class:`Steps` is what ``legato.Workflow`` and every compound step's body offer:
``step`` (a task call), ``switch``, ``group``, ``map``, ``loop``, ``sub_workflow``,
``sleep``, ``wait_for_signal``, ``terminate`` and ``set_vars``. A compound returns
a reference that is also the scope of its own steps::

    fetch = wf.map("fetch", over=listed.output["urls"], max_parallel=8)
    page = fetch.step("get", download, url=legato.item)
    fetch.step("parse", parse, html=page.output)

Every kind takes ``needs``, ``after`` (steps it starts after, whatever became of
them), ``when`` (a condition: ``"${{ failure() }}"``, a reference),
``continue_on_error`` and ``description``, keyword-only, so they never clash with
a task's inputs (pass clashing names in ``inputs={...}``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from legato.define.refs import StepRef, _Ref, _retry_policy, _to_spec_value
from legato.define.tasks import Task, shell_task
from legato.durations import parse_duration
from legato.errors import DefinitionError
from legato.model.limits import check_concurrency, check_concurrency_key, parse_rate_limit
from legato.model.spec import (
    RetryPolicy,
    WorkflowSpec,
    check_max_lost_attempts,
    check_priority,
)

if TYPE_CHECKING:
    from legato.define.builder import Workflow

__all__ = ["GroupRef", "LoopRef", "MapRef", "Scope", "Steps", "SwitchRef"]

Needs = Iterable[StepRef | str] | None


class Steps:
    """The steps of one scope, and the methods that add them."""

    _root: Workflow
    _entries: dict[str, dict[str, Any]]

    def _init_steps(self, root: Workflow, entries: dict[str, dict[str, Any]]) -> None:
        self._root = root
        self._entries = entries

    # -- task calls -----------------------------------------------------------------

    def step(
        self,
        step_id: str,
        task: Task | str,
        *,
        needs: Needs = None,
        after: Needs = None,
        when: Any = None,
        continue_on_error: bool = False,
        description: str | None = None,
        retry: RetryPolicy | int | dict[str, Any] | None = None,
        timeout: str | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_lost_attempts: int | None = None,
        schedule_to_start_timeout: str | float | None = None,
        heartbeat_timeout: str | float | None = None,
        inputs: dict[str, Any] | None = None,
        concurrency: int | None = None,
        concurrency_key: str | None = None,
        rate_limit: str | None = None,
        **kwargs: Any,
    ) -> StepRef:
        """Add a step calling ``task`` with keyword inputs.

        Inputs are literals, references (``other.output["key"]``, ``wf.param("x")``,
        ``legato.item``) or ``${{ ... }}`` strings; a reference to another step is a
        dependency. ``inputs={...}`` passes names that clash with this method's own
        keywords. ``retry`` is a :class:`RetryPolicy`, a number of retries, or a
        dict of RetryPolicy fields. ``max_lost_attempts``, ``timeout``,
        ``schedule_to_start_timeout`` and ``heartbeat_timeout`` override the
        task's (see :func:`legato.task`). ``concurrency``, ``concurrency_key``
        and ``rate_limit`` override the task's flow limits.
        """
        entry = self._entry(step_id, "task", needs, when, continue_on_error, description, after)
        entry["task"] = self._root._task_name(step_id, task)
        entry["inputs"] = self._inputs(step_id, inputs, kwargs)
        self._call_options(entry, step_id, retry, timeout, queue, priority, max_lost_attempts)
        self._flow_options(entry, step_id, concurrency, concurrency_key, rate_limit)
        self._timeouts(entry, step_id, schedule_to_start_timeout, heartbeat_timeout)
        return self._add(entry, StepRef(self._root, step_id))

    def shell(
        self,
        step_id: str,
        script: Any,
        *,
        env: Any = None,
        cwd: Any = None,
        shell: str | None = None,
        needs: Needs = None,
        when: Any = None,
        continue_on_error: bool = False,
        description: str | None = None,
        retry: RetryPolicy | int | dict[str, Any] | None = None,
        timeout: str | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_lost_attempts: int | None = None,
    ) -> StepRef:
        """Add a step running ``script`` with ``bash -c`` (``shell="sh"`` for another shell).

        It calls the built-in task ``legato.shell``, which runs only on workers
        started with ``LEGATO_ALLOW_SHELL=1``. ``env`` adds variables to the
        worker's environment, ``cwd`` is the directory it runs in; each may be
        templated. Its output is ``{"returncode", "stdout", "stderr"}``; a
        non-zero exit fails the step. ``timeout`` ends the script.
        """
        inputs: dict[str, Any] = {"script": script}
        for name, value in (("env", env), ("cwd", cwd), ("shell", shell)):
            if value is not None:
                inputs[name] = value
        return self.step(
            step_id,
            shell_task,
            needs=needs,
            when=when,
            continue_on_error=continue_on_error,
            description=description,
            retry=retry,
            timeout=timeout,
            queue=queue,
            priority=priority,
            max_lost_attempts=max_lost_attempts,
            inputs=inputs,
        )

    def add_group(
        self,
        items: Iterable[Task | tuple[str, Task] | tuple[str, Task, dict[str, Any]]],
        *,
        needs: Needs = None,
        after: Needs = None,
    ) -> list[StepRef]:
        """Add parallel sibling steps that share ``needs`` (and ``after``).

        Each item is a task (its step id is the function's name), ``(id, task)``
        or ``(id, task, inputs)``.
        """
        needs = list(needs or ())
        after = list(after or ())
        refs = []
        for entry in items:
            if isinstance(entry, Task):
                step_id, task, inputs = entry.fn.__name__, entry, {}
            elif isinstance(entry, tuple) and len(entry) in (2, 3):
                step_id, task = entry[0], entry[1]
                inputs = entry[2] if len(entry) == 3 else {}
            else:
                raise DefinitionError(
                    f"workflow {self._root.name!r}: add_group items are tasks, (id, task) or "
                    f"(id, task, inputs), got {entry!r}"
                )
            refs.append(self.step(step_id, task, needs=needs, after=after, inputs=inputs))
        return refs

    # -- compound steps -----------------------------------------------------------------

    def switch(
        self,
        step_id: str,
        on: Any,
        *,
        needs: Needs = None,
        after: Needs = None,
        when: Any = None,
        continue_on_error: bool = False,
        description: str | None = None,
    ) -> SwitchRef:
        """Run one branch, chosen by the value of ``on``; the others are skipped.

        Add branches with ``.case(value)`` and ``.default()``; each is a scope of its
        own steps. The switch's output is the output of the branch's last step, and
        a step after the switch runs after whichever branch ran.
        """
        entry = self._entry(step_id, "switch", needs, when, continue_on_error, description, after)
        entry["value"] = _to_spec_value(on, f"step {step_id!r} on")
        entry["cases"] = {}
        return self._add(entry, SwitchRef(self._root, step_id, entry))

    def group(
        self,
        step_id: str,
        *,
        needs: Needs = None,
        after: Needs = None,
        when: Any = None,
        continue_on_error: bool = False,
        description: str | None = None,
        output: Any = None,
    ) -> GroupRef:
        """Steps run once, as one step: add them to the returned scope.

        Steps after the group start once all of its steps have finished, and read
        them through its output: ``output`` (it may read the group's steps) or
        else its last step's output. A failed step inside fails the group, unless
        that step continues on error.
        """
        entry = self._entry(step_id, "group", needs, when, continue_on_error, description, after)
        entry["steps"] = []
        if output is not None:
            entry["output"] = _to_spec_value(output, f"step {step_id!r} output")
        return self._add(entry, GroupRef(self._root, step_id, entry))

    def map(
        self,
        step_id: str,
        task: Task | str | None = None,
        *,
        over: Any,
        max_parallel: int | None = None,
        needs: Needs = None,
        after: Needs = None,
        when: Any = None,
        continue_on_error: bool = False,
        description: str | None = None,
        retry: RetryPolicy | int | dict[str, Any] | None = None,
        timeout: str | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_lost_attempts: int | None = None,
        schedule_to_start_timeout: str | float | None = None,
        heartbeat_timeout: str | float | None = None,
        output: Any = None,
        inputs: dict[str, Any] | None = None,
        concurrency: int | None = None,
        concurrency_key: str | None = None,
        rate_limit: str | None = None,
        **kwargs: Any,
    ) -> MapRef:
        """Once per item of ``over`` (a list known at run time): ``task``, or the map's steps.

        With ``task``, each item is one call, its inputs reading ``legato.item`` and
        ``legato.index``. Without, add the steps each item runs to the returned
        scope (``output`` says what an item outputs; default: its last step's
        output). The map's output is the list of item outputs, in item order; a
        failed item fails the map unless ``continue_on_error``. At most
        ``max_parallel`` items run at once.
        """
        entry = self._entry(step_id, "map", needs, when, continue_on_error, description, after)
        entry["for_each"] = _to_spec_value(over, f"step {step_id!r} over")
        if max_parallel is not None:
            entry["max_parallel"] = max_parallel
        if task is not None:
            entry["task"] = self._root._task_name(step_id, task)
            entry["inputs"] = self._inputs(step_id, inputs, kwargs)
            self._call_options(entry, step_id, retry, timeout, queue, priority, max_lost_attempts)
            self._flow_options(entry, step_id, concurrency, concurrency_key, rate_limit)
            self._timeouts(entry, step_id, schedule_to_start_timeout, heartbeat_timeout)
        elif inputs or kwargs:
            raise DefinitionError(
                f"workflow {self._root.name!r} step {step_id!r}: inputs belong to a map's "
                "task; a map without one gives inputs to its steps"
            )
        else:
            entry["steps"] = []
        if output is not None:
            entry["output"] = _to_spec_value(output, f"step {step_id!r} output")
        return self._add(entry, MapRef(self._root, step_id, entry))

    def loop(
        self,
        step_id: str,
        *,
        until: Any = None,
        max_iterations: int = 100,
        needs: Needs = None,
        after: Needs = None,
        when: Any = None,
        continue_on_error: bool = False,
        description: str | None = None,
        output: Any = None,
    ) -> LoopRef:
        """Run the loop's steps again and again until ``until`` holds (checked after each).

        Add the steps of an iteration to the returned scope; they read
        ``legato.iteration`` (0, 1, ...). ``until`` usually reads one of them, so it
        can be given afterwards with ``.repeat_until(...)``. At most
        ``max_iterations`` iterations, else the loop fails. Its output is the last
        iteration's ``output`` (default: its last step's output).
        """
        entry = self._entry(step_id, "loop", needs, when, continue_on_error, description, after)
        entry["steps"] = []
        entry["max_iterations"] = max_iterations
        if output is not None:
            entry["output"] = _to_spec_value(output, f"step {step_id!r} output")
        ref = LoopRef(self._root, step_id, entry)
        if until is not None:
            ref.repeat_until(until)
        return self._add(entry, ref)

    # -- steps the engine decides ---------------------------------------------------------------

    def sub_workflow(
        self,
        step_id: str,
        workflow: Workflow | WorkflowSpec | str,
        *,
        version: str | None = None,
        params: dict[str, Any] | None = None,
        needs: Needs = None,
        after: Needs = None,
        when: Any = None,
        continue_on_error: bool = False,
        description: str | None = None,
        retry: RetryPolicy | int | dict[str, Any] | None = None,
        timeout: str | float | None = None,
    ) -> StepRef:
        """Run another workflow as this step: a child run, linked to this run and step.

        ``workflow`` is a workflow (its spec goes with this one) or a stored
        workflow's name (newest ``version`` unless given). The child's outputs are
        the step's output; a failed child fails the step, and ``retry`` starts a new
        child.
        """
        entry = self._entry(
            step_id, "sub_workflow", needs, when, continue_on_error, description, after
        )
        if isinstance(workflow, str):
            entry["workflow"] = workflow
            if version is not None:
                entry["version"] = version
        else:
            from legato.define.builder import Workflow as Builder

            if isinstance(workflow, Builder):
                self._root._tasks.update(workflow.tasks)
                spec = workflow.spec
            elif isinstance(workflow, WorkflowSpec):
                spec = workflow
            else:
                raise DefinitionError(
                    f"workflow {self._root.name!r} step {step_id!r}: sub_workflow takes a "
                    f"workflow or a workflow's name, got {workflow!r}"
                )
            entry["spec"] = spec.to_dict()
        entry["params"] = {
            k: _to_spec_value(v, f"step {step_id!r} param {k!r}") for k, v in (params or {}).items()
        }
        where = self._where(step_id)
        if retry is not None:
            entry["retry"] = _retry_policy(retry, where)
        if timeout is not None:
            entry["timeout"] = self._duration(step_id, timeout, "timeout")
        return self._add(entry, StepRef(self._root, step_id))

    def sleep(
        self,
        step_id: str,
        duration: str | float | None = None,
        *,
        until: Any = None,
        needs: Needs = None,
        after: Needs = None,
        when: Any = None,
        continue_on_error: bool = False,
        description: str | None = None,
    ) -> StepRef:
        """Wait ``duration`` (``"10m"``, seconds) or ``until`` a time, holding no worker.

        ``until`` is an ISO 8601 time with a zone, seconds since the epoch, or an
        expression giving one. The timer is in the database: it fires after restarts.
        """
        entry = self._entry(step_id, "sleep", needs, when, continue_on_error, description, after)
        if duration is not None:
            if isinstance(duration, _Ref) or (isinstance(duration, str) and "${{" in duration):
                entry["duration"] = _to_spec_value(duration, f"step {step_id!r} duration")
            else:
                entry["duration"] = self._duration(step_id, duration, "duration", zero=True)
        if until is not None:
            entry["until"] = _to_spec_value(until, f"step {step_id!r} until")
        return self._add(entry, StepRef(self._root, step_id))

    def wait_for_signal(
        self,
        step_id: str,
        signal: str | None = None,
        *,
        timeout: str | float | None = None,
        default: Any = ...,
        needs: Needs = None,
        after: Needs = None,
        when: Any = None,
        continue_on_error: bool = False,
        description: str | None = None,
    ) -> StepRef:
        """Wait until ``client.signal(run_id, signal, payload)``; the payload is the output.

        ``signal`` defaults to the step id. A signal sent before the step is reached
        is kept for it. After ``timeout`` the step fails, or completes with
        ``default`` when one is given.
        """
        entry = self._entry(
            step_id, "wait_for_signal", needs, when, continue_on_error, description, after
        )
        entry["signal"] = signal or step_id
        if timeout is not None:
            entry["timeout"] = self._duration(step_id, timeout, "timeout")
        if default is not ...:
            entry["on_timeout"] = "default"
            entry["default"] = _to_spec_value(default, f"step {step_id!r} default")
        return self._add(entry, StepRef(self._root, step_id))

    def terminate(
        self,
        step_id: str,
        *,
        status: str = "completed",
        reason: Any = None,
        outputs: dict[str, Any] | None = None,
        needs: Needs = None,
        after: Needs = None,
        when: Any = None,
        description: str | None = None,
    ) -> StepRef:
        """End the run at once with ``status`` (``completed`` or ``failed``), a ``reason``
        and ``outputs``; steps already running finish, nothing new starts."""
        entry = self._entry(step_id, "terminate", needs, when, False, description, after)
        entry["status"] = status
        if reason is not None:
            entry["reason"] = _to_spec_value(reason, f"step {step_id!r} reason")
        entry["outputs"] = {
            k: _to_spec_value(v, f"step {step_id!r} output {k!r}")
            for k, v in (outputs or {}).items()
        }
        return self._add(entry, StepRef(self._root, step_id))

    def set_vars(
        self,
        step_id: str,
        *,
        needs: Needs = None,
        after: Needs = None,
        when: Any = None,
        continue_on_error: bool = False,
        description: str | None = None,
        vars: dict[str, Any] | None = None,
        **values: Any,
    ) -> StepRef:
        """Set run variables (``legato.var("name")`` reads them in every expression)."""
        entry = self._entry(step_id, "set_vars", needs, when, continue_on_error, description, after)
        merged = {**(vars or {}), **values}
        entry["vars"] = {
            k: _to_spec_value(v, f"step {step_id!r} var {k!r}") for k, v in merged.items()
        }
        return self._add(entry, StepRef(self._root, step_id))

    # -- internals ----------------------------------------------------------------------------

    def _where(self, step_id: str) -> str:
        return f"workflow {self._root.name!r} step {step_id!r}"

    def _entry(
        self,
        step_id: str,
        kind: str,
        needs: Needs,
        when: Any,
        continue_on_error: bool,
        description: str | None,
        after: Needs = None,
    ) -> dict[str, Any]:
        if step_id in self._root._all:
            raise DefinitionError(f"workflow {self._root.name!r}: duplicate step id {step_id!r}")
        entry: dict[str, Any] = {"id": step_id}
        if kind != "task":
            entry["kind"] = kind
        entry["needs"] = [self._root._need_id(n) for n in needs or ()]
        if after:
            entry["after"] = [self._root._need_id(a, "after") for a in after]
        if when is not None:
            text = when.template() if isinstance(when, _Ref) else when
            if not isinstance(text, str):
                raise DefinitionError(
                    f"{self._where(step_id)}: when is a ${{{{ ... }}}} expression or a "
                    f"reference, got {when!r}"
                )
            entry["when"] = text
        if continue_on_error:
            entry["continue_on_error"] = True
        if description is not None:
            entry["description"] = description
        return entry

    def _add(self, entry: dict[str, Any], ref: Any) -> Any:
        self._entries[entry["id"]] = entry
        self._root._all[entry["id"]] = entry
        self._root._changed()
        return ref

    def _inputs(self, step_id: str, inputs: dict[str, Any] | None, kwargs: dict[str, Any]) -> Any:
        merged = {**(inputs or {}), **kwargs}
        return {k: _to_spec_value(v, f"step {step_id!r} input {k!r}") for k, v in merged.items()}

    def _call_options(
        self,
        entry: dict[str, Any],
        step_id: str,
        retry: RetryPolicy | int | dict[str, Any] | None,
        timeout: str | float | None,
        queue: str | None,
        priority: int | None,
        max_lost_attempts: int | None,
    ) -> None:
        # Options are checked here, so the error points at this call and names the step.
        where = self._where(step_id)
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

    def _flow_options(
        self,
        entry: dict[str, Any],
        step_id: str,
        concurrency: int | None,
        concurrency_key: str | None,
        rate_limit: str | None,
    ) -> None:
        """A task call's own flow limits, checked here so the error names the step."""
        try:
            if concurrency is not None:
                entry["concurrency"] = check_concurrency(concurrency)
            if concurrency_key is not None:
                entry["concurrency_key"] = check_concurrency_key(concurrency_key)
            if rate_limit is not None:
                parse_rate_limit(rate_limit)
                entry["rate_limit"] = rate_limit
        except ValueError as exc:
            raise DefinitionError(f"{self._where(step_id)}: {exc}") from None

    def _timeouts(
        self,
        entry: dict[str, Any],
        step_id: str,
        schedule_to_start: str | float | None,
        heartbeat: str | float | None,
    ) -> None:
        """A task call's schedule-to-start and heartbeat timeouts, checked here."""
        for field, value in (
            ("schedule_to_start_timeout", schedule_to_start),
            ("heartbeat_timeout", heartbeat),
        ):
            if value is None:
                continue
            try:
                entry[field] = parse_duration(value, field=field, allow_zero=False)
            except ValueError as exc:
                raise DefinitionError(f"{self._where(step_id)}: {exc}") from None

    def _duration(
        self, step_id: str, value: str | float, field: str, *, zero: bool = False
    ) -> float | None:
        try:
            return parse_duration(value, field=field, allow_zero=zero)
        except ValueError as exc:
            raise DefinitionError(f"{self._where(step_id)}: {exc}") from None


class Scope(Steps):
    """The steps of a branch, a map's items or a loop's iterations."""

    def __init__(self, root: Workflow, entries: list[dict[str, Any]]) -> None:
        self._list = entries
        self._init_steps(root, _Appending(entries))


class _Appending(dict):  # type: ignore[type-arg]
    """A dict of entries that also keeps them in a list (the spec's nested ``steps``)."""

    def __init__(self, target: list[dict[str, Any]]) -> None:
        super().__init__()
        self._target = target

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        super().__setitem__(key, value)
        self._target.append(value)


class SwitchRef(StepRef):
    """A switch step: add its branches with :meth:`case` and :meth:`default`."""

    def __init__(self, workflow: Workflow, step_id: str, entry: dict[str, Any]) -> None:
        super().__init__(workflow, step_id)
        self._entry = entry

    def case(self, value: Any) -> Scope:
        """The branch run when the switch's value is ``value`` (compared as text)."""
        name = _case_name(value)
        if name in self._entry["cases"]:
            raise DefinitionError(
                f"workflow {self._workflow.name!r} step {self.id!r}: case {name!r} is given twice"
            )
        steps: list[dict[str, Any]] = []
        self._entry["cases"][name] = steps
        self._workflow._changed()
        return Scope(self._workflow, steps)

    def default(self) -> Scope:
        """The branch run when no case matches."""
        if "default" in self._entry:
            raise DefinitionError(
                f"workflow {self._workflow.name!r} step {self.id!r}: the default branch is "
                "given twice"
            )
        steps: list[dict[str, Any]] = []
        self._entry["default"] = steps
        self._workflow._changed()
        return Scope(self._workflow, steps)


class GroupRef(StepRef, Scope):
    """A group step, and the scope of the steps it runs."""

    def __init__(self, workflow: Workflow, step_id: str, entry: dict[str, Any]) -> None:
        StepRef.__init__(self, workflow, step_id)
        Scope.__init__(self, workflow, entry["steps"])


class MapRef(StepRef, Scope):
    """A map step; without a task, also the scope of the steps each item runs."""

    def __init__(self, workflow: Workflow, step_id: str, entry: dict[str, Any]) -> None:
        StepRef.__init__(self, workflow, step_id)
        Scope.__init__(self, workflow, entry.setdefault("steps", []) if "task" not in entry else [])
        self._map_entry = entry

    def step(self, *args: Any, **kwargs: Any) -> StepRef:
        if "task" in self._map_entry:
            raise DefinitionError(
                f"step {self.id!r} calls a task per item: it holds no steps of its own"
            )
        return super().step(*args, **kwargs)


class LoopRef(StepRef, Scope):
    """A loop step, and the scope of the steps each iteration runs."""

    def __init__(self, workflow: Workflow, step_id: str, entry: dict[str, Any]) -> None:
        StepRef.__init__(self, workflow, step_id)
        Scope.__init__(self, workflow, entry["steps"])
        self._loop_entry = entry

    def repeat_until(self, condition: Any) -> LoopRef:
        """Stop after the iteration in which ``condition`` holds (it may read its steps)."""
        self._loop_entry["until"] = _to_spec_value(condition, f"step {self.id!r} until")
        self._workflow._changed()
        return self


def _case_name(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return str(value)
