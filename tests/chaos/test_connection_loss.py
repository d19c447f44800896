"""PostgreSQL connections cut under a running worker: nothing is lost or done twice.

The test terminates every database session of a worker process, again and
again, while its runs go on. Each cut may fail a transaction that reports
finished attempts; the worker must report them again, not drop them (a
dropped result would leave its step running until the lease lapsed, then
fail it). The steps allow no retries, so any lost result fails a run.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import psycopg
import pytest

from legato import Client, RunStatus, Workflow

from .support import ProcessGroup, duplicates, read_log, wait_until
from .tasks import logged, work

pytestmark = pytest.mark.chaos

RUNS = 12


def chain() -> Workflow:
    wf = Workflow("cut")
    common = {
        **logged(wf),
        "hold": 0.05,
        "retry": {"max_attempts": 1},
    }
    previous = wf.step("s0", work, step="s0", **common)
    for i in range(1, 4):
        previous = wf.step(f"s{i}", work, step=f"s{i}", x=previous.output["attempt"], **common)
    return wf


def test_a_worker_rides_out_cut_connections(
    pg_url: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    log = str(tmp_path / "effects.log")
    worker = procs.worker(pg_url, lease=3.0, sweep=0.2, concurrency=3)
    cuts = 0
    with Client(pg_url) as client, psycopg.connect(pg_url, autocommit=True) as admin:
        run_ids = [client.start(chain(), {"log": log, "url": pg_url}) for _ in range(RUNS)]

        def cut_and_check() -> bool:
            nonlocal cuts
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (worker.app_name,),
            ).fetchall()
            cuts += sum(1 for (done,) in rows if done)
            runs = [client.get(r, with_steps=False) for r in run_ids]
            failed = [r for r in runs if r.status is RunStatus.FAILED]
            assert not failed, client.get(failed[0].id).error
            return all(r.status is RunStatus.COMPLETED for r in runs)

        wait_until(cut_and_check, 120, interval=0.15, what="every run to complete")
        runs = [client.get(r) for r in run_ids]

    assert cuts >= 5, cuts
    assert "database unavailable, retrying" in worker.stderr()
    for run in runs:
        assert {(s.status, s.attempt) for s in run.steps.values()} == {("completed", 1)}
        # Each output is the one its attempt returned, read by the next step.
        for i in range(4):
            reads = {} if i == 0 else {"x": 1}
            assert run.steps[f"s{i}"].output == {"step": f"s{i}", "attempt": 1, "reads": reads}
    started = [(r["run"], r["step"], r["attempt"]) for r in read_log(log) if r["event"] == "start"]
    assert not duplicates(started)
    assert Counter(attempt for *_, attempt in started) == {1: RUNS * 4}
