"""Where a worker runs plain-function task calls: threads (the default) or child processes.

``thread``: the executor's threads call the function in the worker's process.
``process``: each call runs in one of up to ``concurrency`` child processes
(started with ``spawn``, each importing the modules the worker imported, kept
for later calls). Only JSON crosses: the call goes down as JSON text with the
task's name, which the child looks up in its own registry, and the result or
error comes back as JSON text. A call past its ``timeout`` has its child
killed (a thread can only be abandoned), and so does one the worker gives up
(heartbeat timeout, hand-back). ``asyncio``: only ``async def`` tasks, run on
the worker's event loop; a worker serving a plain function refuses to start.

A task that takes a ``legato.Context`` gets one in the child: its progress and
heartbeat reports come up the same pipe (they reach the database with the
worker's next heartbeat, as from a thread), and ``ctx.cancelled`` turns true
when its run is cancelled. What the call logs and prints in the child is
captured there (as :mod:`legato.worker.capture` does in a thread) and sent up
the pipe too, to the attempt's log in the worker: bounded and masked there.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal

from legato.context import Context
from legato.define.tasks import BUILTIN_TASKS, Task, TaskRegistry, default_registry
from legato.engine.planner import conceal
from legato.engine.retry import exception_names, is_retryable
from legato.errors import ConfigError, StepTimeoutError
from legato.model.runs import StepError
from legato.payload import dumps, loads, to_json
from legato.store.base import ClaimedStep, StepResult
from legato.worker.capture import AttemptLog, LogLimits, capturing, current_log, install
from legato.worker.executor import failure_result, inputs_json, task_error

__all__ = ["POOLS", "PoolKind", "ProcessPool", "check_pool", "task_sources"]

log = logging.getLogger("legato.worker")

PoolKind = Literal["thread", "process", "asyncio"]
POOLS: tuple[str, ...] = ("thread", "process", "asyncio")

#: the longest a new child may take to import the worker's modules
_START_LIMIT = 120.0
#: how often a child sends its task's reports up, and the parent looks for a stop
_REPORT_EVERY = 0.1


def check_pool(pool: object, registry: TaskRegistry) -> PoolKind:
    """``pool`` as a pool kind, or one clear error (an asyncio pool serves async tasks only)."""
    if pool not in POOLS:
        raise ConfigError(f"pool must be one of {', '.join(POOLS)}; got {pool!r}")
    if pool == "asyncio":
        plain = sorted(t.name for t in registry if not t.is_async and t.name not in BUILTIN_TASKS)
        if plain:
            raise ConfigError(
                f"the asyncio pool runs async def tasks only, but {', '.join(plain)} "
                f"{'is a plain function' if len(plain) == 1 else 'are plain functions'}; "
                "serve them with --pool thread or --pool process"
            )
    return pool  # type: ignore[return-value]


def task_sources(registry: Iterable[Task]) -> list[str]:
    """What a child imports to have the registry's tasks: each task's module by name,
    a script run directly by its file."""
    sources: list[str] = []
    for task in registry:
        if task.name in BUILTIN_TASKS:
            continue
        module = getattr(task.fn, "__module__", None)
        if module == "__main__":
            main = getattr(sys.modules.get("__main__"), "__file__", None)
            source = os.path.abspath(main) if main else None
        else:
            source = module
        if source and source not in sources:
            sources.append(source)
    return sources


@dataclass
class _Child:
    process: BaseProcess
    conn: Connection


class ProcessPool:
    """Up to ``size`` child processes running sync task calls, JSON in and out."""

    def __init__(self, size: int, max_payload_bytes: int, imports: Sequence[str]) -> None:
        self.size = size
        self.max_payload_bytes = max_payload_bytes
        self.imports = list(imports)
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        #: the child running each attempt, to kill it when the attempt is given up
        self._busy: dict[tuple[int, int], _Child] = {}
        self._closed = False

    # -- the parent's side ------------------------------------------------------------

    def run(self, claimed: ClaimedStep, task: Task, context: Context | None) -> StepResult:
        """Run one call in a child; called on one of the executor's threads."""
        key = claimed.ref.key
        try:
            child = self._checkout(key)
        except Exception as exc:
            error = StepError("ProcessPoolError", f"step {claimed.step_id!r}: {exc}")
            return failure_result(claimed, error, retryable=True)
        request = {
            "op": "call",
            "task": task.name,
            "args": claimed.args,
            "kwargs": claimed.kwargs,
            "max_bytes": self.max_payload_bytes,
            "context": None if context is None else _context_json(claimed),
        }
        attempt_log = current_log()
        if attempt_log is not None:
            limits = attempt_log.limits
            request["log"] = {"lines": limits.lines, "bytes": limits.bytes}
        deadline = None if claimed.timeout is None else time.monotonic() + claimed.timeout
        stop_sent = False
        try:
            child.conn.send_bytes(dumps(request).encode())
            while True:
                wait = _REPORT_EVERY
                if deadline is not None:
                    wait = max(0.0, min(wait, deadline - time.monotonic()))
                if child.conn.poll(wait):
                    message = loads(child.conn.recv_bytes().decode())
                    if message.get("op") == "report":
                        if context is not None:
                            context.absorb(message.get("progress"), message.get("details"))
                        continue
                    if message.get("op") == "log":
                        if attempt_log is not None:
                            attempt_log.absorb(message["lines"], message.get("dropped", 0))
                        continue
                    self._checkin(key, child)
                    return self._result(claimed, message)
                if deadline is not None and time.monotonic() >= deadline:
                    self._discard(key, child)
                    return _timeout(claimed)
                if not child.process.is_alive():
                    raise EOFError
                if context is not None and context.cancelled and not stop_sent:
                    child.conn.send_bytes(dumps({"op": "stop"}).encode())
                    stop_sent = True
        except (EOFError, OSError, ValueError):
            # The child died (the task crashed it, or it was killed as given up).
            self._discard(key, child)
            child.process.join(1)
            code = child.process.exitcode
            error = StepError(
                "ProcessDied",
                f"step {claimed.step_id!r}: the process running it exited "
                f"({'killed by signal ' + str(-code) if code and code < 0 else f'code {code}'})",
            )
            return failure_result(
                claimed, error, retryable=is_retryable(claimed.retry, ["ProcessDied"])
            )

    def cancel(self, claimed: ClaimedStep) -> None:
        """The worker gave the attempt up: kill its child (its thread then returns)."""
        with self._lock:
            child = self._busy.pop(claimed.ref.key, None)
        if child is not None:
            child.process.kill()

    def shutdown(self) -> None:
        """Stop every child: idle ones end, busy ones are killed."""
        with self._lock:
            self._closed = True
            children = self._idle + list(self._busy.values())
            self._idle, self._busy = [], {}
        for child in children:
            child.process.kill()
        for child in children:
            child.process.join(2)
            child.conn.close()

    def _checkout(self, key: tuple[int, int]) -> _Child:
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker's process pool is shut down")
            while self._idle:
                child = self._idle.pop()
                if child.process.is_alive():
                    self._busy[key] = child
                    return child
        child = self._spawn()
        with self._lock:
            self._busy[key] = child
        return child

    def _checkin(self, key: tuple[int, int], child: _Child) -> None:
        with self._lock:
            if self._busy.pop(key, None) is None or self._closed:
                child.process.kill()  # given up meanwhile
                return
            self._idle.append(child)

    def _discard(self, key: tuple[int, int], child: _Child) -> None:
        with self._lock:
            self._busy.pop(key, None)
        child.process.kill()

    def _spawn(self) -> _Child:
        parent, child_end = self._context.Pipe()
        setup = dumps({"imports": self.imports, "path": sys.path, "cwd": os.getcwd()})
        process = self._context.Process(
            target=_child_main,
            args=(child_end, setup, os.getpid()),
            name="legato-task-process",
            daemon=True,
        )
        process.start()
        child_end.close()
        # Its imports are not the call's time: its timeout starts once it is ready.
        try:
            if not parent.poll(_START_LIMIT):
                raise EOFError
            loads(parent.recv_bytes().decode())
        except (EOFError, OSError):
            process.kill()
            parent.close()
            raise RuntimeError(f"a task process did not start within {_START_LIMIT:g}s") from None
        return _Child(process, parent)

    def _result(self, claimed: ClaimedStep, message: dict[str, Any]) -> StepResult:
        if message.get("ok"):
            return StepResult(
                step_run_id=claimed.step_run_id,
                run_id=claimed.run_id,
                step_id=claimed.step_id,
                attempt=claimed.attempt,
                ok=True,
                output_json=message["output"],
                inputs_json=inputs_json(claimed),
            )
        error = StepError.from_json(message.get("error")) or StepError("Error", "unknown failure")
        if claimed.hidden:  # a task's error may quote the secrets it was given (details dropped)
            error = StepError(
                error.type,
                conceal(error.message, claimed.hidden),
                None if error.traceback is None else conceal(error.traceback, claimed.hidden),
            )
        retryable = not message.get("final") and is_retryable(
            claimed.retry, message.get("names") or [error.type]
        )
        return failure_result(claimed, error, retryable=retryable)


