"""SIGKILL a worker inside a database transaction: none of it must stick.

The worker is stopped again and again until a stop finds it holding a
transaction (SQLite's write lock; an open PostgreSQL transaction), then
killed there. Another worker must get the database (no lock left behind)
and finish every run, and the history must match the step rows: whatever
the dead transaction had written is gone as a whole.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from legato import Client, RunStatus, Workflow

from .support import ProcessGroup, duplicates, read_log, wait_until
from .tasks import logged, work

pytestmark = pytest.mark.chaos

RUNS = 30


def small() -> Workflow:
    wf = Workflow("small")
    common = {
        **logged(wf),
        "hold": 0.05,
        "retry": {"max_attempts": 1},  # what a killed worker costs is not a retry
    }
    a = wf.step("a", work, step="a", **common)
    bs = [wf.step(f"b{i}", work, step=f"b{i}", x=a.output["attempt"], **common) for i in range(2)]
    wf.step("c", work, step="c", xs=[b.output["attempt"] for b in bs], **common)
    return wf


def test_a_kill_inside_a_transaction_leaves_nothing_half_done(
    db_url: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    log = str(tmp_path / "effects.log")
    with Client(db_url) as client:
        run_ids = [client.start(small(), {"log": log, "url": db_url}) for _ in range(RUNS)]
        victim = procs.worker(db_url, lease=1.0, sweep=0.2, concurrency=4)
        wait_until(lambda: len(read_log(log)) >= 10, 60, what="the victim to get going")
        victim.kill_inside_transaction(db_url)
        assert victim.popen.returncode == -9
        left = [r for r in run_ids if not client.get(r, with_steps=False).finished]
        assert left, "the victim had finished everything: no work was in flight"
        finisher = procs.worker(db_url, lease=5.0, sweep=0.2, concurrency=4)

        def all_completed() -> bool:
            runs = [client.get(r, with_steps=False) for r in run_ids]
            assert not [r for r in runs if r.status is RunStatus.FAILED]
            return all(r.status is RunStatus.COMPLETED for r in runs)

        wait_until(all_completed, 90, interval=0.1, what="every run to complete")
        runs = [client.get(r) for r in run_ids]
        events = {r: client.history(r) for r in run_ids}

    assert "database is locked" not in finisher.stderr()
    assert "ERROR" not in finisher.stderr()
    started = [(r["run"], r["step"], r["attempt"]) for r in read_log(log) if r["event"] == "start"]
    assert not duplicates(started)
    for run in runs:
        assert run.steps_done == run.steps_total == 4
        history = events[run.id]
        types = Counter(e.type for e in history)
        assert types["run.created"] == types["run.started"] == types["run.completed"] == 1
        for step in run.steps.values():
            assert step.status == "completed"
            mine = [e for e in history if e.step_id == step.step_id]
            # One started event per attempt the row counts, one completion.
            assert [e.attempt for e in mine if e.type == "step.started"] == list(
                range(1, step.attempt + 1)
            )
            assert [e.attempt for e in mine if e.type == "step.completed"] == [step.attempt]
            assert [e.attempt for e in mine if e.type == "step.lost"] == list(
                range(1, step.attempt)
            )
            assert not [e for e in mine if e.type == "step.retrying"]
            assert [a.number for a in step.attempts] == list(range(1, step.attempt + 1))
