"""A task that kills its worker every time still ends: its lost-attempt budget runs out.

Workers keep being replaced as the task kills them; after ``max_lost_attempts``
lost attempts the step fails, saying its worker was lost that many times,
and the run fails with it. No retry is spent (the task allows none anyway).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from legato import Client, RunStatus, Workflow

from .support import ProcessGroup, starts, wait_until
from .tasks import kills_its_worker, logged

pytestmark = pytest.mark.chaos


def test_a_task_that_kills_every_worker_fails_after_its_lost_budget(
    db_url: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    log = str(tmp_path / "effects.log")
    wf = Workflow("crashes")
    wf.step("boom", kills_its_worker, step="boom", **logged(wf))
    with Client(db_url) as client:
        run_id = client.start(wf, {"log": log, "url": db_url})
        workers = [procs.worker(db_url, lease=1.0, sweep=0.2, ready=False)]

        def ended() -> bool:
            if not workers[-1].alive:  # the task killed it: start the next one
                assert workers[-1].popen.returncode == -9
                # Not waited for: the task may kill it before it says it is ready.
                workers.append(procs.worker(db_url, lease=1.0, sweep=0.2, ready=False))
            return client.get(run_id, with_steps=False).finished

        wait_until(ended, 90, interval=0.1, what="the run to end")
        run = client.get(run_id)
    assert run.status is RunStatus.FAILED
    step = run.steps["boom"]
    assert (step.status, step.lost, step.failures, step.max_lost_attempts) == ("failed", 2, 0, 2)
    assert [a.status for a in step.attempts] == ["lost", "lost"]
    assert run.error is not None and run.error.type == "LeaseExpired"
    assert "its worker was lost 2 times" in run.error.message
    assert len(starts(log, "boom")) == 2  # it ran twice, as the budget allows, no more
