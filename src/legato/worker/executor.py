"""Run task calls: sync tasks on daemon threads, ``async def`` tasks on one event loop.

Each call ends as a :class:`~legato.store.base.StepResult`, built in the
thread that ran it: the output passes the JSON gate there, so a worker's main
loop never serialises large values. Async calls that overrun their timeout are
cancelled; a sync call cannot be interrupted, so the worker reports its
timeout and abandons the thread (its late result is dropped, its slot stays
busy until it returns). The threads are daemons, so an abandoned call, or one
still running when a worker's grace period ends, never keeps the process from
exiting (``ThreadPoolExecutor`` joins its threads at interpreter exit).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from legato.context import Context
from legato.define.tasks import Task
from legato.engine.planner import conceal
from legato.engine.retry import exception_names, is_retryable
from legato.errors import StepTimeoutError
from legato.model.runs import StepError, exception_details
from legato.payload import dumps, loads, to_json
from legato.store.base import ClaimedStep, StepResult
from legato.worker.capture import AttemptLog, capturing

__all__ = ["Executor", "context_for", "failure_result", "stopped_result", "task_error"]

_TRACEBACK_CHARS = 20_000


#: runs one sync call elsewhere (a worker's process pool), on an executor thread
SyncRunner = Callable[[ClaimedStep, Task, Context | None], StepResult]


class Executor:
    def __init__(
        self, concurrency: int, max_payload_bytes: int, sync_runner: SyncRunner | None = None
    ) -> None:
        self.max_payload_bytes = max_payload_bytes
        self.sync_runner = sync_runner
        self._threads = _DaemonPool(concurrency, "legato-task")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()
        #: the asyncio task of each async attempt running, to cancel it when asked
        self._tasks: dict[tuple[int, int], asyncio.Task[Any]] = {}
        #: attempts asked to stop: their cancellation is their result, not the loop's
        self._stopping: set[tuple[int, int]] = set()

    def submit(
        self,
        claimed: ClaimedStep,
        task: Task,
        context: Context | None = None,
        log: AttemptLog | None = None,
    ) -> Future[StepResult]:
        """Start the call; what it logs and prints while it runs goes to ``log``."""
        if claimed.resolve_error is not None:
            done: Future[StepResult] = Future()
            done.set_result(failure_result(claimed, claimed.resolve_error, retryable=False))
            return done
        if task.is_async:
            return asyncio.run_coroutine_threadsafe(
                self._captured_async(claimed, task, context, log), self._event_loop()
            )
        return self._threads.submit(self._captured_sync, claimed, task, context, log)

    def stop(self, claimed: ClaimedStep) -> None:
        """The attempt is asked to stop: an async one is cancelled (a sync call cannot
        be interrupted; its task reads ``ctx.cancelled``)."""
        key = claimed.ref.key
        with self._loop_lock:
            self._stopping.add(key)
            running = self._tasks.get(key)
        if running is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(running.cancel)

    def shutdown(self) -> None:
        self._threads.shutdown()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    # -- running ---------------------------------------------------------------

    def _captured_sync(
        self, claimed: ClaimedStep, task: Task, context: Context | None, log: AttemptLog | None
    ) -> StepResult:
        with capturing(log):
            return self._run_sync(claimed, task, context)

    async def _captured_async(
        self, claimed: ClaimedStep, task: Task, context: Context | None, log: AttemptLog | None
    ) -> StepResult:
        with capturing(log):  # this asyncio task's context, and the tasks it starts
            return await self._run_async(claimed, task, context)

    def _run_sync(self, claimed: ClaimedStep, task: Task, context: Context | None) -> StepResult:
        if self.sync_runner is not None:
            return self.sync_runner(claimed, task, context)
        return self._outcome(claimed, lambda: _call(task, claimed, context))

    async def _run_async(
        self, claimed: ClaimedStep, task: Task, context: Context | None
    ) -> StepResult:
        key = claimed.ref.key
        current = asyncio.current_task()
        with self._loop_lock:
            if current is not None:
                self._tasks[key] = current
            stop_now = key in self._stopping
        try:
            if stop_now:  # asked to stop before it began
                raise asyncio.CancelledError
            call = _call(task, claimed, context)
            value = await asyncio.wait_for(call, timeout=claimed.timeout)
        except TimeoutError:
            return timeout_result(claimed)
        except BaseException as exc:
            # Only cancellation passes: SystemExit or KeyboardInterrupt raised by a
            # task would stop the worker's event loop, and every async task with it.
            if isinstance(exc, asyncio.CancelledError):
                if key not in self._stopping:
                    raise
                return stopped_result(claimed)
            return self._error(claimed, exc)
        finally:
            with self._loop_lock:
                self._tasks.pop(key, None)
                self._stopping.discard(key)
        return self._outcome(claimed, lambda: value)

    def _outcome(self, claimed: ClaimedStep, call: Callable[[], Any]) -> StepResult:
        try:
            value = call()
        except BaseException as exc:  # SystemExit in a task thread is the task's failure too
            return self._error(claimed, exc)
        try:
            _, output_json = to_json(
                value,
                what=f"step {claimed.step_id!r} output",
                max_bytes=self.max_payload_bytes,
            )
        except Exception as exc:
            # The same call would return the same value: fail now, spend no retries.
            return failure_result(claimed, StepError.of(exc), retryable=False)
        return _result(claimed, ok=True, output_json=output_json)

    def _error(self, claimed: ClaimedStep, exc: BaseException) -> StepResult:
        error = task_error(exc, claimed.hidden)
        retryable = is_retryable(claimed.retry, exception_names(exc))
        return failure_result(claimed, error, retryable=retryable)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="legato-async", daemon=True)
                thread.start()
                self._loop, self._loop_thread = loop, thread
            return self._loop


def task_error(exc: BaseException, hidden: tuple[str, ...] = ()) -> StepError:
    """What a task raised, as its attempt records it: the secrets it was given
    concealed (its error may quote them), the traceback's end kept."""
    message = str(exc) or type(exc).__qualname__
    trace = "".join(traceback.format_exception(exc))
    details = exception_details(exc)
    if hidden:
        message = conceal(message, hidden)
        trace = conceal(trace, hidden)
        details = _conceal_all(details, hidden)
    return StepError(type(exc).__qualname__, message, trace[-_TRACEBACK_CHARS:], details=details)


