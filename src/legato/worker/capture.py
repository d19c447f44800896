"""What a task writes while an attempt runs (logging records, prints), kept for its worker.

Attempts run side by side on a worker's threads and event loop, so a line is
routed by a context variable, set in the thread or asyncio task that runs the
attempt (:func:`capturing`): a logging handler on the root logger and proxies
in place of ``sys.stdout`` and ``sys.stderr`` add each line to the current
attempt's :class:`AttemptLog`, and do nothing of the kind where no attempt is
current (the worker's own output). Prints still reach the stream they were
written to, and records every handler they reached before.

Each attempt's log is bounded (:class:`LogLimits`; the lines past the bound
are counted and said to be dropped), its secrets are masked, and its lines
wait in memory until the worker's next heartbeat or report writes them.
Threads a task starts itself do not inherit the context: what they write is
not captured.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

from legato.config import LogLimits
from legato.engine.planner import conceal
from legato.model.runs import clean_text
from legato.store.base import LogEntry

__all__ = ["AttemptLog", "LogLimits", "capturing", "current_log", "install"]

#: the longest line kept (a longer one is cut, saying how much)
MAX_LINE_CHARS = 32_000
#: the name of ``legato.Context.logger``'s parent
TASK_LOGGER = "legato.task"

_current: ContextVar[AttemptLog | None] = ContextVar("legato_attempt_log", default=None)


class AttemptLog:
    """The lines of one attempt not yet written, and what its bound has dropped.

    Lines are added from the attempt's threads and taken by the worker's, so
    every method holds a lock; adding after :meth:`close` does nothing (a task
    still running after its result was reported, or an abandoned thread).
    """

    def __init__(
        self, step_run_id: int, attempt: int, limits: LogLimits, hidden: tuple[str, ...] = ()
    ) -> None:
        self.step_run_id = step_run_id
        self.attempt = attempt
        self.limits = limits
        #: the secrets the call reads (longest first), masked in every line
        self._hidden = hidden
        self._lock = threading.Lock()
        self._lines: list[LogEntry] = []
        self._seq = 0
        self._kept_bytes = 0
        self._dropped = 0
        self._closed = False
        #: the unfinished line of each stream (a print writes its pieces apart)
        self._partial: dict[str, str] = {}

    def add(self, level: str, logger: str | None, message: str, at: float | None = None) -> None:
        """One line: kept if the bound allows, else counted as dropped."""
        if self._hidden:
            message = conceal(message, self._hidden)
        message = clean_text(message, MAX_LINE_CHARS)
        size = len(message.encode("utf-8")) + len(level) + len(logger or "")
        with self._lock:
            if self._closed:
                return
            if self._seq >= self.limits.lines or self._kept_bytes + size > self.limits.bytes:
                self._dropped += 1
                return
            self._seq += 1
            self._kept_bytes += size
            self._lines.append(
                LogEntry(
                    step_run_id=self.step_run_id,
                    attempt=self.attempt,
                    seq=self._seq,
                    at=time.time() if at is None else at,
                    level=level,
                    logger=logger,
                    message=message,
                )
            )

    def write(self, stream: str, text: str) -> None:
        """What a print wrote to ``stream``: each finished line becomes a line of the log."""
        with self._lock:
            if self._closed:
                return
            pending = self._partial.pop(stream, "") + text
        *finished, rest = pending.split("\n")
        if len(rest) > MAX_LINE_CHARS:  # a line that never ends is kept in pieces
            finished.append(rest)
            rest = ""
        if rest:
            with self._lock:
                self._partial[stream] = rest
        for line in finished:
            self.add(stream, None, line.removesuffix("\r"))

    def close(self, *, say_dropped: bool = True) -> None:
        """The attempt ended: keep its unfinished prints, say what was dropped (unless
        another log says it), take no more."""
        with self._lock:
            partial, self._partial = self._partial, {}
        for stream, rest in partial.items():
            self.add(stream, None, rest)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._dropped and say_dropped:
                self._seq += 1
                self._lines.append(
                    LogEntry(
                        step_run_id=self.step_run_id,
                        attempt=self.attempt,
                        seq=self._seq,
                        at=time.time(),
                        level="WARNING",
                        logger="legato",
                        message=f"... {self._dropped:,} lines dropped: this attempt's log passed "
                        f"its limit of {self.limits.lines:,} lines or {self.limits.bytes:,} "
                        "bytes (LEGATO_LOG_LINES, LEGATO_LOG_BYTES)",
                    )
                )

    @property
    def dropped(self) -> int:
        """Lines the bound has dropped so far."""
        return self._dropped

    def forget_dropped(self, count: int) -> None:
        """``count`` dropped lines are now another log's to tell of."""
        with self._lock:
            self._dropped -= count

    def absorb(self, lines: list[list[Any]], dropped: int = 0) -> None:
        """Lines an attempt's child process captured (``[at, level, logger, message]``
        each) and the count it dropped: kept as if written here, bounded and masked."""
        for at, level, logger, message in lines:
            self.add(str(level), None if logger is None else str(logger), str(message), at)
        if dropped:
            with self._lock:
                self._dropped += dropped

    @property
    def waiting(self) -> bool:
        """Lines wait to be taken."""
        return bool(self._lines)

    def take(self) -> list[LogEntry]:
        """The lines added since the last take, oldest first."""
        with self._lock:
            taken, self._lines = self._lines, []
        return taken

    def give_back(self, lines: list[LogEntry]) -> None:
        """Lines taken for a write that failed: written with the next one."""
        if lines:
            with self._lock:
                self._lines[:0] = lines