def _context_json(claimed: ClaimedStep) -> dict[str, Any]:
    return {
        "run_id": claimed.run_id,
        "step_id": claimed.step_id,
        "attempt": claimed.attempt,
        "task": claimed.task,
        "index": claimed.index,
        "item": claimed.item,
        "iteration": claimed.iteration,
    }


def _timeout(claimed: ClaimedStep) -> StepResult:
    exc = StepTimeoutError(
        f"step {claimed.step_id!r} ran longer than its timeout of {claimed.timeout:g}s; "
        "its process was killed"
    )
    error = StepError(type="StepTimeoutError", message=str(exc))
    return failure_result(
        claimed, error, retryable=is_retryable(claimed.retry, exception_names(exc))
    )


# -- the child's side -------------------------------------------------------------------


def _child_main(conn: Connection, setup_text: str, parent_pid: int) -> None:
    """A child's life: import the worker's task modules, then run calls until told to end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
    setup = loads(setup_text)
    for entry in reversed(setup["path"]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    os.chdir(setup["cwd"])
    problems = []
    from legato.cli.loading import load_module

    for source in setup["imports"]:
        try:
            load_module(source)
        except Exception as exc:
            problems.append(f"{source}: {exc}")
    send_lock = threading.Lock()
    conn.send_bytes(dumps({"op": "ready"}).encode())

    def send(message: dict[str, Any]) -> None:
        with send_lock:
            conn.send_bytes(dumps(message).encode())

    while True:
        try:
            if not conn.poll(1.0):
                if os.getppid() != parent_pid:
                    return  # the worker is gone
                continue
            request = loads(conn.recv_bytes().decode())
        except (EOFError, OSError):
            return
        if request.get("op") != "call":
            continue  # a stop for a call that has ended
        send(_child_call(request, conn, send, setup["imports"], problems, parent_pid))


def _child_call(
    request: dict[str, Any],
    conn: Connection,
    send: Any,
    imports: list[str],
    problems: list[str],
    parent_pid: int,
) -> dict[str, Any]:
    name = request["task"]
    if name not in default_registry:
        imported = ", ".join(imports) or "nothing"
        why = f"; importing failed: {'; '.join(problems)}" if problems else ""
        message = (
            f"task {name!r} is not registered in the worker's task process (it imported "
            f"{imported}{why}); define the task at the top level of a module the worker "
            "imports (--import or LEGATO_IMPORTS)"
        )
        error = {"type": "UnknownTaskError", "message": message}
        return {"op": "result", "ok": False, "final": True, "error": error}
    task = default_registry.get(name)
    kwargs = dict(request["kwargs"])
    context = None
    if request.get("context") is not None and task.context_param is not None:
        context = Context(**request["context"])
        kwargs[task.context_param] = context
    label = context.step_id if context is not None else name
    lines = None
    if request.get("log") is not None:
        install()
        lines = AttemptLog(0, 0, LogLimits(**request["log"]))
    done = threading.Event()
    relay = threading.Thread(
        target=_relay, args=(context, lines, conn, send, done, parent_pid), daemon=True
    )
    relay.start()
    try:
        with capturing(lines):
            value = task.fn(*request["args"], **kwargs)
    except BaseException as exc:  # SystemExit in a task is the task's failure too
        result = _error_message(exc)
    else:
        try:
            _, output = to_json(
                value, what=f"step {label!r} output", max_bytes=request["max_bytes"]
            )
            result = {"op": "result", "ok": True, "output": output}
        except Exception as exc:  # the same call would return the same value
            error = StepError.of(exc).to_json()
            result = {"op": "result", "ok": False, "final": True, "error": error}
    finally:
        done.set()
        relay.join()
    if context is not None:
        _send_reports(context, send)
    if lines is not None:
        lines.close(say_dropped=False)  # the worker's log says what was dropped
        _send_lines(lines, send)
    return result


def _error_message(exc: BaseException) -> dict[str, Any]:
    error = task_error(exc)  # the worker conceals its secrets
    return {"op": "result", "ok": False, "error": error.to_json(), "names": exception_names(exc)}


def _relay(
    context: Context | None,
    lines: AttemptLog | None,
    conn: Connection,
    send: Any,
    done: threading.Event,
    parent_pid: int,
) -> None:
    """While the call runs: send its reports and lines up, learn of a stop, end with the
    worker."""
    while not done.is_set():
        try:
            if conn.poll(_REPORT_EVERY) and not done.is_set():
                message = loads(conn.recv_bytes().decode())
                if message.get("op") == "stop" and context is not None:
                    context.request_stop()
        except (EOFError, OSError):
            os._exit(1)  # the worker is gone: so is this call
        if os.getppid() != parent_pid:
            os._exit(1)
        if context is not None:
            _send_reports(context, send)
        if lines is not None:
            _send_lines(lines, send)


def _send_lines(lines: AttemptLog, send: Any) -> None:
    taken = lines.take()
    if taken or lines.dropped:
        rows = [[e.at, e.level, e.logger, e.message] for e in taken]
        dropped = lines.dropped
        lines.forget_dropped(dropped)
        send({"op": "log", "lines": rows, "dropped": dropped})


def _send_reports(context: Context, send: Any) -> None:
    taken = context.take_reports()
    if taken is not None:
        send({"op": "report", "progress": taken[0], "details": taken[1]})
