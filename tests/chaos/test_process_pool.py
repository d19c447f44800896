"""SIGTERM to a worker whose tasks run in child processes: the children stop with it.

The chaos tasks record the pid of the process that ran them: a child's.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from legato import Client, RunStatus

from .support import ProcessGroup, starts, wait_until
from .test_graceful_stop import held

pytestmark = pytest.mark.chaos


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_sigterm_lets_a_child_finish_its_step_then_stops_it(
    db_url: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    log, release = str(tmp_path / "effects.log"), tmp_path / "release"
    with Client(db_url) as client:
        worker = procs.worker(db_url, grace=30, pool="process")
        run_id = client.start(held(release), {"log": log, "url": db_url})
        [start] = wait_until(lambda: starts(log, "hold"), 60, what="the step to start")
        child = start["pid"]
        assert child not in (worker.pid, os.getpid())
        worker.signal(signal.SIGTERM)
        wait_until(lambda: "received SIGTERM" in worker.stderr(), 30, what="the SIGTERM")
        assert not gone(child)  # it runs on through the grace period
        release.touch()
        assert worker.wait(timeout=30) == 0
        run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["hold"].output == "released"
    wait_until(lambda: gone(child), 10, what="the child process to stop")


def test_a_child_still_running_at_the_grace_end_is_killed_and_its_step_handed_back(
    db_url: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    log, release = str(tmp_path / "effects.log"), tmp_path / "release"
    with Client(db_url) as client:
        worker = procs.worker(db_url, lease=120, grace=0.5, pool="process")
        run_id = client.start(held(release), {"log": log, "url": db_url})
        [start] = wait_until(lambda: starts(log, "hold"), 60, what="the step to start")
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
        assert "handed 1 running step back to the queue" in worker.stderr()
        wait_until(lambda: gone(start["pid"]), 10, what="the child process to be killed")
        step = client.get(run_id).steps["hold"]
    assert (step.status, step.attempt, step.lost, step.failures) == ("queued", 1, 0, 0)
    assert [(a.number, a.status) for a in step.attempts] == [(1, "released")]