def current_log() -> AttemptLog | None:
    """The log of the attempt running in this thread (or asyncio task), if any."""
    return _current.get()


@contextmanager
def capturing(log: AttemptLog | None) -> Iterator[None]:
    """Route what this thread (or asyncio task) writes to ``log`` while the block runs."""
    if log is None:
        yield
        return
    token = _current.set(log)
    try:
        yield
    finally:
        _current.reset(token)


# -- what routes the lines ----------------------------------------------------------------


class _Capture(logging.Handler):
    """On the root logger: a record of an attempt goes to its log. A record that, but for
    this handler, would have reached no handler goes where logging sends such records."""

    def emit(self, record: logging.LogRecord) -> None:
        log = _current.get()
        if log is not None:
            log.add(record.levelname, record.name, _text(record), record.created)
        if _unhandled(record):
            _last_resort(record)

    def handleError(self, record: logging.LogRecord) -> None:
        pass  # a line that cannot be formatted is not the task's failure, nor the worker's


class _TaskLogs(logging.Handler):
    """On ``legato.task`` (the parent of every ``ctx.logger``), which stops propagating:
    an attempt's INFO lines are captured even where the logging setup shows only
    warnings, and each record then reaches the handlers above as it did before."""

    def emit(self, record: logging.LogRecord) -> None:
        log = _current.get()
        if log is not None:
            log.add(record.levelname, record.name, _text(record), record.created)
        parent = logging.getLogger("legato")
        if record.levelno < _former_level(record.name, parent):
            return  # shown nowhere before capture began, shown nowhere now
        # A handler set on legato.task itself (besides this one) has had the record.
        had = set(logging.getLogger(TASK_LOGGER).handlers)
        found = len(had) - 1
        logger: logging.Logger | None = parent
        while logger is not None:
            for handler in logger.handlers:
                if isinstance(handler, _Capture) or handler in had:
                    continue
                found += 1
                if record.levelno >= handler.level:
                    handler.handle(record)
            logger = logger.parent if logger.propagate else None
        if not found:
            _last_resort(record)

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def _former_level(name: str, parent: logging.Logger) -> int:
    """The level the logger ``name`` had before ``legato.task`` got one: its own or that
    of an ancestor below ``legato.task``, else what ``legato`` has."""
    while name.startswith(TASK_LOGGER + "."):
        level = logging.getLogger(name).level
        if level != logging.NOTSET:
            return level
        name = name.rpartition(".")[0]
    return parent.getEffectiveLevel()


def _text(record: logging.LogRecord) -> str:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep what was given
        message = f"{record.msg!r} {record.args!r}"
    formatter = logging.Formatter()
    if record.exc_info:
        message += "\n" + formatter.formatException(record.exc_info)
    elif record.exc_text:
        message += "\n" + record.exc_text
    if record.stack_info:
        message += "\n" + formatter.formatStack(record.stack_info)
    return message


def _unhandled(record: logging.LogRecord) -> bool:
    """No handler but this module's would have seen ``record``."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        if any(not isinstance(h, _Capture | _TaskLogs) for h in logger.handlers):
            return False
        logger = logger.parent if logger.propagate else None
    return True


def _last_resort(record: logging.LogRecord) -> None:
    last = logging.lastResort
    if last is not None and record.levelno >= last.level:
        last.handle(record)


_LOGGING_FILE = logging.__file__
#: a proxy is passing a write on, in this thread
_forwarding = threading.local()


class _StreamProxy:
    """In place of ``sys.stdout`` or ``sys.stderr``: writes go to the stream it replaced,
    and, while an attempt is current, to its log (but not a logging handler's output,
    whose record the log has already)."""

    def __init__(self, original: TextIO, name: str) -> None:
        self._legato_original = original
        self._legato_name = name

    def write(self, text: str) -> int:
        if getattr(_forwarding, "on", False):  # reached through another proxy (or a
            return self._legato_original.write(text)  # live display) that kept it already
        log = _current.get()
        if log is not None and isinstance(text, str) and not _inside_logging():
            log.write(self._legato_name, text)
        _forwarding.on = True
        try:
            return self._legato_original.write(text)
        finally:
            _forwarding.on = False

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._legato_original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._legato_original, name)


def _inside_logging() -> bool:
    frame = sys._getframe(2)
    for _ in range(50):
        if frame is None:
            return False
        if frame.f_code.co_filename == _LOGGING_FILE:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


_install_lock = threading.Lock()


def install() -> None:
    """Put the handlers and stream proxies in place, once per process (again if another
    piece of code replaced ``sys.stdout`` or ``sys.stderr`` since)."""
    with _install_lock:
        root = logging.getLogger()
        if not any(isinstance(h, _Capture) for h in root.handlers):
            root.addHandler(_Capture())
        tasks = logging.getLogger(TASK_LOGGER)
        if not any(isinstance(h, _TaskLogs) for h in tasks.handlers):
            if tasks.level == logging.NOTSET:
                tasks.setLevel(min(logging.INFO, tasks.getEffectiveLevel()))
            tasks.propagate = False
            tasks.addHandler(_TaskLogs())
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if current is not None and not isinstance(current, _StreamProxy):
                setattr(sys, name, _StreamProxy(current, name))
