"""Kill worker processes again and again while runs are in flight.

Each kill lands just after the victim started a step. Replacements keep
arriving; at the end every run has completed although no step allows a
retry, every killed attempt is a lost ``LeaseExpired`` attempt, no attempt
ran twice, and every completion was recorded once.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from legato import Client, RunStatus, Workflow

from .support import ProcessGroup, WorkerProcess, duplicates, read_log, wait_until
from .tasks import logged, work

pytestmark = pytest.mark.chaos

RUNS = 24
KILLS = 6


def storm_workflow() -> Workflow:
    """``a`` -> ``b0``, ``b1``, ``b2`` -> ``c``, each step a fifth of a second of work."""
    wf = Workflow("storm")
    common = {
        **logged(wf),
        "hold": 0.2,
        "retry": {"max_attempts": 1},
        "max_lost_attempts": 50,
    }
    a = wf.step("a", work, step="a", **common)
    bs = [wf.step(f"b{i}", work, step=f"b{i}", x=a.output["attempt"], **common) for i in range(3)]
    wf.step("c", work, step="c", xs=[b.output["attempt"] for b in bs], **common)
    return wf


def test_runs_survive_a_storm_of_kills(db_url: str, procs: ProcessGroup, tmp_path: Path) -> None:
    log = str(tmp_path / "effects.log")
    rng = random.Random(20240607)

    def spawn() -> WorkerProcess:
        return procs.worker(db_url, lease=1.0, sweep=0.2, concurrency=rng.choice([2, 3]))

    alive = [spawn(), spawn()]
    killed: list[WorkerProcess] = []
    with Client(db_url) as client:
        run_ids = [client.start(storm_workflow(), {"log": log, "url": db_url}) for _ in range(RUNS)]
        seen = 0
        for _ in range(KILLS):
            # The next start by a live worker picks the victim, mid-step.
            def fresh_start(seen: int = seen) -> WorkerProcess | None:
                pids = {w.pid: w for w in alive}
                for r in read_log(log)[seen:]:
                    if r["event"] == "start" and r["pid"] in pids:
                        return pids[r["pid"]]
                return None

            victim = wait_until(fresh_start, 60, what="a live worker to start a step")
            assert victim is not None
            victim.kill()
            alive.remove(victim)
            killed.append(victim)
            seen = len(read_log(log))
            alive.append(spawn())

        def all_done() -> bool:
            runs = [client.get(r, with_steps=False) for r in run_ids]
            assert not [r for r in runs if r.status is RunStatus.FAILED]
            return all(r.status is RunStatus.COMPLETED for r in runs)

        wait_until(all_done, 120, interval=0.1, what="every run to complete")
        runs = [client.get(r) for r in run_ids]
        events = [e for r in run_ids for e in client.history(r)]

    effects = read_log(log)
    starts = [(r["run"], r["step"], r["attempt"]) for r in effects if r["event"] == "start"]
    assert not duplicates(starts), "an attempt ran twice"
    started_by = {(r["run"], r["step"], r["attempt"]): r["pid"] for r in effects}
    ended = {(r["run"], r["step"], r["attempt"]) for r in effects if r["event"] == "end"}
    retried: dict[tuple[str, str], int] = defaultdict(int)
    for event in events:
        assert event.type not in ("step.retrying", "step.failed")
        if event.type == "step.lost":
            retried[(event.run_id, event.step_id or "")] += 1
            assert event.details is not None
            assert event.details["error"]["type"] == "LeaseExpired"

    total_retries = 0
    for run in runs:
        assert run.steps_done == run.steps_total == 5
        for step in run.steps.values():
            final = (run.id, step.step_id, step.attempt)
            assert step.status == "completed"
            assert [a.number for a in step.attempts] == list(range(1, step.attempt + 1))
            assert {a.status for a in step.attempts[:-1]} <= {"lost"}
            assert {a.error.type for a in step.attempts[:-1] if a.error} <= {"LeaseExpired"}
            assert step.output["attempt"] == step.attempt  # the final attempt's own output
            assert final in ended
            assert step.worker is not None and f":{started_by[final]}:" in step.worker
            assert retried[(run.id, step.step_id)] == step.attempt - 1
            total_retries += step.attempt - 1
    assert total_retries >= KILLS // 2, "the kills should have cost attempts"

    assert all(w.popen.returncode == -9 for w in killed)  # SIGKILL, not a clean exit
    completed = Counter((e.run_id, e.step_id) for e in events if e.type == "step.completed")
    assert set(completed.values()) == {1} and len(completed) == RUNS * 5
    assert Counter(e.type for e in events)["run.completed"] == RUNS
    for worker in alive:
        err = worker.stderr()
        assert "database is locked" not in err and "ERROR" not in err, err
