"""``@legato.task`` and the registry that is the only way a definition reaches code.

A definition names tasks; a worker runs only what its registry holds, so no
text from a definition is ever imported or evaluated.
"""

from __future__ import annotations

import inspect
import re
import sys
import typing
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, overload

from pydantic import ValidationError

from legato.builtin.shell import SHELL_TASK, run_shell
from legato.durations import parse_duration
from legato.errors import DefinitionError, ParamError, UnknownTaskError
from legato.model.limits import FlowLimits
from legato.model.spec import (
    DEFAULT_MAX_LOST_ATTEMPTS,
    RetryPolicy,
    check_max_lost_attempts,
    check_priority,
    check_retries,
    format_validation_error,
)

__all__ = ["BUILTIN_TASKS", "Task", "TaskRegistry", "default_registry", "shell_task", "task"]

TASK_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/@-]*$")
#: what TASK_NAME_PATTERN asks for, in words
NAME_RULE = "letters, digits and _ . : / @ -, starting with a letter, digit or _"
#: characters a default name's module part cannot keep (a file named "my flow.py")
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_.:/@-]")
_TAG = re.compile(r"^[A-Za-z0-9._-]+$")
DEFAULT_QUEUE = "default"


def _context_parameter(
    fn: Callable[..., Any], signature: inspect.Signature, name: str
) -> str | None:
    """The name of ``fn``'s parameter annotated ``legato.Context``, if it has one."""
    from legato.context import Context

    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve here: read it as written
        hints = {}
    found = []
    for param in signature.parameters.values():
        annotation = hints.get(param.name, param.annotation)
        if annotation is Context or (isinstance(annotation, str) and annotation in _CONTEXT_NAMES):
            found.append(param)
    if not found:
        return None
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DefinitionError(f"task {name}: only one parameter can take the Context ({names})")
    param = found[0]
    if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
        raise DefinitionError(
            f"task {name}: the Context parameter {param.name!r} must be one a keyword can pass"
        )
    return param.name


#: how an annotation that does not resolve may still name the context
_CONTEXT_NAMES = frozenset({"Context", "legato.Context", "legato.context.Context"})


class Task:
    """A registered function with the defaults its steps inherit.

    Calling the task calls the function directly, so tasks stay testable as
    plain functions.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        retry: RetryPolicy,
        timeout: float | None,
        queue: str,
        priority: int,
        max_lost_attempts: int = DEFAULT_MAX_LOST_ATTEMPTS,
        flow: FlowLimits | None = None,
        schedule_to_start_timeout: float | None = None,
        heartbeat_timeout: float | None = None,
    ) -> None:
        if not isinstance(name, str) or not TASK_NAME_PATTERN.match(name):
            raise DefinitionError(
                f"task name {name!r} is not valid ({NAME_RULE}); "
                'give the task a valid name with @task(name="...")'
            )
        self.fn = fn
        self.name = name
        self.retry = retry
        self.timeout = timeout
        self.queue = queue
        self.priority = priority
        self.max_lost_attempts = max_lost_attempts
        #: concurrency and rate limits across every worker (``@task(concurrency=...)``)
        self.flow = flow
        self.schedule_to_start_timeout = schedule_to_start_timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        full = inspect.signature(fn)
        #: the parameter annotated ``legato.Context``, passed by the worker (not an input)
        self.context_param = _context_parameter(fn, full, name)
        #: the parameters a call's inputs bind to (the context parameter left out)
        self.signature = full.replace(
            parameters=[p for p in full.parameters.values() if p.name != self.context_param]
        )
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def enqueue(self, *args: Any, **kwargs: Any) -> str:
        """Call this task on a worker; return its run's id (``client.result`` waits for it).

        Takes the task's arguments and :meth:`Client.enqueue <legato.Client.enqueue>`'s
        options, and ``client=``: the :class:`~legato.Client` to start it with. Without
        one, a client on ``LEGATO_URL`` (else ``legato.db`` here) is opened for the call
        and closed: pass ``client=`` when enqueueing many.
        """
        from legato.client import Client

        if "client" in kwargs and any(p.name == "client" for p in self.keyword_params()):
            raise ParamError(
                f"task {self.name} takes 'client', which enqueue reads as the client to use; "
                "call client.enqueue_with(task, args=[...], kwargs={...}) instead"
            )
        client = kwargs.pop("client", None)
        if client is None:
            with Client() as own:
                return own.enqueue(self, *args, **kwargs)
        if not isinstance(client, Client):
            raise ParamError(f"client must be a legato.Client, got {type(client).__name__}")
        return client.enqueue(self, *args, **kwargs)

    @property
    def takes_arguments(self) -> bool:
        return bool(self.signature.parameters)

    @property
    def takes_any_keywords(self) -> bool:
        return any(p.kind is p.VAR_KEYWORD for p in self.signature.parameters.values())

    def keyword_params(self) -> Iterator[inspect.Parameter]:
        """Parameters a caller can pass by keyword, in order."""
        for p in self.signature.parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                yield p


class TaskRegistry:
    """Task name -> :class:`Task`. One default instance backs ``@legato.task``."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def add(self, task: Task) -> Task:
        existing = self._tasks.get(task.name)
        if existing is not None and _origin(existing.fn) != _origin(task.fn):
            raise DefinitionError(
                f"task name {task.name!r} is already registered for {_origin(existing.fn)}; "
                f"{_origin(task.fn)} needs another name (task(name=...))"
            )
        self._tasks[task.name] = task
        return task

    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTaskError(
                f"task {name!r} is not registered (registered: {self._known()}); "
                "import the module that defines it, e.g. legato worker --import mymodule"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)

    def tagged(self, name: str) -> list[str]:
        """The tagged versions of ``name`` registered (``name@v1``, ...), for hints."""
        return [n for n in self.names() if n.startswith(name + "@")]

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def _known(self) -> str:
        names = self.names()
        if not names:
            return "none"
        shown = ", ".join(names[:8])
        return shown + (f" and {len(names) - 8} more" if len(names) > 8 else "")