class _DaemonPool:
    """Up to ``size`` daemon threads taking calls from one queue, started as needed."""

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._calls: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._count = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot run new calls after shutdown")
            self._calls.put((future, lambda: fn(*args)))
            if not self._idle.acquire(blocking=False) and self._count < self._size:
                self._count += 1
                name = f"{self._name}_{self._count}"
                threading.Thread(target=self._serve, name=name, daemon=True).start()
        return future

    def shutdown(self) -> None:
        """Cancel calls not yet started; idle threads end, busy ones end after their call."""
        with self._lock:
            self._closed = True
            while True:
                try:
                    item = self._calls.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
            for _ in range(self._count):
                self._calls.put(None)

    def _serve(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            future, call = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    result = call()
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, call
            self._idle.release()


def _call(task: Task, claimed: ClaimedStep, context: Context | None = None) -> Any:
    # The task gets its own copies of its arguments: one that changes them must
    # change neither the params the store caches for later steps nor the
    # inputs recorded for this attempt.
    fresh = loads(dumps({"args": claimed.args, "kwargs": claimed.kwargs}))
    if task.context_param is not None:
        fresh["kwargs"][task.context_param] = context or context_for(claimed)
    return task.fn(*fresh["args"], **fresh["kwargs"])


def context_for(claimed: ClaimedStep) -> Context:
    """The context of one claimed attempt."""
    return Context(
        run_id=claimed.run_id,
        step_id=claimed.step_id,
        attempt=claimed.attempt,
        task=claimed.task,
        index=claimed.index,
        item=claimed.item,
        iteration=claimed.iteration,
    )


def stopped_result(claimed: ClaimedStep) -> StepResult:
    """The result of an attempt cancelled because it was asked to stop."""
    error = StepError("Cancelled", f"step {claimed.step_id!r} was stopped on request")
    return replace(failure_result(claimed, error, retryable=False), stopped=True)


def inputs_json(claimed: ClaimedStep) -> str:
    """The call as it is recorded with the attempt (secrets masked), with what could
    not be resolved."""
    recorded: dict[str, Any] = (
        {"args": claimed.args, "kwargs": claimed.kwargs}
        if claimed.recorded is None
        else dict(claimed.recorded)
    )
    if claimed.input_errors:
        recorded["errors"] = claimed.input_errors
    return dumps(recorded)


def _conceal_all(value: Any, hidden: tuple[str, ...]) -> Any:
    """``value`` (JSON) with every text in it concealed."""
    if isinstance(value, str):
        return conceal(value, hidden)
    if isinstance(value, list):
        return [_conceal_all(v, hidden) for v in value]
    if isinstance(value, dict):
        return {conceal(k, hidden): _conceal_all(v, hidden) for k, v in value.items()}
    return value


def failure_result(claimed: ClaimedStep, error: StepError, *, retryable: bool) -> StepResult:
    return _result(claimed, ok=False, error=error, retryable=retryable)


def _result(claimed: ClaimedStep, **outcome: Any) -> StepResult:
    """A result for this attempt, carrying the inputs it was called with."""
    return StepResult(
        step_run_id=claimed.step_run_id,
        run_id=claimed.run_id,
        step_id=claimed.step_id,
        attempt=claimed.attempt,
        inputs_json=inputs_json(claimed),
        **outcome,
    )


def timeout_result(claimed: ClaimedStep) -> StepResult:
    exc = StepTimeoutError(
        f"step {claimed.step_id!r} ran longer than its timeout of {claimed.timeout:g}s"
    )
    error = StepError(type="StepTimeoutError", message=str(exc))
    return failure_result(
        claimed, error, retryable=is_retryable(claimed.retry, exception_names(exc))
    )
