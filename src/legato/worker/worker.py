"""``Worker``: claim steps, run them, report results, keep leases alive.

:meth:`Worker.tick` is the unit: it reports every finished attempt and claims
as many new steps as there are free slots, in one transaction, then starts
them. :meth:`Worker.run` loops ticks, sleeping until a result arrives, work
is queued (LISTEN/NOTIFY on PostgreSQL, an in-process wake-up or a short poll
on SQLite), or a running step passes its timeout.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

from legato.client import Client
from legato.define.tasks import Task, TaskRegistry
from legato.errors import ConfigError, StoreError
from legato.model.states import RunStatus
from legato.store.base import ClaimedStep, ClaimRequest, StepResult
from legato.worker.executor import Executor, timeout_result

__all__ = ["TickResult", "Worker"]

log = logging.getLogger("legato.worker")

#: added to a retry's delay before waking for it
_RETRY_SLACK = 0.005


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


class Worker:
    """Runs steps of the tasks in ``registry`` from the given ``queues``.

    ``concurrency`` is the number of attempts run at once; ``lease`` is how long
    a claimed attempt stays ours without a heartbeat (heartbeats renew it every
    third of that). ``queues`` defaults to every queue the registered tasks use.
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
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
        if lease <= 0:
            raise ConfigError(f"lease must be positive, got {lease}")
        self.client = client
        self.store = client.store
        self.registry = registry if registry is not None else client.registry
        self.concurrency = concurrency
        self.lease = lease
        self.poll_interval = poll_interval
        self.sweep_interval = sweep_interval
        self.root_run_id = root_run_id
        self.shutdown_grace = shutdown_grace
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.queues = tuple(sorted(set(queues))) if queues else None
        self._executor = Executor(concurrency, client.settings.max_payload_bytes)
        self._running: dict[int, _Running] = {}
        self._abandoned = 0
        self._abandoned_lock = threading.Lock()
        self._results: queue.SimpleQueue[StepResult] = queue.SimpleQueue()
        #: results whose report failed (a database error): reported again next tick
        self._unreported: list[StepResult] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._last_sweep = 0.0
        #: monotonic time when a retry this worker reported becomes claimable
        self._retry_due: float | None = None
        self._last_tick_at = 0.0
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id} queues={self._queues()} concurrency={self.concurrency}>"

    # -- one step of the loop ---------------------------------------------------

    def tick(self) -> TickResult:
        """Report finished attempts and claim into free slots, in one transaction."""
        self._last_tick_at = time.monotonic()
        results, self._unreported = self._unreported + self._drain(), []
        results += self._expire_timeouts()
        free = self.concurrency - self._busy()
        claim = None
        if free > 0 and not self._stopping.is_set():
            now = time.monotonic()
            sweep = now - self._last_sweep >= self.sweep_interval
            if sweep:
                self._last_sweep = now
            claim = ClaimRequest(
                worker_id=self.worker_id,
                queues=self._queues(),
                tasks=tuple(self.registry.names()),
                limit=free,
                lease=self.lease,
                root_run_id=self.root_run_id,
                sweep=sweep,
            )
        if not results and claim is None:
            return TickResult(running=len(self._running))
        try:
            outcome = self.store.report_and_claim(results, claim)
        except StoreError:
            # The transaction rolled back: keep the results to report on the next
            # tick, or their steps would sit running until their leases lapsed.
            # (If only the commit's answer was lost, the repeat is refused as stale.)
            self._unreported = results
            raise
        for stale in outcome.stale:
            log.warning(
                "result for step %s (run %s, attempt %d) was refused: the attempt is no "
                "longer current (lease lost or run finished)",
                stale.step_id,
                stale.run_id,
                stale.attempt,
            )
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
        """Tick until stopped (SIGTERM/SIGINT or :meth:`stop`) or ``until`` says so.

        On stop, no new steps are claimed; running ones get ``shutdown_grace``
        seconds to finish and report, after which their leases simply expire.
        """
        restore = self._install_signal_handlers()
        self._start_background()
        log.info("worker %s serving queues %s", self.worker_id, ", ".join(self._queues()))
        try:
            grace_deadline: float | None = None
            while True:
                tick = self._safe_tick()
                if until is not None and until(tick):
                    break
                if self._stopping.is_set():
                    if grace_deadline is None:
                        grace_deadline = time.monotonic() + self.shutdown_grace
                    if self.idle or time.monotonic() >= grace_deadline:
                        if self._running:
                            log.warning(
                                "stopping with %d steps still running; their leases will expire",
                                len(self._running),
                            )
                        break
                # Everything claimable was claimed into free slots in that tick, so
                # the next one is due only when a result, a notification, a
                # timeout or the poll interval says so.
                self._wait()
        finally:
            self._stop_background()
            restore()

    @property
    def idle(self) -> bool:
        """No attempt is running here and every finished one has been reported."""
        return not self._running and not self._unreported

    def stop(self) -> None:
        """Stop claiming; :meth:`run` returns once running steps have reported."""
        self._stopping.set()
        self._wake.set()

    def close(self) -> None:
        self.stop()
        self._executor.shutdown()

    # -- internals ----------------------------------------------------------------

    def _queues(self) -> tuple[str, ...]:
        if self.queues:
            return self.queues
        return tuple(sorted({task.queue for task in self.registry})) or ("default",)

    def _busy(self) -> int:
        with self._abandoned_lock:
            return len(self._running) + self._abandoned

    def _start(self, claimed: ClaimedStep) -> None:
        task: Task = self.registry.get(claimed.task)
        deadline = None
        if claimed.timeout and not task.is_async:
            deadline = time.monotonic() + claimed.timeout
        future = self._executor.submit(claimed, task)
        entry = _Running(claimed, future, deadline)
        self._running[claimed.step_run_id] = entry
        future.add_done_callback(functools.partial(self._finished, entry))

    def _finished(self, entry: _Running, future: Future[StepResult]) -> None:
        with self._abandoned_lock:
            if entry.abandoned:  # its timeout was already reported; drop the late result
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
            entry = self._running.pop(result.step_run_id, None)
            if entry is not None and entry.claimed.attempt == result.attempt:
                results.append(result)
        return results

    def _expire_timeouts(self) -> list[StepResult]:
        now = time.monotonic()
        expired = []
        for step_run_id, entry in list(self._running.items()):
            if entry.deadline is None or now < entry.deadline:
                continue
            with self._abandoned_lock:
                if entry.future.done():
                    continue  # finished just in time; its result is on the queue
                entry.abandoned = True
                self._abandoned += 1
            del self._running[step_run_id]
            log.warning("step %s passed its timeout; its thread is abandoned", entry.claimed.label)
            expired.append(timeout_result(entry.claimed))
        return expired

    def _next_deadline(self) -> float | None:
        deadlines = [e.deadline for e in self._running.values() if e.deadline is not None]
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
        except StoreError as exc:
            log.error("database error, retrying: %s", exc)
            self._stopping.wait(min(self.poll_interval, 1.0))
            return TickResult(running=len(self._running))

    def _start_background(self) -> None:
        self._background_stop = threading.Event()
        for target, name in ((self._heartbeat_loop, "heartbeat"), (self._listen_loop, "listen")):
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

    def _heartbeat_loop(self) -> None:
        interval = self.lease / 3
        while not self._background_stop.wait(interval):
            # Attempts running here, and finished ones not yet reported.
            held = list(self._running) + [r.step_run_id for r in list(self._unreported)]
            if not held:
                continue
            try:
                self.store.extend_leases(self.worker_id, held, self.lease)
            except StoreError as exc:
                log.error("could not renew leases: %s", exc)

    def _listen_loop(self) -> None:
        while not self._background_stop.is_set():
            try:
                if self.store.wait_for_work(min(self.poll_interval, 1.0)):
                    self._wake.set()
            except StoreError:
                self._background_stop.wait(1.0)

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {}

        def handle(signum: int, frame: object) -> None:
            if self._stopping.is_set():
                raise KeyboardInterrupt
            log.info(
                "received %s: finishing running steps, then stopping", signal.Signals(signum).name
            )
            self.stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handle)

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore
