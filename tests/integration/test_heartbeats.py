"""Heartbeats keep a step's lease alive for as long as it runs.

The lease is one second and the step takes three; a second worker sweeps
expired leases every 0.2 s and would retry the step if its lease lapsed.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from chaos.support import ProcessGroup, read_log, starts, wait_until
from chaos.tasks import work
from legato import Client, Run, RunStatus, Worker, Workflow

from .tasks import calls, hold


def assert_one_unbroken_attempt(client: Client, run: Run, step_id: str) -> None:
    assert run.status is RunStatus.COMPLETED, run
    step = run.steps[step_id]
    assert step.attempt == 1
    assert [(a.number, a.status) for a in step.attempts] == [(1, "completed")]
    assert step.duration is not None and step.duration > 2.5
    types = Counter(e.type for e in client.history(run.id))
    assert types["step.started"] == 1 and types["step.completed"] == 1
    assert types["step.retrying"] == 0
    assert "LeaseExpired" not in repr(client.history(run.id))


def test_heartbeats_keep_a_long_step_leased_in_process(
    client: Client, workers: Callable[..., Worker]
) -> None:
    key = uuid.uuid4().hex
    wf = Workflow("long_step")
    wf.step("long", hold, key=key, seconds=3.0, retry={"max_attempts": 3, "delay": 0})
    options = {"lease": 1.0, "sweep_interval": 0.2, "concurrency": 2}
    workers(client, worker_id="runner", **options)
    run_id = client.start(wf)
    wait_until(lambda: calls(key), 30, what="the runner to start the step")
    workers(client, worker_id="watchdog", **options)
    run = client.wait(run_id, timeout=60)
    assert_one_unbroken_attempt(client, run, "long")
    assert run.steps["long"].worker == "runner"
    assert calls(key) == 1


def test_heartbeats_keep_a_long_step_leased_in_a_worker_process(
    db_url: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    log = str(tmp_path / "effects.log")
    wf = Workflow("long_step_process")
    wf.step("long", work, log=log, url=db_url, run="${{ run.id }}", step="long", hold=3.0)
    with Client(db_url) as client:
        runner = procs.worker(db_url, lease=1.0, sweep=0.2)
        run_id = client.start(wf)
        wait_until(lambda: starts(log), 30, what="the runner to start the step")
        procs.worker(db_url, lease=1.0, sweep=0.2)  # the watchdog
        run = client.wait(run_id, timeout=60)
        assert_one_unbroken_attempt(client, run, "long")
    assert [(r["event"], r["pid"]) for r in read_log(log)] == [
        ("start", runner.pid),
        ("end", runner.pid),
    ]
