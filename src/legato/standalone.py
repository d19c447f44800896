"""Standalone tasks: one task called without writing a workflow.

A call is a run of a one-step spec made for its task, so it has the task's
retries, timeout, queue and priority, reports progress, and is read, searched,
operated on and kept in history like any run. The spec depends on the task and
the shape of the call (how many positional arguments, a queue or priority of
its own, a delay), never on the values, which travel as the run's params
(``args``, ``kwargs``); each shape's spec is built and checked once and cached,
so starting a call costs one transaction. The task's output is the run's
``result`` output. :class:`StandaloneCalls` holds the Client's methods.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from legato.define.tasks import TASK_NAME_PATTERN, Task, TaskRegistry
from legato.engine.planner import TaskDefaults, plan_new_run
from legato.errors import ParamError, RunFailedError, UnknownTaskError
from legato.model.spec import WorkflowSpec, check_priority
from legato.model.states import RunStatus
from legato.options import moment_option, seconds_option, tags_option
from legato.payload import to_json
from legato.store.base import NewRun

if TYPE_CHECKING:
    from legato.config import Settings
    from legato.model.runs import Run
    from legato.store import Store

__all__ = [
    "CALL_VERSION",
    "OPTIONS",
    "RESULT",
    "CallOptions",
    "CallShape",
    "CallSpecs",
    "StandaloneCalls",
    "call_spec",
    "check_call",
    "resolve_task",
    "split_options",
    "step_id_for",
    "workflow_name_for",
]

#: the version of every spec made for a standalone call
CALL_VERSION = "task"
#: the output of a standalone call's run that holds the task's output
RESULT = "result"
#: the step that holds a delayed call back
WAIT_STEP = "wait"
#: the keywords ``enqueue`` takes for itself; the others go to the task
OPTIONS = frozenset(
    {
        "queue",
        "priority",
        "delay",
        "eta",
        "idempotency_key",
        "tags",
        "created_by",
        "correlation_id",
        "conn",
    }
)
#: seconds a task's defaults recorded by workers are trusted before they are read again
_RECORDED_TTL = 30.0


@dataclass(frozen=True)
class CallOptions:
    """How a standalone call is started (``enqueue``'s keywords), checked."""

    queue: str | None = None
    priority: int | None = None
    #: seconds to wait before the call is queued
    delay: float | None = None
    #: when the call is queued (aware)
    eta: datetime | None = None
    idempotency_key: str | None = None
    tags: Mapping[str, str] | None = None
    created_by: str | None = None
    correlation_id: str | None = None
    #: metadata kept with the call as its run's ``headers`` param, not passed to the task
    headers: Mapping[str, Any] | None = None
    #: the external run a spawned task belongs to
    parent_run_id: str | None = None
    #: the caller's own connection, whose transaction the start joins
    conn: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.queue is not None and (not isinstance(self.queue, str) or not self.queue):
            raise ParamError(f"queue must be a queue's name, got {self.queue!r}")
        if self.priority is not None:
            try:
                check_priority(self.priority)
            except ValueError as exc:
                raise ParamError(str(exc)) from None
        if self.delay is not None and self.eta is not None:
            raise ParamError("give delay or eta, not both: eta is when, delay is how long from now")
        if self.headers is not None and not isinstance(self.headers, Mapping):
            raise ParamError(f"headers must be a mapping, got {type(self.headers).__name__}")


@dataclass(frozen=True)
class CallShape:
    """What a standalone call's spec depends on; calls of one shape share it."""

    task: str
    args: int
    queue: str | None = None
    priority: int | None = None
    wait: Literal["delay", "eta"] | None = None
    headers: bool = False


def workflow_name_for(task_name: str) -> str:
    """A workflow name for the calls of ``task_name`` (``etl.Load@v2`` -> ``etl_load_v2``)."""
    name = re.sub(r"[^a-z0-9]+", "_", task_name.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"task_{name}".rstrip("_")
    return name


def step_id_for(task_name: str) -> str:
    """The call's step id: the task's last name (``etl.load`` -> ``load``)."""
    last = task_name.rsplit(".", 1)[-1]
    step = re.sub(r"[^A-Za-z0-9]+", "_", last).strip("_")
    if not step or not step[0].isalpha() or step == WAIT_STEP:
        return "call"
    return step


def call_spec(shape: CallShape) -> WorkflowSpec:
    """The one-step spec of calls of this shape: params ``args`` and ``kwargs`` (and
    ``delay``, ``eta`` or ``headers`` if the shape has them), output ``result``."""
    call_id = step_id_for(shape.task)
    call: dict[str, Any] = {
        "kind": "task",
        "id": call_id,
        "task": shape.task,
        "args": [f"${{{{ params.args[{i}] }}}}" for i in range(shape.args)],
        "inputs": "${{ params.kwargs }}",
    }
    if shape.queue is not None:
        call["queue"] = shape.queue
    if shape.priority is not None:
        call["priority"] = shape.priority
    params: dict[str, Any] = {
        "args": {"type": "list", "required": False, "default": []},
        "kwargs": {"type": "dict", "required": False, "default": {}},
    }
    steps: list[dict[str, Any]] = []
    if shape.wait == "delay":
        params["delay"] = {"type": "float"}
        steps.append({"kind": "sleep", "id": WAIT_STEP, "duration": "${{ params.delay }}"})
    elif shape.wait == "eta":
        params["eta"] = {"type": "datetime"}
        steps.append({"kind": "sleep", "id": WAIT_STEP, "until": "${{ params.eta }}"})
    if steps:
        call["needs"] = [WAIT_STEP]
    steps.append(call)
    if shape.headers:
        params["headers"] = {"type": "dict"}
    return WorkflowSpec.parse(
        {
            "name": workflow_name_for(shape.task),
            "version": CALL_VERSION,
            "description": f"task {shape.task} called on its own",
            "params": params,
            "steps": steps,
            "outputs": {RESULT: f"${{{{ steps.{call_id}.output }}}}"},
        },
        source=f"the call of task {shape.task!r}",
    )


class CallSpecs:
    """Specs of standalone calls and their tasks' defaults, by call shape (bounded).

    Defaults from this process's code never change; those workers recorded (the
    task's code is not here) are read again after a while, as workers may have
    changed them.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._cached: OrderedDict[CallShape, tuple[WorkflowSpec, dict[str, TaskDefaults], float]]
        self._cached = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        shape: CallShape,
        defaults_for: Callable[[WorkflowSpec], dict[str, TaskDefaults]],
        *,
        local: bool,
    ) -> tuple[WorkflowSpec, dict[str, TaskDefaults]]:
        now = time.monotonic()
        with self._lock:
            found = self._cached.get(shape)
            if found is not None and found[2] > now:
                self._cached.move_to_end(shape)
                return found[0], found[1]
        spec = found[0] if found is not None else call_spec(shape)
        defaults = defaults_for(spec)
        expires = math.inf if local else now + _RECORDED_TTL
        with self._lock:
            self._cached[shape] = (spec, defaults, expires)
            while len(self._cached) > self._size:
                self._cached.popitem(last=False)
        return spec, defaults


def resolve_task(task: Task | str, registry: TaskRegistry) -> tuple[str, Task | None]:
    """The task's name, and its code where this process has it."""
    if isinstance(task, Task):
        return task.name, task
    if isinstance(task, str):
        if not TASK_NAME_PATTERN.match(task):
            raise UnknownTaskError(f"{task!r} is not a task name")
        return task, registry.get(task) if task in registry else None
    what = getattr(task, "__qualname__", type(task).__name__)
    raise ParamError(
        f"enqueue takes a task registered with @legato.task, or its name; got {what!r}"
        + (" (a plain function: decorate it with @legato.task)" if callable(task) else "")
    )


def split_options(
    task_name: str, code: Task | None, kwargs: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``enqueue``'s keywords apart from the task's. A keyword both take is ambiguous:
    the task is then called through ``enqueue_with``."""
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in OPTIONS}
    if code is not None:
        clash = sorted(set(options) & {p.name for p in code.keyword_params()})
        if clash:
            raise ParamError(
                f"task {task_name} takes {', '.join(map(repr, clash))}, which enqueue reads as "
                f"its own option; call it with client.enqueue_with({task_name.rsplit('.')[-1]}, "
                "args=[...], kwargs={...}, ...) to say which is which"
            )
    return kwargs, options


def check_call(task: Task, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """The call must fit the task's signature (checked where its code is here)."""
    try:
        task.signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ParamError(
            f"task {task.name}: the call does not fit its signature {task.signature}: {exc}"
        ) from None


def call_params(
    task_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    options: CallOptions,
    *,
    max_bytes: int | None,
) -> dict[str, Any]:
    """The run's params: the call's arguments as JSON, and its delay, time or headers."""
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ParamError(f"task {task_name}: keyword arguments must be a mapping of names")
    given: dict[str, Any] = {"args": list(args), "kwargs": dict(kwargs)}
    if options.delay:
        given["delay"] = options.delay
    if options.eta is not None:
        given["eta"] = options.eta.isoformat()
    if options.headers is not None:
        given["headers"] = dict(options.headers)
    plain, _ = to_json(given, what=f"the call of task {task_name}", max_bytes=max_bytes)
    return dict(plain)


def shape_of(task_name: str, args: Sequence[Any], options: CallOptions) -> CallShape:
    wait: Literal["delay", "eta"] | None = None
    if options.delay:
        wait = "delay"
    elif options.eta is not None:
        wait = "eta"
    return CallShape(
        task=task_name,
        args=len(args),
        queue=options.queue,
        priority=options.priority,
        wait=wait,
        headers=options.headers is not None,
    )


class StandaloneCalls:
    """The :class:`~legato.Client` methods that call one task without a workflow."""

    store: Store
    registry: TaskRegistry
    settings: Settings
    _calls: CallSpecs

    if TYPE_CHECKING:  # the Client's own

        def wait(
            self, run_id: str, *, timeout: float | None = None, poll_interval: float = 0.25
        ) -> Run: ...

        def task_defaults_for(
            self, spec: WorkflowSpec, extra: Mapping[str, Task] | None = None
        ) -> dict[str, TaskDefaults]: ...

    def enqueue(self, task: Task | str, /, *args: Any, **kwargs: Any) -> str:
        """Call one task on a worker without writing a workflow; return its run's id.

        ``task`` is a registered task or its name (then this process needs no code
        when workers registered it). ``args`` and ``kwargs`` go to the task, but for
        enqueue's own keywords (see :meth:`enqueue_with`): a task that takes one of
        those names is called through :meth:`enqueue_with`. The call is a run of a
        one-step workflow made for the task, with the task's retries, timeout, queue
        and priority; :meth:`result` waits for its output.
        """
        name, code = resolve_task(task, self.registry)
        kwargs, options = split_options(name, code, dict(kwargs))
        return self.enqueue_with(task, args, kwargs, **options)

    def enqueue_with(
        self,
        task: Task | str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | str | None = None,
        eta: datetime | date | str | None = None,
        idempotency_key: str | None = None,
        tags: Mapping[str, str] | None = None,
        created_by: str | None = None,
        correlation_id: str | None = None,
        conn: Any = None,
    ) -> str:
        """:meth:`enqueue` with the task's arguments apart from the options.

        ``queue`` and ``priority`` replace the task's; ``delay`` (seconds or a
        duration) or ``eta`` (a time; naive means UTC) holds the call back on a
        durable timer until then. A repeated ``idempotency_key`` returns the first
        call's run and starts nothing. ``conn``, the application's own connection
        to this database (psycopg or sqlite3), makes the start part of its open
        transaction: committed or rolled back with it.
        """
        delay_seconds = seconds_option(delay, "delay")
        options = CallOptions(
            queue=queue,
            priority=priority,
            delay=delay_seconds,
            eta=moment_option(eta, "eta"),
            idempotency_key=idempotency_key,
            tags=tags_option(tags),
            created_by=created_by,
            correlation_id=correlation_id,
            conn=conn,
        )
        return self._start_call(task, list(args), kwargs or {}, options)

    def _start_call(
        self,
        task: Task | str,
        args: list[Any],
        kwargs: Mapping[str, Any],
        options: CallOptions,
    ) -> str:
        """Store the run of one task call, its spec built once per shape of call."""
        name, code = resolve_task(task, self.registry)
        if code is not None:
            check_call(code, args, kwargs)
        params = call_params(name, args, kwargs, options, max_bytes=self.settings.max_payload_bytes)
        extra = {name: code} if code is not None else {}
        spec, defaults = self._calls.get(
            shape_of(name, args, options),
            lambda spec: self.task_defaults_for(spec, extra),
            local=code is not None,
        )
        new = NewRun(
            spec=spec,
            params=spec.bind_params(params),
            steps=plan_new_run(spec.graph, defaults),
            tags=dict(options.tags or {}),
            created_by=options.created_by,
            correlation_id=options.correlation_id,
            idempotency_key=options.idempotency_key,
            task_defaults=defaults,
            kind="task",
            parent_run_id=options.parent_run_id,
            root_run_id=options.parent_run_id,  # an external run is its own root
        )
        run_id, _ = self.store.create_run(new, conn=options.conn)
        return run_id

    def result(
        self, run_id: str, *, timeout: float | None = None, poll_interval: float = 0.25
    ) -> Any:
        """What a run gave, once it has finished: a standalone task's output (see
        :meth:`enqueue`), any other run's outputs.

        Waits up to ``timeout`` seconds or a duration (``None``: as long as it takes;
        ``0``: not at all), then raises :class:`WaitTimeout`. A run that failed or
        was cancelled raises :class:`~legato.RunFailedError` carrying its error.
        """
        run = self.wait(run_id, timeout=timeout, poll_interval=poll_interval)
        if run.status is RunStatus.COMPLETED:
            if run.kind == "task":
                return (run.outputs or {}).get(RESULT)
            return run.outputs
        calls = [s.task for s in run.steps.values() if s.kind == "task"]
        what = f"task {calls[0]}" if run.kind == "task" and calls else f"workflow {run.workflow}"
        raise RunFailedError(
            f"run {run.id} ({what}) {run.status.value}: {run.error or 'no error recorded'}",
            run_id=run.id,
            status=run.status.value,
            error=run.error,
        )
