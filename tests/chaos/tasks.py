"""Tasks the worker processes run. Names start with ``chaos.``.

Each call records ``start`` and ``end`` lines in the log file it is given,
with the run, step, attempt (read from the database) and the process id, so
a test can count executions across processes and kills.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from legato import Context, Workflow, task

from .support import current_attempt, record


def logged(wf: Workflow) -> dict[str, Any]:
    """The inputs every ``chaos.*`` call takes: the log file and database URL
    (run params ``log`` and ``url``) and the run's id."""
    return {"log": wf.param("log"), "url": wf.param("url"), "run": "${{ run.id }}"}


def _record(event: str, log: str, run: str, step: str, attempt: int) -> None:
    record(log, event=event, run=run, step=step, attempt=attempt, pid=os.getpid(), t=time.time())


@task(name="chaos.work", retries=5, retry_delay=0)
def work(
    log: str,
    url: str,
    run: str,
    step: str,
    hold: float = 0.0,
    block_first: bool = False,
    **reads: Any,
) -> dict[str, Any]:
    """Record the call; hold for ``hold`` seconds; on attempt 1, block if asked.

    A blocked attempt sleeps for ten minutes: the test kills its worker first.
    """
    attempt = current_attempt(url, run, step)
    _record("start", log, run, step, attempt)
    if block_first and attempt == 1:
        time.sleep(600)
    if hold:
        time.sleep(hold)
    _record("end", log, run, step, attempt)
    return {"step": step, "attempt": attempt, "reads": reads}


@task(name="chaos.until_file", retries=5, retry_delay=0)
def until_file(log: str, url: str, run: str, step: str, path: str, limit: float = 120) -> str:
    """Record the call, then return once ``path`` exists (or after ``limit`` seconds)."""
    attempt = current_attempt(url, run, step)
    _record("start", log, run, step, attempt)
    deadline = time.monotonic() + limit
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    _record("end", log, run, step, attempt)
    return "released" if Path(path).exists() else "gave up"


@task(name="chaos.stuck", timeout=0.5)
def stuck(log: str, url: str, run: str, step: str, path: str, limit: float = 120) -> str:
    """Like ``until_file``, with a timeout of half a second and no retries."""
    return until_file.fn(log, url, run, step, path, limit)


@task(name="chaos.add_one")
def add_one(log: str, url: str, run: str, step: str, x: int, hold: float = 0.0) -> int:
    """``x + 1``, recorded; no retries, so only a lost worker may run it twice."""
    attempt = current_attempt(url, run, step)
    _record("start", log, run, step, attempt)
    if hold:
        time.sleep(hold)
    _record("end", log, run, step, attempt)
    return x + 1


@task(name="chaos.kills_its_worker", max_lost_attempts=2)
def kills_its_worker(log: str, url: str, run: str, step: str) -> None:
    """SIGKILLs the worker process running it, every time (a segfault, an OOM kill)."""
    _record("start", log, run, step, current_attempt(url, run, step))
    os.kill(os.getpid(), 9)


# -- instances inside control flow ------------------------------------------------------------
#
# A map's items, their steps and a loop's iterations are step rows keyed within
# their run (``m[3]``, ``m[3].a``, ``lp[2].body``); their ``step_id`` column is
# the spec step's, so they are read by key.


def attempt_at(url: str, run: str, key: str) -> int:
    """The attempt the database holds for the step instance ``key`` of ``run``."""
    if url.startswith("sqlite:"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
        try:
            row = conn.execute(
                "SELECT attempt FROM step_runs WHERE run_id = ? AND key = ?", (run, key)
            ).fetchone()
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True, application_name="legato-chaos-reader") as pg:
            row = pg.execute(
                "SELECT attempt FROM step_runs WHERE run_id = %s::uuid AND key = %s", (run, key)
            ).fetchone()
    assert row is not None, f"no step instance {key!r} in run {run}"
    return int(row[0])


@task(name="chaos.keyed")
def keyed(
    log: str,
    url: str,
    run: str,
    key: str,
    index: int,
    x: Any = None,
    hold: float = 0.0,
    stagger: float = 0.0,
) -> dict[str, Any]:
    """Record ``start`` and ``done`` for the instance ``key.format(index)`` around a hold.

    The hold is ``hold + stagger * (index % 3)``, so items running side by side
    do not finish in step. No retries: only a lost worker may run it twice.
    """
    name = key.format(index)
    attempt = attempt_at(url, run, name)
    _record("start", log, run, name, attempt)
    time.sleep(hold + stagger * (index % 3))
    _record("done", log, run, name, attempt)
    return {"key": name, "x": x, "attempt": attempt}


@task(name="chaos.add_plain")
def add_plain(log: str, run: str, step: str, x: int, hold: float = 0.0) -> int:
    """``x + 1``, recorded without touching the database (which may be restarting)."""
    _record("start", log, run, step, 0)
    if hold:
        time.sleep(hold)
    _record("end", log, run, step, 0)
    return x + 1


@task(name="chaos.goes_silent", heartbeat_timeout="1s", retries=1, retry_delay=0)
def goes_silent(ctx: Context, log: str, path: str, limit: float = 60) -> int:
    """Attempt 1 heartbeats, then wedges without a word until ``path`` exists; later
    attempts return at once."""
    _record("start", log, ctx.run_id, ctx.step_id, ctx.attempt)
    if ctx.attempt == 1:
        for _ in range(3):
            ctx.heartbeat({"at": "warming up"})
            time.sleep(0.2)
        deadline = time.monotonic() + limit
        while not Path(path).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    _record("end", log, ctx.run_id, ctx.step_id, ctx.attempt)
    return ctx.attempt
