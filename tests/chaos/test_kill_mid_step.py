"""SIGKILL a worker process in the middle of a step; another worker finishes the run.

The killed attempt is lost (``LeaseExpired``), not failed: the step runs
again although it allows no retries, steps that had completed must not run
again, and every completion must be recorded exactly once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from legato import Client, RunStatus, Workflow

from .support import ProcessGroup, duplicates, read_log, starts, wait_until
from .tasks import logged, work

pytestmark = pytest.mark.chaos


def fan_workflow(width: int) -> Workflow:
    """``a`` -> ``b0``..``b{width-1}`` (each blocks on its first attempt) -> ``c``."""
    wf = Workflow("kill_mid_step")
    common = logged(wf)
    a = wf.step("a", work, step="a", **common)
    middle = [
        wf.step(
            f"b{i}",
            work,
            step=f"b{i}",
            block_first=True,
            inputs={"after": a.output["step"]},
            retry={"max_attempts": 1},  # no retries: a lost worker must not need one
            **common,
        )
        for i in range(width)
    ]
    c = wf.step("c", work, step="c", seen=[b.output["attempt"] for b in middle], **common)
    wf.outputs(c=c.output)
    return wf


@pytest.mark.parametrize("width", [1, 3])
def test_killed_worker_loses_its_attempt_and_nothing_else(
    db_url: str, procs: ProcessGroup, tmp_path: Path, width: int
) -> None:
    log = str(tmp_path / "effects.log")
    middle = [f"b{i}" for i in range(width)]
    with Client(db_url) as client:
        run_id = client.start(fan_workflow(width), {"log": log, "url": db_url})
        a = procs.worker(db_url, lease=1.5, concurrency=width)
        wait_until(
            lambda: {r["step"] for r in starts(log)} >= set(middle),
            60,
            what="worker A to be inside every middle step",
        )
        assert {r["pid"] for r in starts(log)} == {a.pid}
        a.kill()

        b = procs.worker(db_url, lease=1.5, concurrency=width)
        run = client.wait(run_id, timeout=90)
        events = client.history(run_id)

    assert run.status is RunStatus.COMPLETED, run
    assert run.steps_done == run.steps_total == width + 2
    assert run.outputs == {
        "c": {"step": "c", "attempt": 1, "reads": {"seen": [2] * width}},
    }
    for step_id in middle:
        step = run.steps[step_id]
        assert step.status == "completed"
        assert step.attempt == 2
        assert [(x.number, x.status) for x in step.attempts] == [(1, "lost"), (2, "completed")]
        assert (step.failures, step.lost) == (0, 1)
        killed = step.attempts[0].error
        assert killed is not None and killed.type == "LeaseExpired"
        assert step.output == {"step": step_id, "attempt": 2, "reads": {"after": "a"}}
    assert run.steps["a"].attempt == run.steps["c"].attempt == 1

    # The side effects: a and c ran once each; each middle step started twice
    # (attempt 1 in A, killed; attempt 2 in B) and ended once, in B.
    effects = read_log(log)
    started = Counter(r["step"] for r in effects if r["event"] == "start")
    assert started == {"a": 1, "c": 1, **{s: 2 for s in middle}}
    assert not duplicates((r["step"], r["attempt"]) for r in effects if r["event"] == "start")
    for step_id in middle:
        assert [(r["attempt"], r["pid"]) for r in starts(log, step_id)] == [(1, a.pid), (2, b.pid)]
    ended = [(r["step"], r["attempt"], r["pid"]) for r in effects if r["event"] == "end"]
    assert sorted(ended) == sorted(
        [("a", 1, a.pid), ("c", 1, b.pid), *[(s, 2, b.pid) for s in middle]]
    )

    # The history: one completion per step, one for the run, one loss per killed attempt.
    completed = Counter(e.step_id for e in events if e.type == "step.completed")
    assert completed == {"a": 1, "c": 1, **{s: 1 for s in middle}}
    assert [e.type for e in events].count("run.completed") == 1
    assert not [e for e in events if e.type in ("step.retrying", "step.failed")]
    lost = [e for e in events if e.type == "step.lost"]
    assert sorted(e.step_id or "" for e in lost) == middle
    assert {e.details["error"]["type"] for e in lost} == {"LeaseExpired"}  # type: ignore[index]
    assert {e.actor for e in lost} == {"lease-sweeper"}
    assert "database is locked" not in b.stderr()
