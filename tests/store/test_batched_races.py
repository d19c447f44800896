"""Two workers' batches racing for the same rows (``store/batched.py``): the scope
counter shards both count down, and the steps both release, played out on two
connections with the first held before its commit while the second waits for it.
Nothing either counted may be lost, or the run would never finish."""

from __future__ import annotations

import pytest

from legato import Client, RunStatus, StepStatus, Workflow

from .helpers import claim, ok, report, sql
from .tasks import noop
from .test_races import Held, Second, conflict_retries, two  # noqa: F401 (a fixture)

#: wide enough for the scope's counter to be sharded (64 steps or more)
WIDTH = 32
HALF = WIDTH // 2


def ring() -> Workflow:
    """``a0..a31``; each ``b{i}`` needs ``a{i}`` and ``a{i+1}`` (a ring), so two workers
    completing half of the ``a`` each release two ``b`` in common, and count down
    counter shards in common."""
    wf = Workflow("ring")
    first = [wf.step(f"a{i}", noop) for i in range(WIDTH)]
    for i in range(WIDTH):
        wf.step(f"b{i}", noop, needs=[first[i], first[(i + 1) % WIDTH]])
    return wf


def remaining(client: Client, run_id: str) -> int:
    """What the run's top-level counters still count (the latch row left out)."""
    [(total,)] = sql(
        client.store,
        "SELECT COALESCE(SUM(remaining), 0) FROM scope_counters "
        "WHERE run_id = ? AND scope = '' AND shard >= 0",
        run_id,
    )
    return int(total)


@pytest.mark.parametrize("held_point", ["runs_locked", "before_commit"])
def test_two_batches_releasing_the_same_steps_lose_no_count(
    two: tuple[Client, Client],  # noqa: F811
    db_url: str,
    held_point: str,
) -> None:
    first, second = two
    run_id = first.start(ring())
    # Each worker claims its half, so each knows the run started and takes the
    # batched path for its report.
    mine = [ok(s) for s in claim(first, "w1", limit=HALF)]
    theirs = [ok(s) for s in claim(second, "w2", limit=HALF)]
    assert sorted(r.step_id for r in mine + theirs) == sorted(f"a{i}" for i in range(WIDTH))
    holding = Held(first, held_point, lambda: report(first, mine))
    assert holding.reached.wait(10)
    racing = Second(second, lambda: report(second, theirs))
    if held_point == "before_commit" or db_url.startswith("sqlite"):
        racing.assert_blocked(db_url)  # on the rows the first has written, or SQLite's lock
    assert holding.release().accepted == HALF
    assert racing.wait().accepted == HALF

    run = first.get(run_id)
    assert {k: s.status for k, s in run.steps.items() if k.startswith("b")} == {
        f"b{i}": StepStatus.QUEUED for i in range(WIDTH)
    }
    assert remaining(first, run_id) == WIDTH  # every b, each counted once
    queued = [e.step_id for e in first.history(run_id) if e.type == "step.queued"]
    assert sorted(q for q in queued if q and q.startswith("b")) == sorted(
        f"b{i}" for i in range(WIDTH)
    )
    # and the run goes on to the end
    last = claim(first, "w1", limit=WIDTH)
    assert sorted(s.step_id for s in last) == sorted(f"b{i}" for i in range(WIDTH))
    assert report(first, [ok(s) for s in last]).accepted == WIDTH
    assert first.get(run_id).status is RunStatus.COMPLETED
    assert remaining(first, run_id) == 0
    assert conflict_retries(first, second) == 0


def wide() -> Workflow:
    """Independent steps, enough for their scope's counter to be sharded."""
    wf = Workflow("wide")
    for i in range(2 * WIDTH):
        wf.step(f"s{i}", noop)
    return wf


@pytest.mark.parametrize("held_point", ["runs_locked", "before_commit"])
def test_two_batches_counting_down_the_same_counters_lose_no_count(
    two: tuple[Client, Client],  # noqa: F811
    db_url: str,
    held_point: str,
) -> None:
    """The second batch's count-down starts while the first holds the counters it
    needs: it waits, then counts from what the first left."""
    first, second = two
    run_id = first.start(wide())
    mine = [ok(s) for s in claim(first, "w1", limit=HALF)]
    theirs = [ok(s) for s in claim(second, "w2", limit=HALF)]
    holding = Held(first, held_point, lambda: report(first, mine))
    assert holding.reached.wait(10)
    racing = Second(second, lambda: report(second, theirs))
    if held_point == "before_commit" or db_url.startswith("sqlite"):
        racing.assert_blocked(db_url)
    assert holding.release().accepted == HALF
    assert racing.wait().accepted == HALF
    assert remaining(first, run_id) == 2 * WIDTH - 2 * HALF
    rest = claim(first, "w1", limit=2 * WIDTH)
    assert len(rest) == 2 * WIDTH - 2 * HALF
    assert report(first, [ok(s) for s in rest]).accepted == len(rest)
    assert first.get(run_id).status is RunStatus.COMPLETED
    assert remaining(first, run_id) == 0


def test_a_batch_finishing_a_run_another_holds_starts_over_taking_it_first(
    two: tuple[Client, Client],  # noqa: F811
    db_url: str,
) -> None:
    """The runs a batch finishes are taken at once without waiting: one held elsewhere
    (its variables being set) sends the batch round again, that run taken first, and
    it then waits its turn. Both runs finish; nothing runs twice."""
    first, second = two
    wf = Workflow("pair_of_two")
    a = wf.step("a", noop)
    wf.step("b", noop, needs=[a])
    held_run, other_run = second.start_many(wf, [{}, {}])
    report(second, [ok(s) for s in claim(second, "w2", limit=2)])
    lasts = claim(second, "w2", limit=2)
    assert sorted(s.step_id for s in lasts) == ["b", "b"]
    holding = Held(first, "before_commit", lambda: first.update_variables(held_run, {"x": 1}))
    assert holding.reached.wait(10)
    racing = Second(second, lambda: report(second, [ok(s) for s in lasts]))
    racing.assert_blocked(db_url)
    assert holding.release() == {"x": 1}
    outcome = racing.wait()
    assert outcome.accepted == 2 and set(outcome.finished_runs) == {held_run, other_run}
    for run_id in (held_run, other_run):
        run = first.get(run_id)
        assert run.status is RunStatus.COMPLETED
        assert [e.type for e in first.history(run_id)].count("step.completed") == 2
    if not db_url.startswith("sqlite"):
        assert second.store.conflict_retries == 1  # type: ignore[attr-defined]