#: ``legato.shell``: a script run by ``bash -c`` where the worker allows it
shell_task = Task(
    run_shell, name=SHELL_TASK, retry=RetryPolicy(), timeout=None, queue=DEFAULT_QUEUE, priority=0
)
#: the tasks legato itself registers: no reason alone for a worker to serve a queue
BUILTIN_TASKS = frozenset({SHELL_TASK})

default_registry = TaskRegistry()
default_registry.add(shell_task)


def _origin(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"


def default_task_name(fn: Callable[..., Any]) -> str:
    """``<module>.<qualname>``, valid whatever the file defining ``fn`` is called.

    A script run directly (``python etl.py``) is named after its file, so a
    worker that imports the same file as a module finds the same names; code
    with no file (``python -`` reading stdin, ``python -c``) is ``main``.
    Characters a task name cannot hold become ``_`` (``my flow.py`` -> ``my_flow``).
    """
    module = getattr(fn, "__module__", None) or "tasks"
    if module == "__main__":
        module = _main_module_name()
    module = _NOT_IN_NAMES.sub("_", module)
    if not TASK_NAME_PATTERN.match(module):  # ".hidden" or "-x": the first character
        module = "_" + module[1:]
    # A function defined inside another has "<locals>" in its qualname, which no
    # task name may hold: name it after the enclosing function instead.
    return f"{module}.{fn.__qualname__.replace('<locals>.', '')}"


def _main_module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    spec_name = getattr(spec, "name", None)
    if spec_name and spec_name != "__main__":
        # python -m package.module: the name a worker imports it by.
        return str(spec_name)
    main_file = getattr(main, "__file__", None)
    if not main_file or main_file.startswith("<"):  # "<stdin>", "<string>"
        return "main"
    return Path(main_file).stem or "main"


@overload
def task(fn: Callable[..., Any], /) -> Task: ...


@overload
def task(
    *,
    name: str | None = None,
    retries: int = 0,
    backoff: str = "exponential",
    retry_delay: str | float = 1.0,
    max_retry_delay: str | float = 300.0,
    jitter: bool = True,
    retry_on: Iterable[type[BaseException] | str] = (),
    timeout: str | float | None = None,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    max_lost_attempts: int = DEFAULT_MAX_LOST_ATTEMPTS,
    schedule_to_start_timeout: str | float | None = None,
    heartbeat_timeout: str | float | None = None,
    tag: str | None = None,
    registry: TaskRegistry | None = None,
    concurrency: int | None = None,
    concurrency_key: str | None = None,
    rate_limit: str | None = None,
) -> Callable[[Callable[..., Any]], Task]: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    backoff: str = "exponential",
    retry_delay: str | float = 1.0,
    max_retry_delay: str | float = 300.0,
    jitter: bool = True,
    retry_on: Iterable[type[BaseException] | str] = (),
    timeout: str | float | None = None,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    max_lost_attempts: int = DEFAULT_MAX_LOST_ATTEMPTS,
    schedule_to_start_timeout: str | float | None = None,
    heartbeat_timeout: str | float | None = None,
    tag: str | None = None,
    registry: TaskRegistry | None = None,
    concurrency: int | None = None,
    concurrency_key: str | None = None,
    rate_limit: str | None = None,
) -> Task | Callable[[Callable[..., Any]], Task]:
    """Register a function as a task, with the defaults its steps inherit.

    ``retries`` is the number of retries after the first attempt. ``backoff`` is
    ``fixed``, ``linear`` or ``exponential``, starting at ``retry_delay`` and capped
    at ``max_retry_delay``; ``retry_on`` limits retries to those exception types.
    ``max_lost_attempts`` is how many times a step's worker may be lost (killed,
    stuck, cut off from the database) before the step fails; a lost worker
    never spends ``retries``, which are for the task's own errors.
    ``timeout`` bounds one attempt's running time (start to close);
    ``schedule_to_start_timeout`` how long an attempt may stay queued with no
    worker claiming it; ``heartbeat_timeout`` how long the running task may go
    without calling ``ctx.heartbeat()`` (it must take a ``legato.Context``).
    Each failure is a timeout (``ScheduleToStartTimeout``, ``HeartbeatTimeout``,
    ``StepTimeoutError``), retried as ``retries`` and ``retry_on`` say.
    ``tag`` registers a tagged version, ``name@tag``, as ddeutil-workflow's
    ``@tag`` does: a definition calls it with ``uses: tasks/extract@v1``.
    ``concurrency`` caps the attempts running at once and ``rate_limit``
    (``"100/10s"``) the attempts started per window, across every worker;
    ``concurrency_key`` names the parameter whose value each is counted per.
    """

    def register(func: Callable[..., Any]) -> Task:
        if isinstance(func, Task):
            raise DefinitionError(f"{func.name} is already a task")
        if not callable(func):
            raise DefinitionError(f"@task needs a function, got {func!r}")
        default_name = default_task_name(func)
        if tag is not None:
            if not isinstance(tag, str) or not _TAG.match(tag):
                raise DefinitionError(
                    f"task {name or default_name}: tag {tag!r} must be letters, digits, "
                    "'.', '_' or '-'"
                )
            default_name = f"{default_name}@{tag}"
        given = None if name is None else (name if tag is None else f"{name}@{tag}")
        where = f"task {given or default_name}"
        # Each setting is checked under the name it is given here, so the error
        # says retries or max_retry_delay, not the RetryPolicy field behind it.
        try:
            attempts = check_retries(retries) + 1
            delay = _duration(retry_delay, "retry_delay")
            max_delay = _duration(max_retry_delay, "max_retry_delay")
            seconds = parse_duration(timeout, field="timeout", allow_zero=False)
            to_start = parse_duration(
                schedule_to_start_timeout, field="schedule_to_start_timeout", allow_zero=False
            )
            silence = parse_duration(heartbeat_timeout, field="heartbeat_timeout", allow_zero=False)
            check_priority(priority)
            check_max_lost_attempts(max_lost_attempts)
            flow = FlowLimits.of(concurrency, concurrency_key, rate_limit)
        except ValueError as exc:
            raise DefinitionError(f"{where}: {exc}") from None
        if concurrency_key is not None:
            _check_key_param(func, concurrency_key, where, flow)
        try:
            policy = RetryPolicy(
                max_attempts=attempts,
                backoff=backoff,  # type: ignore[arg-type]
                delay=delay,
                max_delay=max_delay,
                jitter=jitter,
                retry_on=tuple(exception_name(e) for e in retry_on),
            )
        except ValidationError as exc:
            problems = "; ".join(format_validation_error(exc))
            raise DefinitionError(f"{where}: invalid retry settings: {problems}") from None
        except Exception as exc:
            raise DefinitionError(f"{where}: invalid retry settings: {exc}") from None
        if given is None and not TASK_NAME_PATTERN.match(default_name):
            raise DefinitionError(
                f"{_origin(func)} has no valid default task name ({default_name!r} is not: "
                f'{NAME_RULE}); give the task a name with @task(name="...")'
            )
        created = Task(
            func,
            name=default_name if given is None else given,
            retry=policy,
            timeout=seconds,
            queue=queue,
            priority=priority,
            max_lost_attempts=max_lost_attempts,
            flow=flow,
            schedule_to_start_timeout=to_start,
            heartbeat_timeout=silence,
        )
        if silence is not None and created.context_param is None:
            raise DefinitionError(
                f"{where}: heartbeat_timeout needs the task to take a legato.Context "
                "parameter, to call ctx.heartbeat() with"
            )
        # An empty registry is falsy (it has __len__): test for None, not truth.
        return (registry if registry is not None else default_registry).add(created)

    if fn is not None:
        return register(fn)
    return register


def _check_key_param(
    func: Callable[..., Any], key: str, where: str, flow: FlowLimits | None
) -> None:
    """``concurrency_key`` names a parameter the calls pass, and keys some limit."""
    if flow is None:
        raise DefinitionError(
            f"{where}: concurrency_key={key!r} keys no limit: set concurrency or rate_limit too"
        )
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return  # no signature to check against (a builtin): the worker reads the call
    if key not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise DefinitionError(
            f"{where}: concurrency_key={key!r} is not a parameter of the task "
            f"(it takes {', '.join(params) or 'none'})"
        )


def _duration(value: str | float, field: str) -> float:
    seconds = parse_duration(value, field=field)
    if seconds is None:
        raise ValueError(f"{field}: expected a duration such as '30s', got None")
    return seconds


def exception_name(exc: type[BaseException] | str) -> str:
    """``ConnectionError`` for builtins, ``module.Qualname`` otherwise."""
    if isinstance(exc, str):
        return exc
    if not (isinstance(exc, type) and issubclass(exc, BaseException)):
        raise TypeError(f"retry_on takes exception classes or their names, got {exc!r}")
    if exc.__module__ == "builtins":
        return exc.__qualname__
    return f"{exc.__module__}.{exc.__qualname__}"
