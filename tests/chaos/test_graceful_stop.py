"""SIGTERM: a worker finishes what it runs, claims nothing new and exits 0.

A step that outlives the grace period, or a timed-out step whose thread
never returns, must not keep the process alive. What still runs when a
worker stops is handed back to the queue at once, not left to its lease:
another worker runs it again, and it counts as neither failed nor lost.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from legato import Client, RunStatus, Workflow

from .support import ProcessGroup, WorkerProcess, read_log, starts, stays_false, wait_until
from .tasks import stuck, until_file, work

pytestmark = pytest.mark.chaos


def held(path: Path, task=until_file) -> Workflow:  # type: ignore[no-untyped-def]
    """One step that returns once ``path`` exists."""
    wf = Workflow(f"held_{task.fn.__name__}")
    wf.step(
        "hold",
        task,
        log=wf.param("log"),
        url=wf.param("url"),
        run="${{ run.id }}",
        step="hold",
        path=str(path),
    )
    return wf


def quick() -> Workflow:
    wf = Workflow("quick")
    wf.step("x", work, log=wf.param("log"), url=wf.param("url"), run="${{ run.id }}", step="x")
    return wf


def terminate(worker: WorkerProcess) -> float:
    """SIGTERM, wait until the worker has taken it in; return when it was sent."""
    sent = time.monotonic()
    worker.signal(signal.SIGTERM)
    wait_until(lambda: "received SIGTERM" in worker.stderr(), 30, what="the SIGTERM to land")
    return sent


def test_sigterm_lets_the_running_step_finish_and_claims_nothing_new(
    db_url: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    log, release = str(tmp_path / "effects.log"), tmp_path / "release"
    params = {"log": log, "url": db_url}
    with Client(db_url) as client:
        worker = procs.worker(db_url, concurrency=2, grace=30)
        held_id = client.start(held(release), params)
        wait_until(lambda: starts(log, "hold"), 60, what="the held step to start")
        terminate(worker)

        # A free slot and queued work, but the worker is stopping: it must not claim it.
        later_id = client.start(quick(), params)
        assert stays_false(lambda: client.get(later_id).steps["x"].attempt > 0, 1.5)
        assert worker.alive

        release.touch()
        assert worker.wait(timeout=30) == 0
        held_run = client.get(held_id)
        later = client.get(later_id)

    assert held_run.status is RunStatus.COMPLETED
    assert held_run.steps["hold"].attempt == 1
    assert held_run.steps["hold"].output == "released"
    assert later.status is RunStatus.PENDING
    assert (later.steps["x"].status, later.steps["x"].attempt) == ("queued", 0)
    assert [r["step"] for r in read_log(log)] == ["hold", "hold"]  # start and end, once
    assert "worker stopped cleanly" in worker.stderr()
    assert "ERROR" not in worker.stderr()


def test_a_step_that_outlives_the_grace_period_is_handed_back(
    db_url: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    log, release = str(tmp_path / "effects.log"), tmp_path / "release"
    with Client(db_url) as client:
        # A lease far longer than the test: only a hand-back lets the step run again soon.
        worker = procs.worker(db_url, lease=120, grace=0.5)
        run_id = client.start(held(release), {"log": log, "url": db_url})
        wait_until(lambda: starts(log, "hold"), 60, what="the held step to start")
        sent = terminate(worker)
        assert worker.wait(timeout=20) == 0
        assert time.monotonic() - sent < 15
        assert "grace period of 0.5s is over with 1 step still running" in worker.stderr()
        assert "handed 1 running step back to the queue" in worker.stderr()
        step = client.get(run_id).steps["hold"]
        assert (step.status, step.attempt, step.lost, step.failures) == ("queued", 1, 0, 0)

        release.touch()
        procs.worker(db_url, lease=120)
        run = client.wait(run_id, timeout=60)

    assert run.status is RunStatus.COMPLETED
    step = run.steps["hold"]
    assert [(a.number, a.status) for a in step.attempts] == [(1, "released"), (2, "completed")]
    assert step.attempts[0].error is None
    assert (step.lost, step.failures) == (0, 0)


def test_a_second_sigterm_hands_back_at_once(
    db_url: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    log, release = str(tmp_path / "effects.log"), tmp_path / "release"
    with Client(db_url) as client:
        worker = procs.worker(db_url, lease=120, grace=60)
        run_id = client.start(held(release), {"log": log, "url": db_url})
        wait_until(lambda: starts(log, "hold"), 60, what="the held step to start")
        terminate(worker)
        sent = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 130
        assert time.monotonic() - sent < 15  # not the 60 s grace
        assert "worker stopped at once" in worker.stderr()
        assert "handed 1 running step back to the queue" in worker.stderr()

        release.touch()
        procs.worker(db_url, lease=120)
        run = client.wait(run_id, timeout=60)
        history = [e.type for e in client.history(run_id)]

    assert run.status is RunStatus.COMPLETED
    step = run.steps["hold"]
    assert [(a.number, a.status) for a in step.attempts] == [(1, "released"), (2, "completed")]
    assert (step.lost, step.failures) == (0, 0)
    assert "step.released" in history and "step.lost" not in history


def test_a_timed_out_thread_does_not_keep_the_process(
    db_url: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    log, never = str(tmp_path / "effects.log"), tmp_path / "never"
    with Client(db_url) as client:
        worker = procs.worker(db_url, grace=30)
        run_id = client.start(held(never, stuck), {"log": log, "url": db_url})
        run = client.wait(run_id, timeout=60)
        assert run.status is RunStatus.FAILED
        assert run.error is not None and run.error.type == "StepTimeoutError"
        sent = terminate(worker)
        assert worker.wait(timeout=20) == 0
    assert time.monotonic() - sent < 15
    assert [r["event"] for r in read_log(log)] == ["start"]  # still stuck when it exited
