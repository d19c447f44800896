"""A worker paused past its lease (SIGSTOP) loses the attempt; its late result is refused.

While it is stopped, another worker reclaims the step and runs attempt 2.
Resumed while attempt 2 still runs, the paused worker finishes attempt 1
and reports it: the fencing token (the attempt number) makes that result
stale, so attempt 2's outcome is the one recorded, once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from legato import Client, RunStatus, Workflow

from .support import ProcessGroup, read_log, starts, wait_until
from .tasks import logged, work

pytestmark = pytest.mark.chaos


def test_a_paused_worker_cannot_overwrite_the_newer_attempt(
    db_url: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    log = str(tmp_path / "effects.log")
    wf = Workflow("paused")
    common = logged(wf)
    a = wf.step("a", work, step="a", **common)
    b = wf.step("b", work, step="b", hold=2.5, inputs={"after": a.output["step"]}, **common)
    wf.step("c", work, step="c", inputs={"after": b.output["attempt"]}, **common)

    with Client(db_url) as client:
        paused = procs.worker(db_url, lease=1.0, concurrency=1)
        run_id = client.start(wf, {"log": log, "url": db_url})
        wait_until(lambda: starts(log, "b"), 60, what="the first worker to start b")
        paused.freeze(db_url)
        try:
            other = procs.worker(db_url, lease=5.0, sweep=0.2)
            wait_until(lambda: len(starts(log, "b")) == 2, 60, what="b's attempt 2 to start")
        finally:
            paused.thaw()
        # Attempt 1 ends (its sleep ran on while stopped) and is reported while
        # attempt 2 still holds the step.
        wait_until(lambda: "was refused" in paused.stderr(), 30, what="the stale report")
        run = client.wait(run_id, timeout=60)
        events = client.history(run_id)

    assert run.status is RunStatus.COMPLETED, run
    step = run.steps["b"]
    assert [(x.number, x.status) for x in step.attempts] == [(1, "lost"), (2, "completed")]
    assert step.attempts[0].error is not None
    assert step.attempts[0].error.type == "LeaseExpired"
    assert step.output == {"step": "b", "attempt": 2, "reads": {"after": "a"}}
    assert run.steps["c"].output["reads"] == {"after": 2}
    assert step.worker is not None and f":{other.pid}:" in step.worker

    # Both attempts ran to their end (at-least-once), each once, in its own process.
    b_records = Counter(
        (r["event"], r["attempt"], r["pid"]) for r in read_log(log) if r["step"] == "b"
    )
    assert b_records == {
        ("start", 1, paused.pid): 1,
        ("end", 1, paused.pid): 1,
        ("start", 2, other.pid): 1,
        ("end", 2, other.pid): 1,
    }
    completed = Counter(e.step_id for e in events if e.type == "step.completed")
    assert completed == {"a": 1, "b": 1, "c": 1}
    assert [e.type for e in events].count("run.completed") == 1
    assert "ERROR" not in paused.stderr() and "ERROR" not in other.stderr()
