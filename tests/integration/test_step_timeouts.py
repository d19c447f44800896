"""A task that goes silent past its heartbeat timeout, in a real worker process.

The worker keeps renewing the attempt's lease (its process is well); the task
alone is wedged. The attempt fails as ``HeartbeatTimeout`` and its retry runs.
"""

from __future__ import annotations

from pathlib import Path

from chaos.support import ProcessGroup, starts
from chaos.tasks import goes_silent
from legato import Client, RunStatus, Workflow


def test_a_wedged_task_times_out_though_its_worker_renews_the_lease(
    db_url: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    log, release = str(tmp_path / "effects.log"), tmp_path / "release"
    wf = Workflow("goes_silent")
    wf.step("quiet", goes_silent, log=log, path=str(release))
    with Client(db_url) as client:
        procs.worker(db_url, lease=5.0, sweep=0.2, concurrency=2)
        run = client.wait(client.start(wf), timeout=60)
        release.touch()  # let the abandoned call end
        assert run.status is RunStatus.COMPLETED, run
        step = run.steps["quiet"]
        assert step.output == 2
        assert [(a.number, a.status) for a in step.attempts] == [(1, "failed"), (2, "completed")]
        error = step.attempts[0].error
        assert error is not None and error.type == "HeartbeatTimeout", error
        assert "LeaseExpired" not in repr(client.history(run.id))
        assert [s["attempt"] for s in starts(log)] == [1, 2]
