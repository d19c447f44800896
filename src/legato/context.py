"""``legato.Context``: what a running task may know and say about its attempt.

A task asks for it with a parameter annotated ``legato.Context`` (any name);
the worker passes one per attempt. Progress and heartbeat details are kept
here and written by the worker's next heartbeat or report, together with
everything else it writes then: a task may report progress thousands of
times a second without costing a single extra commit.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from legato.payload import to_json

__all__ = ["Context"]

#: the largest heartbeat details kept, as JSON
MAX_DETAILS_BYTES = 64 * 1024
#: the longest progress message kept
MAX_MESSAGE_CHARS = 1_000


class Context:
    """One attempt of one step, as its task sees it.

    ``run_id``, ``step_id`` (the instance key, ``fetch[3]`` for a map's item),
    ``attempt`` (1 for the first), ``index`` and ``item`` (inside a map),
    ``iteration`` (inside a loop), and ``logger`` (named ``legato.task.<task>``).
    """

    def __init__(
        self,
        *,
        run_id: str,
        step_id: str,
        attempt: int,
        task: str,
        index: int | None = None,
        item: Any = None,
        iteration: int | None = None,
    ) -> None:
        self.run_id = run_id
        self.step_id = step_id
        self.attempt = attempt
        self.task = task
        self.index = index
        self.item = item
        self.iteration = iteration
        self.logger = logging.getLogger(f"legato.task.{task}")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._progress: str | None = None
        self._details: str | None = None
        #: the attempt's first progress report: (done, at)
        self._first: tuple[float, float] | None = None
        #: when the task last said it is alive (monotonic): its start, a heartbeat, progress
        self._last_beat = time.monotonic()

    def __repr__(self) -> str:
        return f"<Context {self.step_id} (run {self.run_id}, attempt {self.attempt})>"

    @property
    def cancelled(self) -> bool:
        """True once the run was cancelled (or paused with ``stop_now``) while this attempt
        ran: stop soon, by returning or raising. The worker learns it by heartbeat."""
        return self._stop.is_set()

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Report how far the attempt is: ``done`` of ``total`` (when known), and a note.

        Kept in memory; the latest is written by the worker's next heartbeat or report,
        with the first of the attempt (``first_done``, ``first_at``), which the ETA reads.
        """
        _check_amount("done", done)
        if total is not None:
            _check_amount("total", total)
        if message is not None and not isinstance(message, str):
            raise TypeError(f"progress message must be text, got {type(message).__name__}")
        at = round(time.time(), 3)
        with self._lock:
            if self._first is None:  # the rate is measured from the attempt's first report
                self._first = (float(done), at)
            first_done, first_at = self._first
        _, text = to_json(
            {
                "done": done,
                "total": total,
                "message": None if message is None else message[:MAX_MESSAGE_CHARS],
                "at": at,
                "first_done": first_done,
                "first_at": first_at,
            },
            what="progress",
            max_bytes=None,
        )
        with self._lock:
            self._progress = text
            self._last_beat = time.monotonic()

    def heartbeat(self, details: Any = None) -> None:
        """Say the attempt is alive, with ``details`` (JSON, at most 64 KiB) to keep with it:
        where it got to, what a later attempt could resume from. A task with a
        ``heartbeat_timeout`` must call this (or :meth:`progress`) at least that often."""
        _, text = to_json(details, what="heartbeat details", max_bytes=MAX_DETAILS_BYTES)
        with self._lock:
            self._details = text
            self._last_beat = time.monotonic()

    # -- for the worker ----------------------------------------------------------------

    @property
    def last_beat(self) -> float:
        """When (``time.monotonic()``) the task last said it is alive: its start, its last
        heartbeat or progress report; what its ``heartbeat_timeout`` is judged from."""
        with self._lock:
            return self._last_beat

    def request_stop(self) -> None:
        """The worker learned the attempt is asked to stop."""
        self._stop.set()

    def take_reports(self) -> tuple[str | None, str | None] | None:
        """What was reported since the last call (progress, details as JSON), or None."""
        with self._lock:
            if self._progress is None and self._details is None:
                return None
            taken = (self._progress, self._details)
            self._progress = self._details = None
            return taken

    def absorb(self, progress: str | None, details: str | None) -> None:
        """Reports the task made in a worker's child process: the newest win, and count
        as the task saying it is alive."""
        with self._lock:
            if progress is not None:
                self._progress = progress
            if details is not None:
                self._details = details
            self._last_beat = time.monotonic()

    def give_back(self, progress: str | None, details: str | None) -> None:
        """Reports taken for a write that failed: kept for the next, unless newer ones came."""
        with self._lock:
            if self._progress is None:
                self._progress = progress
            if self._details is None:
                self._details = details


def _check_amount(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"progress {name} must be a finite number, got {value!r}")
