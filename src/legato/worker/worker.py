"""``Worker``: claim steps, run them, report results, keep leases alive.

:meth:`Worker.tick` is the unit: it reports every finished attempt and claims
as many new steps as there are free slots, in one transaction, then starts
them. :meth:`Worker.run` loops ticks, sleeping until a result arrives, work
is queued (LISTEN/NOTIFY on PostgreSQL, an in-process wake-up or a short poll
on SQLite), or a running step passes its timeout.

A worker that stops on purpose (SIGTERM, Ctrl-C, :meth:`Worker.stop`, the
end of a grace period) reports what finished and hands every attempt still
running back to the queue at once; only a worker that dies (SIGKILL, a lost
machine) leaves its attempts to lease expiry, where they count against the
step's lost-attempt budget, never its retries.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Literal

from legato.client import Client, task_defaults
from legato.config import Secrets
from legato.context import Context
from legato.define.tasks import BUILTIN_TASKS, Task, TaskRegistry
from legato.engine.retry import exception_names, is_retryable
from legato.errors import ConfigError, DatabaseUnavailableError, HeartbeatTimeout
from legato.model.retention import PruneResult, Retention
from legato.model.runs import StepError
from legato.model.states import RunStatus
from legato.store.base import (
    AttemptFailure,
    ClaimedStep,
    ClaimRequest,
    LeaseRenewal,
    LogEntry,
    ProgressReport,
    ReportOutcome,
    StepResult,
    WorkerInfo,
)
from legato.worker.capture import AttemptLog, LogLimits, install
from legato.worker.executor import Executor, context_for, failure_result, timeout_result
from legato.worker.pools import PoolKind, ProcessPool, check_pool, task_sources

__all__ = ["TickResult", "Worker"]

log = logging.getLogger("legato.worker")

#: added to a retry's delay before waking for it
_RETRY_SLACK = 0.005
#: the longest a worker with a retention rule waits before asking for its turn again
_RETENTION_CHECK = 300.0
#: the shortest lease: heartbeats renew it every third of that
MIN_LEASE = 1.0
#: how often the heartbeat thread looks whether a write is due: lines a running task
#: wrote wait about this long at most, and a short heartbeat timeout begun is seen
_BEAT_CHECK = 0.5

SignalMode = Literal["graceful", "interrupt"]


@dataclass
class TickResult:
    reported: int = 0
    claimed: int = 0
    stale: int = 0
    reclaimed: int = 0
    running: int = 0
    finished_runs: dict[str, RunStatus] = field(default_factory=dict)

    @property
    def idle(self) -> bool:
        return not (self.reported or self.claimed or self.running)


@dataclass
class _Running:
    claimed: ClaimedStep
    future: Future[StepResult]
    deadline: float | None
    abandoned: bool = False
    #: what the task reads and reports through (tasks that take one)
    context: Context | None = None
    #: a heartbeat learned the attempt is asked to stop
    stop_requested: bool = False
    #: what the task logs and prints, not yet written
    log: AttemptLog | None = None
    #: when it started here (``time.monotonic()``)
    started: float = field(default_factory=time.monotonic)


class Worker:
    """Runs steps of the tasks in ``registry`` from the given ``queues``.

    ``concurrency`` (default 4) is the number of attempts run at once; ``lease``
    is how long a claimed attempt stays ours without a heartbeat (heartbeats
    renew it every third of that). ``queues`` defaults to every queue the
    registered tasks use; a worker limited to one run tree (``root_run_id``)
    serves every queue of that tree.

    ``on_signal`` says what SIGINT and SIGTERM do while :meth:`run` runs in
    the main thread: ``"graceful"`` (a first signal stops claiming and lets
    running steps finish within ``shutdown_grace``; a second hands them back
    at once) or ``"interrupt"`` (the first hands them back at once). Either
    way :meth:`run` then raises ``KeyboardInterrupt``, unless the graceful stop
    completed.

    ``retention`` (a :class:`~legato.model.retention.Retention`, or an age such
    as ``"30d"``; default: ``LEGATO_RETENTION``) is a prune rule the worker
    applies in the background while it runs: of all the workers sharing the
    database, one prunes per interval.

    What a task logs (any logger) and prints during an attempt is kept with the
    attempt, up to ``log_lines`` lines and ``log_bytes`` bytes each (defaults:
    ``LEGATO_LOG_LINES``, 10,000, and ``LEGATO_LOG_BYTES``, 1 MiB; ``log_lines=0``
    keeps none), written with the worker's heartbeats and reports.

    ``pool`` says where plain-function tasks run: ``"thread"`` (the default),
    ``"process"`` (``concurrency`` child processes importing ``imports``,
    default the modules of the registered tasks; a timeout kills the call's
    process) or ``"asyncio"`` (``async def`` tasks only). See
    :mod:`legato.worker.pools`.
    """

    def __init__(
        self,
        client: Client,
        *,
        queues: Iterable[str] | None = None,
        concurrency: int = 4,
        registry: TaskRegistry | None = None,
        lease: float = 30.0,
        poll_interval: float = 1.0,
        sweep_interval: float = 2.0,
        worker_id: str | None = None,
        root_run_id: str | None = None,
        shutdown_grace: float = 30.0,
        on_signal: SignalMode = "graceful",
        retention: Retention | str | None = None,
        log_lines: int | None = None,
        log_bytes: int | None = None,
        pool: PoolKind = "thread",
        imports: Iterable[str] | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(
                f"concurrency must be a whole number of at least 1, got {concurrency!r}"
            )
        _check_seconds("lease", lease, minimum=MIN_LEASE)
        _check_seconds("poll_interval", poll_interval, minimum=0.001)
        _check_seconds("sweep_interval", sweep_interval, minimum=0.0)
        _check_seconds("shutdown_grace", shutdown_grace, minimum=0.0)
        if on_signal not in ("graceful", "interrupt"):
            raise ConfigError(f"on_signal must be 'graceful' or 'interrupt', got {on_signal!r}")
        self.client = client
        self.store = client.store
        self.registry = registry if registry is not None else client.registry
        self.concurrency = concurrency
        self.lease = float(lease)
        self.poll_interval = float(poll_interval)
        self.sweep_interval = float(sweep_interval)
        self.root_run_id = root_run_id
        self.shutdown_grace = float(shutdown_grace)
        self.on_signal = on_signal
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.queues = tuple(sorted(set(queues))) if queues else None
        #: attempts handed back to the queue when this worker stopped
        self.handed_back = 0
        self.pool = check_pool(pool, self.registry)
        #: the child processes that run plain functions (``pool="process"``)
        self._processes: ProcessPool | None = None
        if self.pool == "process":
            sources = list(imports) if imports is not None else task_sources(self.registry)
            self._processes = ProcessPool(concurrency, client.settings.max_payload_bytes, sources)
        self._executor = Executor(
            concurrency,
            client.settings.max_payload_bytes,
            sync_runner=None if self._processes is None else self._processes.run,
        )
        #: attempts running here, by (step run, attempt): a late result of an
        #: old attempt never touches the entry of the step's current one
        self._running: dict[tuple[int, int], _Running] = {}
        self._abandoned = 0
        self._abandoned_lock = threading.Lock()
        self._results: queue.SimpleQueue[StepResult] = queue.SimpleQueue()
        #: results whose report failed (the database was unreachable): reported again
        self._unreported: list[StepResult] = []
        #: a transaction that claimed failed as it committed: the next tick looks for
        #: attempts the database says this worker holds and it does not know of
        self._adopt_pending = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._interrupted = False
        self._signals = 0
        self._registered = False
        self._last_sweep = 0.0
        #: monotonic time when a retry this worker reported becomes claimable
        self._retry_due: float | None = None
        self._last_tick_at = 0.0
        self._threads: list[threading.Thread] = []
        self._background_stop = threading.Event()
        #: the registered tasks' defaults, for steps of runs started without their code
        self._defaults = {task.name: task_defaults(task) for task in self.registry}
        self._context_tasks = frozenset(t.name for t in self.registry if t.context_param)
        #: the last reports of attempts that finished, for the report of their results
        self._final_reports: dict[int, ProgressReport] = {}
        #: how much of each attempt's log is kept
        self.log_limits = (
            client.settings.log_limits
            if log_lines is None and log_bytes is None
            else LogLimits.load(log_lines, log_bytes)
        )
        #: the last log lines of attempts that finished, for the report of their results
        self._final_logs: list[LogEntry] = []
        #: lines of running attempts whose write failed, for the next write
        self._pending_logs: list[LogEntry] = []
        self._logs_lock = threading.Lock()
        #: what ``secrets.NAME`` in the inputs of the steps this worker claims may read
        self._secrets = Secrets(client.settings.secrets)
        #: the prune rule this worker applies when its turn comes (one worker per interval)
        self.retention = (
            Retention.of(retention, source="retention")
            if isinstance(retention, str)
            else retention or client.settings.retention
        )

    def __repr__(self) -> str:
        queues = self._claim_queues()
        shown = "every queue" if queues is None else ",".join(queues)
        return f"<Worker {self.worker_id} queues={shown} concurrency={self.concurrency}>"

    # -- one step of the loop ---------------------------------------------------

    def tick(self) -> TickResult:
        """Report finished attempts and claim into free slots, in one transaction."""
        self._last_tick_at = time.monotonic()
        results, self._unreported = self._unreported + self._drain(), []
        results += self._expire_timeouts()
        free = self.concurrency - self._busy()
        claim = None
        adopting = self._adopt_pending
        if (free > 0 or adopting) and not self._stopping.is_set() and not self._abort.is_set():
            now = time.monotonic()
            sweep = now - self._last_sweep >= self.sweep_interval
            if sweep:
                self._last_sweep = now
            # Something this worker was told of falls due (a retry, a timer):
            # fire timers too, or a sleep would end only at the next sweep.
            timers = self._retry_due is not None and now >= self._retry_due
            claim = ClaimRequest(
                worker_id=self.worker_id,
                queues=self._claim_queues(),
                tasks=tuple(self.registry.names()),
                limit=max(free, 0),
                lease=self.lease,
                root_run_id=self.root_run_id,
                sweep=sweep,
                timers=timers,
                defaults=self._defaults,
                secrets=self._secrets,
                context_tasks=self._context_tasks,
                adopt=tuple(e.claimed.step_run_id for e in self._running.values())
                if adopting
                else None,
            )
        if not results and claim is None:
            return TickResult(running=len(self._running))
        # What tasks reported through their contexts rides on this transaction,
        # and so do the lines they wrote (those of finished attempts with their results).
        progress = {**self._final_reports, **self._take_reports()}
        self._final_reports = {}
        final_logs, self._final_logs = self._final_logs, []
        running_logs = self._take_logs()
        try:
            outcome = self.store.report_and_claim(
                results,
                claim,
                worker_id=self.worker_id,
                progress=progress,
                logs=final_logs + running_logs,
            )
        except DatabaseUnavailableError:
            # The transaction rolled back: keep the results to report on the next
            # tick, or their steps would sit running until their leases lapsed.
            # (If only the commit's answer was lost, the repeat is refused as stale,
            # and the steps it claimed are this worker's: the next tick adopts them.)
            if claim is not None:
                self._adopt_pending = True
            self._unreported = results
            self._final_logs = final_logs + self._final_logs
            self._give_back_reports(progress)
            self._give_back_logs(running_logs)
            raise
        except Exception as exc:
            if not results:
                raise
            # The database refused something in this batch, and will again: find
            # which result it is, one at a time, and record that one as failed.
            log.warning("the database refused a batch of %d results (%s)", len(results), exc)
            outcome = self._report_one_by_one(results)
            self._write_logs_alone(final_logs + running_logs)
        for stale in outcome.stale:
            log.warning(
                "result for step %s (run %s, attempt %d) was refused: the attempt is no "
                "longer current (lease lost or run finished)",
                stale.step_id,
                stale.run_id,
                stale.attempt,
            )
        self._log_failures(outcome.failures)
        if claim is not None and claim.adopt is not None:
            self._adopt_pending = False
            for adopted in outcome.adopted:
                log.info(
                    "step %s was claimed for this worker as its connection was lost; "
                    "running it now",
                    adopted.label,
                )
                self._start(adopted)
        for claimed in outcome.claimed:
            self._start(claimed)
        if outcome.next_retry_in is not None:
            # A hair late rather than early: an early claim finds nothing and
            # the retry would wait a whole poll interval.
            due = time.monotonic() + outcome.next_retry_in + _RETRY_SLACK
            self._retry_due = min(due, self._retry_due or due)
        return TickResult(
            reported=len(results),
            claimed=len(outcome.claimed),
            stale=len(outcome.stale),
            reclaimed=outcome.reclaimed,
            running=len(self._running),
            finished_runs=outcome.finished_runs,
        )

    # -- the loop -----------------------------------------------------------------

    def run(self, *, until: Callable[[TickResult], bool] | None = None) -> None:
        """Tick until stopped (a signal or :meth:`stop`) or ``until`` says so.

        On a graceful stop no new steps are claimed and running ones get
        ``shutdown_grace`` seconds to finish and report. Whatever still runs
        when the loop ends is handed back to the queue. Raises
        ``KeyboardInterrupt`` (after handing back) when a signal stopped it at once.
        """
        restore = self._install_signal_handlers()
        self._abort.clear()
        self._interrupted = False
        self._signals = 0
        self._register()
        self._start_background()
        queues = self._claim_queues()
        log.info(
            "worker %s serving %s",
            self.worker_id,
            "every queue" if queues is None else "queues " + ", ".join(queues),
        )
        try:
            grace_deadline: float | None = None
            while not self._abort.is_set():
                tick = self._safe_tick()
                if self._abort.is_set() or (until is not None and until(tick)):
                    break
                if self._stopping.is_set():
                    if grace_deadline is None:
                        grace_deadline = time.monotonic() + self.shutdown_grace
                    if self.idle:
                        break
                    if time.monotonic() >= grace_deadline:
                        log.warning(
                            "grace period of %ss is over with %s still running; handing them back",
                            self.shutdown_grace,
                            steps(len(self._running)),
                        )
                        break
                # Everything claimable was claimed into free slots in that tick, so
                # the next one is due only when a result, a notification, a
                # timeout or the poll interval says so.
                self._wait()
        finally:
            self._hand_back()
            self._stop_background()
            self._unregister()
            restore()
        if self._interrupted:
            raise KeyboardInterrupt

    @property
    def idle(self) -> bool:
        """No attempt is running here and every finished one has been reported."""
        return not self._running and not self._unreported

    def stop(self, *, now: bool = False) -> None:
        """Stop claiming; :meth:`run` returns once running steps have reported.

        With ``now=True`` it returns at once, handing running steps back.
        """
        self._stopping.set()
        if now:
            self._abort.set()
        self._wake.set()

    def close(self) -> None:
        self.stop()
        self._executor.shutdown()
        if self._processes is not None:
            self._processes.shutdown()

    # -- internals ----------------------------------------------------------------

    def _claim_queues(self) -> tuple[str, ...] | None:
        if self.queues:
            return self.queues
        if self.root_run_id is not None:
            return None  # everything of the one run tree it works
        # legato's own tasks (legato.shell) do not widen a worker's queues
        own = {task.queue for task in self.registry if task.name not in BUILTIN_TASKS}
        return tuple(sorted(own)) or ("default",)

    def _busy(self) -> int:
        with self._abandoned_lock:
            return len(self._running) + self._abandoned

    def _start(self, claimed: ClaimedStep) -> None:
        task: Task = self.registry.get(claimed.task)
        deadline = None
        if claimed.timeout and not task.is_async and self._processes is None:
            # (a process pool kills the call's process at its timeout itself)
            deadline = time.monotonic() + claimed.timeout
        context = context_for(claimed) if task.context_param else None
        attempt_log = None
        if self.log_limits.enabled:
            install()  # once per process; again if sys.stdout was replaced since
            attempt_log = AttemptLog(
                claimed.step_run_id, claimed.attempt, self.log_limits, claimed.hidden
            )
        future = self._executor.submit(claimed, task, context, attempt_log)
        entry = _Running(claimed, future, deadline, context=context, log=attempt_log)
        self._running[claimed.ref.key] = entry
        future.add_done_callback(functools.partial(self._finished, entry))

    def _finished(self, entry: _Running, future: Future[StepResult]) -> None:
        with self._abandoned_lock:
            if entry.abandoned:  # reported already (timeout) or handed back: drop it
                self._abandoned -= 1
                self._wake.set()
                return
        try:
            result = future.result()
        except BaseException as exc:  # the executor itself failed (shutdown)
            log.error("step %s could not run: %s", entry.claimed.label, exc)
            return
        self._results.put(result)
        self._wake.set()

    def _drain(self) -> list[StepResult]:
        results = []
        while True:
            try:
                result = self._results.get_nowait()
            except queue.Empty:
                break
            entry = self._running.pop(result.key, None)
            if entry is None:
                continue
            if entry.context is not None:  # its last reports go with its result
                taken = entry.context.take_reports()
                if taken is not None:
                    self._final_reports[result.step_run_id] = ProgressReport(*taken)
            self._close_log(entry)
            if entry.stop_requested:
                result = replace(result, stopped=True)
            results.append(result)
        return results

    def _close_log(self, entry: _Running) -> None:
        """An attempt ended: its last lines go with its result (or hand-back)."""
        if entry.log is not None:
            entry.log.close()
            self._final_logs += entry.log.take()

    def _expire_timeouts(self) -> list[StepResult]:
        now = time.monotonic()
        expired = []
        for key, entry in list(self._running.items()):
            silent = _silence(entry, now)
            if silent is None and (entry.deadline is None or now < entry.deadline):
                continue
            with self._abandoned_lock:
                if entry.future.done():
                    continue  # finished just in time; its result is on the queue
                entry.abandoned = True
                self._abandoned += 1
            del self._running[key]
            self._close_log(entry)
            if silent is not None:
                log.warning("step %s sent no heartbeat for %.3gs", entry.claimed.label, silent)
                result = heartbeat_timeout_result(entry.claimed, silent)
            else:
                log.warning(
                    "step %s passed its timeout; its call is abandoned", entry.claimed.label
                )
                result = timeout_result(entry.claimed)
            self._give_up(entry.claimed)
            expired.append(replace(result, stopped=entry.stop_requested))
        return expired

    def _report_one_by_one(self, results: list[StepResult]) -> ReportOutcome:
        """Report each result on its own; one the database refuses is failed instead."""
        total = ReportOutcome()
        for index, result in enumerate(results):
            try:
                part = self.store.report_and_claim([result], worker_id=self.worker_id)
            except DatabaseUnavailableError:
                self._unreported = results[index:]
                break
            except Exception as exc:
                part = self._report_refused(result, exc)
            total.accepted += part.accepted
            total.stale += part.stale
            total.failures += part.failures
            total.finished_runs.update(part.finished_runs)
        return total

    def _report_refused(self, result: StepResult, exc: Exception) -> ReportOutcome:
        error = StepError(
            type="ResultNotRecorded",
            message=f"step {result.step_id!r}: the database refused to record this attempt's "
            f"result ({type(exc).__name__}: {exc})",
        )
        failed = StepResult(
            step_run_id=result.step_run_id,
            run_id=result.run_id,
            step_id=result.step_id,
            attempt=result.attempt,
            ok=False,
            error=error,
            retryable=False,
        )
        try:
            return self.store.report_and_claim([failed], worker_id=self.worker_id)
        except Exception as again:
            log.error(
                "could not record the result of step %s (run %s, attempt %d): %s; its lease "
                "will lapse and it will count as lost",
                result.step_id,
                result.run_id,
                result.attempt,
                again,
            )
            return ReportOutcome()

    def _log_failures(self, failures: list[AttemptFailure]) -> None:
        for f in failures:
            where = f"step {f.step_id} (run {f.run_id}) attempt {f.attempt}"
            what = "lost its worker" if f.lost else "failed"
            if f.retry_in is None:
                then = "the step fails"
            elif f.lost:
                then = "running it again (its retries are not spent)"
            elif f.retry_in == 0:
                then = "retrying now"
            else:
                then = f"retrying in {f.retry_in:.3g}s"
            log.info("%s %s: %s: %s; %s", where, what, f.error.type, f.error.message, then)

    def _hand_back(self) -> None:
        """Report what finished and hand back what still runs; never raises."""
        results = self._unreported + self._drain()
        self._unreported = []
        entries = list(self._running.values())
        if not results and not entries:
            return
        with self._abandoned_lock:
            for entry in entries:
                entry.abandoned = True  # whatever it returns now is not reported
                self._abandoned += 1
        self._running.clear()
        for entry in entries:
            self._close_log(entry)
        with self._logs_lock:
            pending, self._pending_logs = self._pending_logs, []
        final_logs, self._final_logs = self._final_logs, []
        if self._processes is not None:
            for entry in entries:
                self._processes.cancel(entry.claimed)
        try:
            outcome = self.store.report_and_claim(
                results,
                release=[entry.claimed.ref for entry in entries],
                worker_id=self.worker_id,
                logs=pending + final_logs,
            )
        except Exception as exc:
            log.error(
                "could not hand back %d running steps (%s); their leases will lapse and "
                "another worker will run them again",
                len(entries),
                exc,
            )
            return
        self.handed_back += outcome.released
        self._log_failures(outcome.failures)
        if outcome.released:
            log.warning(
                "handed %s back to the queue: %s",
                steps(outcome.released, "running step"),
                ", ".join(entry.claimed.label for entry in entries),
            )

    def _give_up(self, claimed: ClaimedStep) -> None:
        """An attempt reported as timed out: an async one is cancelled, a process pool's
        child killed; what either returns is dropped."""
        if self.registry.get(claimed.task).is_async:
            self._executor.stop(claimed)
        elif self._processes is not None:
            self._processes.cancel(claimed)

    def _next_deadline(self) -> float | None:
        deadlines = [e.deadline for e in self._running.values() if e.deadline is not None]
        for entry in self._running.values():
            silence = entry.claimed.heartbeat_timeout
            if silence is not None and entry.context is not None:
                deadlines.append(entry.context.last_beat + silence)
        return min(deadlines) if deadlines else None

    def _wait(self) -> None:
        now = time.monotonic()
        if self._retry_due is not None and self._retry_due <= self._last_tick_at:
            self._retry_due = None  # a tick since it fell due claimed it if it could
        timeout = self.poll_interval
        for deadline in (self._next_deadline(), self._retry_due):
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - now))
        if self._wake.wait(timeout):
            self._wake.clear()

    def _safe_tick(self) -> TickResult:
        try:
            return self.tick()
        except DatabaseUnavailableError as exc:
            log.error("database unavailable, retrying: %s", exc)
        except Exception:
            log.exception("tick failed, retrying")
        self._stopping.wait(min(self.poll_interval, 1.0))
        return TickResult(running=len(self._running))

    def _register(self) -> None:
        info = WorkerInfo(
            id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=self._claim_queues(),
            tasks=tuple(self.registry.names()),
            concurrency=self.concurrency,
            root_run_id=self.root_run_id,
        )
        try:
            self.store.register_worker(info, self.lease)
            self.store.register_task_defaults(self._defaults)
            self._registered = True
        except Exception as exc:  # the heartbeat tries again
            log.error("could not register worker %s: %s", self.worker_id, exc)
            self._registered = False

    def _unregister(self) -> None:
        try:
            self.store.unregister_worker(self.worker_id)
        except Exception as exc:  # its registration expires by itself
            log.info("could not unregister worker %s: %s", self.worker_id, exc)
        self._registered = False

    def _start_background(self) -> None:
        self._background_stop = threading.Event()
        loops = [(self._heartbeat_loop, "heartbeat"), (self._listen_loop, "listen")]
        if self.retention is not None:
            loops.append((self._retention_loop, "retention"))
        for target, name in loops:
            thread = threading.Thread(target=target, name=f"legato-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _stop_background(self) -> None:
        # The heartbeat wakes at once; the listener may be inside a wait on the
        # database and ends by itself when that returns, so it is not joined.
        self._background_stop.set()
        for thread in self._threads:
            if thread.name == "legato-heartbeat":
                thread.join(timeout=2)
        self._threads.clear()

    def heartbeat(self) -> LeaseRenewal:
        """Renew the leases of the attempts held here, write what their tasks reported,
        and pass on which are asked to stop (their ``ctx.cancelled``; an async task is
        cancelled). :meth:`run` calls it every third of the lease."""
        # Attempts running here, and finished ones not yet reported.
        held = [key[0] for key in list(self._running)]
        held += [r.step_run_id for r in list(self._unreported)]
        progress = self._take_reports()
        logs = self._take_logs()
        try:
            renewal = self.store.extend_leases(
                self.worker_id, held, self.lease, progress=progress, logs=logs
            )
        except DatabaseUnavailableError:
            self._give_back_reports(progress)
            self._give_back_logs(logs)
            raise
        except Exception:
            # Refused, and would be again: the lines are dropped (a line the database
            # cannot take must not stop every heartbeat after it).
            self._give_back_reports(progress)
            if logs:
                log.warning("dropped %d log lines the database refused", len(logs))
            raise
        if renewal.stop_requested:
            self._stop_attempts(renewal.stop_requested)
        return renewal

    def _stop_attempts(self, step_run_ids: frozenset[int]) -> None:
        for entry in list(self._running.values()):
            if entry.claimed.step_run_id not in step_run_ids or entry.stop_requested:
                continue
            entry.stop_requested = True
            log.info(
                "step %s is asked to stop (its run was cancelled or paused)", entry.claimed.label
            )
            if entry.context is not None:
                entry.context.request_stop()
            if self.registry.get(entry.claimed.task).is_async:
                self._executor.stop(entry.claimed)

    def _take_reports(self) -> dict[int, ProgressReport]:
        """What running tasks reported through their contexts since it was last taken."""
        reports = {}
        for entry in list(self._running.values()):
            if entry.context is not None:
                taken = entry.context.take_reports()
                if taken is not None:
                    reports[entry.claimed.step_run_id] = ProgressReport(*taken)
        return reports

    def _take_logs(self) -> list[LogEntry]:
        """The lines running tasks wrote since they were last taken, and those given back."""
        with self._logs_lock:
            taken, self._pending_logs = self._pending_logs, []
        for entry in list(self._running.values()):
            if entry.log is not None:
                taken += entry.log.take()
        return taken

    def _give_back_logs(self, lines: list[LogEntry]) -> None:
        """Lines whose write failed: written by the next heartbeat or report."""
        if lines:
            with self._logs_lock:
                self._pending_logs[:0] = lines

    def _write_logs_alone(self, lines: list[LogEntry]) -> None:
        """Lines of a batch the database refused, in a transaction of their own."""
        if not lines:
            return
        try:
            self.store.extend_leases(self.worker_id, [], self.lease, logs=lines)
        except DatabaseUnavailableError:
            self._give_back_logs(lines)
        except Exception as exc:
            log.warning("dropped %d log lines the database refused (%s)", len(lines), exc)

    def _give_back_reports(self, reports: dict[int, ProgressReport]) -> None:
        """Reports whose write failed: kept for the next one (unless newer came)."""
        for entry in list(self._running.values()):
            report = reports.get(entry.claimed.step_run_id)
            if report is not None and entry.context is not None:
                entry.context.give_back(report.progress, report.details)

    def _heartbeat_interval(self) -> float:
        """A third of the lease, or of the shortest heartbeat timeout of the attempts
        running here: their tasks' heartbeats reach the database in time."""
        interval = self.lease / 3
        for entry in list(self._running.values()):
            silence = entry.claimed.heartbeat_timeout
            if silence is not None:
                interval = min(interval, max(silence / 3, 0.05))
        return interval

    def _heartbeat_loop(self) -> None:
        # Lines a running task wrote are written within a second or so: a heartbeat
        # comes early for them (one transaction for every line since the last).
        last = time.monotonic()
        while not self._background_stop.wait(min(self._heartbeat_interval(), _BEAT_CHECK)):
            if time.monotonic() - last < self._heartbeat_interval() and not self._logs_waiting():
                continue
            last = time.monotonic()
            if not self._registered:
                self._register()
            try:
                self.heartbeat()
            except Exception as exc:
                log.error("could not renew leases: %s", exc)

    def _logs_waiting(self) -> bool:
        return bool(self._pending_logs) or any(
            entry.log is not None and entry.log.waiting for entry in list(self._running.values())
        )

    def _retention_loop(self) -> None:
        """Apply the prune rule whenever its turn may have come; stop with the worker."""
        assert self.retention is not None
        check = min(self.retention.every / 4, _RETENTION_CHECK)
        stop = self._background_stop  # this run's: a later run() sets up another
        while True:
            self.apply_retention(stop=stop.is_set)
            if stop.wait(check):
                return

    def apply_retention(self, *, stop: Callable[[], bool] | None = None) -> PruneResult | None:
        """Prune by this worker's rule if no worker has in the rule's interval (the
        database settles which); ``None`` if it was not this worker's turn. ``stop()``
        true ends the prune between two batches. Never raises."""
        if self.retention is None:
            return None
        try:
            result = self.client.apply_retention(self.retention, stop=stop)
        except Exception as exc:
            log.error("could not apply the retention rule: %s", exc)
            return None
        if result is not None and result.total:
            log.info(
                "retention: pruned %s and %s (finished over %ss ago)",
                steps(result.runs, "run"),
                steps(result.child_runs, "child run"),
                f"{self.retention.older_than:g}",
            )
        return result

    def _listen_loop(self) -> None:
        while not self._background_stop.is_set():
            try:
                if self.store.wait_for_work(min(self.poll_interval, 1.0)):
                    self._wake.set()
            except Exception:
                self._background_stop.wait(1.0)

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {}

        def handle(signum: int, frame: object) -> None:
            self._signals += 1
            name = signal.Signals(signum).name
            if self._abort.is_set():
                raise KeyboardInterrupt  # a signal while handing back: quit now
            if self.on_signal == "graceful" and self._signals == 1:
                log.info("received %s: finishing running steps, then stopping", name)
                self.stop()
                return
            log.info("received %s: handing running steps back, then stopping", name)
            self._interrupted = True
            self.stop(now=True)

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handle)

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore


def _silence(entry: _Running, now: float) -> float | None:
    """How long the attempt's task has been silent, once that passes its heartbeat timeout."""
    limit = entry.claimed.heartbeat_timeout
    if limit is None:
        return None
    since = entry.context.last_beat if entry.context is not None else entry.started
    silent = now - since
    return silent if silent > limit else None


def heartbeat_timeout_result(claimed: ClaimedStep, silent: float) -> StepResult:
    """The attempt failed as timed out: its task sent no heartbeat in time."""
    exc = HeartbeatTimeout(
        f"step {claimed.step_id!r}: its task sent no heartbeat for {silent:.3g}s, more than "
        f"its heartbeat_timeout of {claimed.heartbeat_timeout:g}s"
    )
    error = StepError(type="HeartbeatTimeout", message=str(exc))
    return failure_result(
        claimed, error, retryable=is_retryable(claimed.retry, exception_names(exc))
    )


def steps(n: int, noun: str = "step") -> str:
    """``1 step``, ``2 steps``: counts in log lines read as sentences."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _check_seconds(name: str, value: object, *, minimum: float) -> None:
    """A number of seconds, finite and at least ``minimum``: one clear error otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < minimum:
        least = f"at least {minimum:g}" if minimum > 0 else "0 or more"
        raise ConfigError(f"{name} must be a finite number of seconds, {least}; got {value!r}")
