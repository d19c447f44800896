"""Where the command writes, how it fails, and what its exit codes mean.

stdout carries only results (outputs, ``--json`` documents, tables asked
for); progress, logs and errors go to stderr, so ``legato run ... | jq`` works.
Expected failures (a bad file, param or run id) print one red ``error:`` line
and exit with :data:`EXIT_USAGE`; tracebacks are for bugs.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn, TextIO

import typer
from rich.console import Console
from rich.text import Text

from legato.config import redact_url
from legato.errors import LegatoError, WaitTimeout

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "configure_logging",
    "error_line",
    "exit_now",
    "fail",
    "print_json",
    "redact_url",
    "stderr",
    "stdout",
    "user_errors",
]

EXIT_OK = 0
#: the run failed or was cancelled
EXIT_FAILED = 1
#: bad usage, definition, params, settings, or a database that refused
EXIT_USAGE = 2
#: ``--timeout`` passed before the run finished (as GNU ``timeout`` does)
EXIT_TIMEOUT = 124
#: stopped by Ctrl-C (128 + SIGINT)
EXIT_INTERRUPTED = 130

_PIPE_WIDTH = 200


def stdout() -> Console:
    """A console on the current ``sys.stdout`` (test runners swap it per call)."""
    return _console(sys.stdout)


def stderr() -> Console:
    return _console(sys.stderr)


def _console(file: TextIO) -> Console:
    console = Console(file=file)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        # A pipe or a file has no width: don't squeeze tables into rich's default 80.
        console.width = _PIPE_WIDTH
    return console


def error_line(message: str) -> None:
    """Print ``error: message`` in red on stderr."""
    stderr().print(Text(f"error: {message}", style="red"), soft_wrap=True, highlight=False)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: message`` and exit with ``code``."""
    error_line(message)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Report legato's own errors as one line and an exit code, never a traceback."""
    try:
        yield
    except WaitTimeout as exc:
        fail(str(exc), EXIT_TIMEOUT)
    except LegatoError as exc:
        fail(str(exc), EXIT_USAGE)


def exit_now(code: int) -> NoReturn:
    """Exit with ``code`` without waiting for task threads still running.

    Python joins every non-daemon thread at exit, so a task that runs on after
    a timeout or a second Ctrl-C would hold the process open until it returns;
    its step's lease expires and another worker retries it instead.
    """
    busy = [t for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
    if not busy:
        raise typer.Exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def print_json(data: Any) -> None:
    """Valid JSON on stdout: highlighted on a terminal, plain (and fast) in a pipe."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=_json_default)
    console = stdout()
    if console.is_terminal:
        console.print_json(text)
    else:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def configure_logging(level: int) -> None:
    """Concise log lines of ``level`` and above on stderr, unless the host process
    configured logging already. The root logger itself lets INFO through, so what a
    task logs at INFO is kept in its attempt's log even where the console shows less."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"
            )
        )
        handler.setLevel(level)
        root.addHandler(handler)
        root.setLevel(min(level, logging.INFO))
    if level > logging.INFO:
        # One clear error line says the database is unreachable; the pool's
        # warning per connection attempt before it is noise.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
