"""Waiting without blind sleeps, worker processes, and the side-effect log.

Tasks record what they do as JSON lines appended to a log file: each line is
one ``write`` on a descriptor opened with ``O_APPEND``, so lines from many
processes and threads never interleave. Worker processes run
``worker_main.py``; a :class:`ProcessGroup` kills whatever is still alive when
the test ends.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")

WORKER_MAIN = Path(__file__).resolve().parent / "worker_main.py"


# -- waiting ----------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T], timeout: float, *, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; return that.

    Raises ``AssertionError`` naming ``what`` once ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def stays_false(
    predicate: Callable[[], object], duration: float, *, interval: float = 0.02
) -> bool:
    """True if ``predicate`` stays falsy for ``duration`` seconds (checks a thing never happens)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if predicate():
            return False
        time.sleep(interval)
    return not predicate()


# -- the side-effect log ------------------------------------------------------------


def record(log: str, **fields: Any) -> None:
    """Append one JSON line to ``log`` in a single write."""
    line = (json.dumps(fields, sort_keys=True) + "\n").encode()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_log(log: str | Path) -> list[dict[str, Any]]:
    try:
        text = Path(log).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def starts(log: str | Path, step: str | None = None) -> list[dict[str, Any]]:
    return [
        r for r in read_log(log) if r["event"] == "start" and (step is None or r["step"] == step)
    ]


def duplicates(keys: Iterable[T]) -> dict[T, int]:
    return {key: n for key, n in Counter(keys).items() if n > 1}


# -- reading the database beside the worker ------------------------------------------

_local = threading.local()


def current_attempt(url: str, run_id: str, step_id: str) -> int:
    """The attempt number the database holds for a step (the one now running).

    Tasks call this to learn which attempt they are; it reads over a
    connection of its own, kept per thread.
    """
    conns: dict[str, Any] = _local.__dict__.setdefault("conns", {})
    conn = conns.get(url)
    if url.startswith("sqlite:"):
        if conn is None:
            conn = conns[url] = sqlite3.connect(
                url.removeprefix("sqlite:///"), timeout=30, isolation_level=None
            )
        row = conn.execute(
            "SELECT attempt FROM step_runs WHERE run_id = ? AND step_id = ?", (run_id, step_id)
        ).fetchone()
    else:
        if conn is None or conn.closed:
            conn = conns[url] = psycopg.connect(
                url, autocommit=True, application_name="legato-chaos-reader"
            )
        row = conn.execute(
            "SELECT attempt FROM step_runs WHERE run_id = %s::uuid AND step_id = %s",
            (run_id, step_id),
        ).fetchone()
    assert row is not None, f"no step {step_id!r} in run {run_id}"
    return int(row[0])


# -- worker processes ---------------------------------------------------------------


class WorkerProcess:
    """One ``worker_main.py`` process; its output goes to files beside the test."""

    def __init__(self, args: list[str], folder: Path, name: str) -> None:
        self.name = name
        self.app_name = f"legato-chaos-{os.getpid()}-{name}"
        self.stdout_path = folder / f"{name}.out"
        self.stderr_path = folder / f"{name}.err"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, str(WORKER_MAIN), *args],
                stdout=out,
                stderr=err,
                # PGAPPNAME names its PostgreSQL sessions, so a test can see
                # whether this process is inside a transaction.
                env={**os.environ, "PYTHONUNBUFFERED": "1", "PGAPPNAME": self.app_name},
            )
        self.pid = self.popen.pid

    def __repr__(self) -> str:
        return f"<worker {self.name} pid={self.pid} rc={self.popen.poll()}>"

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the worker has opened its database and is about to serve."""

        def ready() -> bool:
            if not self.alive:
                raise AssertionError(f"{self} exited early:\n{self.stderr()}")
            return "ready" in self.stdout()

        wait_until(ready, timeout, what=f"{self.name} to start")

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, then reap it."""
        if self.alive:
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def freeze(self, url: str, tries: int = 50) -> None:
        """SIGSTOP the process at a moment it holds no database lock.

        A process stopped inside a transaction would block the others (SQLite's
        write lock) or hide its rows from the lease sweep (PostgreSQL's row
        locks); a paused worker in the field can do that, but these tests
        want a paused worker whose lease simply lapses.
        """
        for _ in range(tries):
            self.signal(signal.SIGSTOP)
            wait_until(self._stopped, 10, interval=0.001, what=f"{self} to stop")
            if not _in_transaction(url, self.app_name):
                return
            self.signal(signal.SIGCONT)
            time.sleep(0.01)
        raise AssertionError(f"{self} was inside a transaction each time it was stopped")

    def kill_inside_transaction(self, url: str, tries: int = 2000) -> None:
        """SIGKILL the process while it is inside a database transaction.

        Stops it again and again until a stop finds it holding a transaction
        (SQLite's write lock, or a PostgreSQL session with an open
        transaction), then kills it there.
        """
        for _ in range(tries):
            self.signal(signal.SIGSTOP)
            wait_until(self._stopped, 10, interval=0.001, what=f"{self} to stop")
            if _in_transaction(url, self.app_name):
                self.kill()
                return
            self.signal(signal.SIGCONT)
            time.sleep(0.002)
        raise AssertionError(f"{self} was never inside a transaction when stopped")

    def _stopped(self) -> bool:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] in ("T", "t")

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)


def _in_transaction(url: str, app_name: str) -> bool:
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0.2, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return True  # someone holds the write lock (maybe not this process: retry)
        finally:
            conn.close()
        return False
    with psycopg.connect(url, autocommit=True) as pg:
        row = pg.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND xact_start IS NOT NULL",
            (app_name,),
        ).fetchone()
    return bool(row and row[0])


class ProcessGroup:
    """Starts worker processes and kills any still alive at teardown."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[WorkerProcess] = []

    def worker(
        self,
        url: str,
        *,
        lease: float = 10.0,
        concurrency: int = 2,
        poll: float = 0.05,
        sweep: float = 0.5,
        grace: float = 30.0,
        ready: bool = True,
        pool: str = "thread",
    ) -> WorkerProcess:
        args = [
            url,
            f"--lease={lease}",
            f"--concurrency={concurrency}",
            f"--poll={poll}",
            f"--sweep={sweep}",
            f"--grace={grace}",
            f"--pool={pool}",
        ]
        process = WorkerProcess(args, self.folder, f"worker{len(self.started)}")
        self.started.append(process)
        if ready:
            process.wait_ready()
        return process

    def kill_all(self) -> None:
        for process in self.started:
            if process.alive:
                process.kill()
