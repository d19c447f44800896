"""Several worker processes on one database never run the same attempt twice.

Two processes share one SQLite file or one PostgreSQL database while the test
starts 200 runs of five steps each, half chains and half fan-outs. Every task
appends (run, step, attempt, pid) to a shared log; with no failures injected,
each step must run exactly once.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

from chaos.support import ProcessGroup, duplicates, read_log, wait_until
from chaos.tasks import logged, work
from legato import Client, Workflow

RUNS = 200
WORKERS = 2


# Each step holds its worker slot briefly so one worker cannot keep up with
# the backlog alone and the second really competes for claims.
HOLD = 0.01


def chain(length: int) -> Workflow:
    wf = Workflow("chain")
    common = {**logged(wf), "hold": HOLD}
    previous = None
    for i in range(length):
        reads: dict[str, Any] = {} if previous is None else {"prev": previous.output["step"]}
        previous = wf.step(f"s{i}", work, step=f"s{i}", **common, **reads)
    return wf


def fan(width: int) -> Workflow:
    wf = Workflow("fan")
    common = {**logged(wf), "hold": HOLD}
    root = wf.step("root", work, step="root", **common)
    leaves = [wf.step(f"leaf{i}", work, step=f"leaf{i}", **common) for i in range(width)]
    root >> leaves
    wf.step("join", work, step="join", parts=[leaf.output["step"] for leaf in leaves], **common)
    return wf


def test_worker_processes_share_the_work_and_run_each_attempt_once(
    db_url: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    log = str(tmp_path / "effects.log")
    workers = [procs.worker(db_url, concurrency=4, lease=20) for _ in range(WORKERS)]
    shapes = [chain(5), fan(3)]  # five steps each: root, three leaves, join
    with Client(db_url) as client:
        run_ids = [client.start(shapes[i % 2], {"log": log, "url": db_url}) for i in range(RUNS)]
        expected = {
            (run_id, step_id)
            for i, run_id in enumerate(run_ids)
            for step_id in shapes[i % 2].spec.graph.steps
        }

        def all_finished() -> bool:
            done = client.list_runs(status="completed", limit=RUNS + 1)
            failed = client.list_runs(status="failed", limit=RUNS + 1)
            assert not failed, failed
            return len(done) == RUNS

        wait_until(all_finished, 120, interval=0.1, what="every run to complete")
        runs = [client.get(run_id) for run_id in run_ids]
        events = [e for run_id in run_ids for e in client.history(run_id)]

    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=30) == 0, worker.stderr()
        err = worker.stderr()
        assert "database is locked" not in err
        assert "ERROR" not in err and "WARNING" not in err, err
        assert "Traceback" not in err, err

    # The side effects: one start and one end per step, all on attempt 1.
    effects = read_log(log)
    started = [(r["run"], r["step"], r["attempt"]) for r in effects if r["event"] == "start"]
    assert not duplicates(started)
    assert {(run, step) for run, step, _ in started} == expected
    assert len(started) == len(expected)
    assert {attempt for _, _, attempt in started} == {1}
    ended = [(r["run"], r["step"], r["attempt"]) for r in effects if r["event"] == "end"]
    assert sorted(ended) == sorted(started)
    pids = Counter(r["pid"] for r in effects if r["event"] == "start")
    assert set(pids) <= {w.pid for w in workers}
    assert len(pids) >= 2, pids  # they really competed

    # The database agrees: every step completed on attempt 1, claimed and completed once.
    for run in runs:
        assert run.status == "completed"
        assert run.steps_done == run.steps_total == len(run.steps)
        assert {(s.status, s.attempt) for s in run.steps.values()} == {("completed", 1)}
    for kind in ("step.started", "step.completed"):
        once = Counter((e.run_id, e.step_id) for e in events if e.type == kind)
        assert set(once) == expected and set(once.values()) == {1}, kind
    assert Counter(e.type for e in events)["run.completed"] == RUNS


def layers(width: int, depth: int) -> Workflow:
    """A DAG of ``depth`` layers; each step needs two neighbours of the layer before, and
    the top scope is wide enough for its counter to be sharded."""
    wf = Workflow("layers")
    common = logged(wf)
    previous: list[Any] = []
    for layer in range(depth):
        current = []
        for i in range(width):
            step = wf.step(f"l{layer}_{i}", work, step=f"l{layer}_{i}", **common)
            if previous:
                [previous[i], previous[(i + 1) % width]] >> step
            current.append(step)
        previous = current
    return wf


def test_two_workers_finish_a_wide_dag_whose_batches_share_successors_and_counters(
    db_url: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    """Both workers complete batches of one layer at once: they release the same steps
    of the next and count the same counter shards down. Nothing either counts is
    lost (the run would never finish) and every step runs once."""
    log = str(tmp_path / "effects.log")
    workers = [procs.worker(db_url, concurrency=8, lease=20) for _ in range(WORKERS)]
    wf = layers(width=64, depth=6)
    with Client(db_url) as client:
        run_id = client.start(wf, {"log": log, "url": db_url})

        def finished() -> bool:
            run = client.get(run_id, with_steps=False)
            assert run.status != "failed", run.error
            return run.status == "completed"

        wait_until(finished, 60, interval=0.1, what="the DAG's run to complete")
        run = client.get(run_id)
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=30) == 0, worker.stderr()
    assert {(s.status, s.attempt) for s in run.steps.values()} == {("completed", 1)}
    started = [r["step"] for r in read_log(log) if r["event"] == "start"]
    assert sorted(started) == sorted(wf.spec.graph.steps)
    pids = Counter(r["pid"] for r in read_log(log) if r["event"] == "start")
    assert len(pids) == WORKERS, pids
