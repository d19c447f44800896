"""A worker's usual batch sent at once (``store/chained.py``): its cost, and every way
out of it (a stale attempt, a successor to decide, a scope that finishes)."""

from __future__ import annotations

from legato import Client, RunStatus, StepStatus, Workflow
from legato.store.base import ClaimRequest
from legato.store.counting import COUNTS, Snapshot

from .helpers import ALL_TASKS, by_step, claim, ok, report
from .tasks import echo, noop


def request(root: str, limit: int = 1) -> ClaimRequest:
    return ClaimRequest(
        worker_id="w1",
        queues=("default",),
        tasks=ALL_TASKS,
        limit=limit,
        lease=30,
        root_run_id=root,
    )


def chain(n: int) -> Workflow:
    wf = Workflow(f"chain_{n}")
    previous = None
    for i in range(n):
        previous = wf.step(f"s{i}", noop, needs=[previous] if previous else None)
    return wf


def pipelined(client: Client) -> None:
    """PostgreSQL's transactions in pipeline mode (the default; ``LEGATO_PG_PIPELINE=0``
    turns it off), whatever the environment says."""
    if client.store.dialect == "postgres":  # type: ignore[attr-defined]
        client.store.pipeline = True  # type: ignore[attr-defined]


def events(client: Client, run_id: str, kind: str) -> list[str]:
    return [e.step_id or "" for e in client.history(run_id) if e.type == kind]


def test_a_chained_step_costs_one_commit_and_two_round_trips(client: Client) -> None:
    pipelined(client)
    run_id = client.start(chain(8))
    [step] = claim(client, root=run_id, limit=1)
    costs: list[Snapshot] = []
    for i in range(6):
        before = COUNTS.snapshot()
        outcome = report(client, [ok(step)], request(run_id))
        costs.append(COUNTS.snapshot() - before)
        assert outcome.accepted == 1
        [step] = outcome.claimed
        assert step.step_id == f"s{i + 1}"
    postgres = client.store.dialect == "postgres"  # type: ignore[attr-defined]
    for cost in costs[1:]:  # the first reads the run's context and counters once
        assert cost.commits == 1, costs
        # savepoint, complete, release, count down, claim, and three events
        # (step.completed, step.queued, step.started) in one statement
        assert cost.statements <= 8, costs
        if postgres:  # BEGIN with the first five, the events with COMMIT
            assert cost.round_trips == 2, costs
    assert events(client, run_id, "step.completed") == [f"s{i}" for i in range(6)]


def test_a_stale_completion_in_a_batch_takes_the_ordinary_path(client: Client) -> None:
    wf = Workflow("fan")
    first = wf.step("first", noop)
    left = wf.step("left", noop, needs=[first])
    right = wf.step("right", noop, needs=[first])
    wf.step("last", noop, needs=[left, right])
    run_id = client.start(wf)
    report(client, [ok(claim(client, root=run_id)[0])])
    middle = by_step(claim(client, root=run_id))
    done = ok(middle["left"])
    assert report(client, [done]).accepted == 1
    # The same result again, beside a fresh one: the first is refused, the second counts.
    outcome = report(client, [done, ok(middle["right"])], request(run_id))
    assert outcome.stale == [done]
    assert outcome.accepted == 1
    assert [s.step_id for s in outcome.claimed] == ["last"]
    assert sorted(events(client, run_id, "step.completed")) == ["first", "left", "right"]
    assert client.get(run_id).steps["last"].status is StepStatus.RUNNING


def test_a_successor_with_a_condition_is_decided_as_ever(client: Client) -> None:
    wf = Workflow("decided")
    first = wf.step("first", echo, x=1)
    wf.step("taken", noop, needs=[first], when="${{ steps.first.output == 1 }}")
    wf.step("skipped", noop, needs=[first], when="${{ steps.first.output == 2 }}")
    run_id = client.start(wf)
    [step] = claim(client, root=run_id)
    outcome = report(client, [ok(step, 1)], request(run_id, limit=5))
    assert outcome.accepted == 1
    assert [s.step_id for s in outcome.claimed] == ["taken"]
    steps = client.get(run_id).steps
    assert steps["skipped"].status is StepStatus.SKIPPED
    assert events(client, run_id, "step.completed") == ["first"]


def test_a_group_finished_by_its_last_step_lets_the_same_claim_take_what_follows(
    client: Client,
) -> None:
    wf = Workflow("grouped")
    job = wf.group("job")
    job.step("inner", noop)
    wf.step("after", noop, needs=[job])
    run_id = client.start(wf)
    [inner] = claim(client, root=run_id)
    outcome = report(client, [ok(inner)], request(run_id))
    assert [s.step_id for s in outcome.claimed] == ["after"]
    assert client.get(run_id).steps["job"].status is StepStatus.COMPLETED
    outcome = report(client, [ok(outcome.claimed[0])], request(run_id))
    assert outcome.finished_runs == {run_id: RunStatus.COMPLETED}
    assert client.get(run_id, with_steps=False).status is RunStatus.COMPLETED


def test_the_last_step_of_a_chain_finishes_its_run(client: Client) -> None:
    run_id = client.start(chain(2))
    [first] = claim(client, root=run_id)
    [second] = report(client, [ok(first)], request(run_id)).claimed
    outcome = report(client, [ok(second)], request(run_id))
    assert outcome.claimed == []
    assert outcome.finished_runs == {run_id: RunStatus.COMPLETED}
    history = [e.type for e in client.history(run_id)]
    assert history.count("run.completed") == 1
    assert history.index("run.completed") > history.index("step.completed")


def _finish_batch(client: Client, n: int) -> Snapshot:
    """Report ``n`` one-step runs' steps in one batch that also claims: what it cost."""
    client.start_many(chain(1), [{}] * n)
    steps = claim(client, limit=n)
    assert len(steps) == n
    before = COUNTS.snapshot()
    outcome = report(
        client,
        [ok(s) for s in steps],
        ClaimRequest(worker_id="w1", queues=("default",), tasks=ALL_TASKS, limit=n, lease=30),
    )
    cost = COUNTS.snapshot() - before
    assert outcome.accepted == n
    assert set(outcome.finished_runs.values()) == {RunStatus.COMPLETED}
    assert len(outcome.finished_runs) == n
    return cost


def test_finishing_a_batch_of_runs_costs_round_trips_independent_of_its_size(
    client: Client,
) -> None:
    pipelined(client)
    _finish_batch(client, 2)  # the spec and the task's defaults read once
    small, large = _finish_batch(client, 2), _finish_batch(client, 6)
    assert small.commits == large.commits == 1
    if client.store.dialect == "postgres":  # type: ignore[attr-defined]
        # lock the runs, complete the steps, finish the runs with the claim, events
        assert small.round_trips == large.round_trips <= 4, (small, large)


def _start_batch(client: Client, n: int) -> tuple[list[str], Snapshot]:
    before = COUNTS.snapshot()
    run_ids = client.start_many(chain(1), [{}] * n)
    return run_ids, COUNTS.snapshot() - before


def test_a_batch_of_one_step_runs_costs_statements_independent_of_its_size(
    client: Client,
) -> None:
    """Starting a batch writes its runs, their steps and their events in one statement
    each; finishing one costs the same few: the completions in one, the runs finished
    in one, the events in one."""
    _finish_batch(client, 2)  # the spec and the task's defaults read once
    small, large = _finish_batch(client, 2), _finish_batch(client, 50)
    assert large.statements == small.statements <= 6, (small, large)
    assert large.round_trips == small.round_trips, (small, large)
    # Each run's story is whole and in order, whichever statement wrote it.
    for run in client.list_runs(status="completed", limit=3):
        assert [e.type for e in client.history(run.id)] == [
            "run.created",
            "step.queued",
            "run.started",
            "step.started",
            "step.completed",
            "run.completed",
        ]
    (_, small_start), (_, large_start) = _start_batch(client, 2), _start_batch(client, 50)
    assert small_start.statements == large_start.statements <= 5, (small_start, large_start)


def test_a_result_for_a_deleted_run_is_refused_beside_the_rest_of_its_batch(
    client: Client,
) -> None:
    doomed = client.start(chain(1), tags={"fate": "pruned"})
    kept = client.start(chain(3))
    steps = claim(client, limit=5)
    assert {s.run_id for s in steps} == {doomed, kept}
    client.cancel(doomed, "not needed")
    client.store.clock.advance(2 * 86400)  # type: ignore[attr-defined]
    assert client.prune("1d").runs == 1
    results = [ok(s) for s in steps]
    outcome = report(client, results, request(kept))
    assert [r.run_id for r in outcome.stale] == [doomed]
    assert outcome.accepted == 1
    assert [s.step_id for s in outcome.claimed] == ["s1"]


def test_without_pipeline_mode_a_chained_step_commits_once_all_the_same(client: Client) -> None:
    if client.store.dialect == "postgres":  # type: ignore[attr-defined]
        client.store.pipeline = False  # type: ignore[attr-defined]
    run_id = client.start(chain(4))
    [step] = claim(client, root=run_id, limit=1)
    for i in range(3):
        before = COUNTS.snapshot()
        outcome = report(client, [ok(step)], request(run_id))
        cost = COUNTS.snapshot() - before
        assert cost.commits == 1 and outcome.accepted == 1, cost
        [step] = outcome.claimed
        assert step.step_id == f"s{i + 1}"
    report(client, [ok(step)])
    assert events(client, run_id, "step.completed") == ["s0", "s1", "s2", "s3"]


def layered(width: int) -> Workflow:
    """Two layers: each step of the second needs two neighbours of the first."""
    wf = Workflow(f"layers_{width}")
    first = [wf.step(f"a{i}", noop) for i in range(width)]
    for i in range(width):
        wf.step(f"b{i}", noop, needs=[first[i], first[(i + 1) % width]])
    return wf


def test_a_step_whose_two_dependencies_complete_in_one_batch_is_queued_once(
    client: Client,
) -> None:
    pipelined(client)
    run_id = client.start(layered(2))  # b0 and b1 each need both a0 and a1
    firsts = claim(client, root=run_id, limit=2)
    assert sorted(s.step_id for s in firsts) == ["a0", "a1"]
    outcome = report(client, [ok(s) for s in firsts], request(run_id, limit=5))
    assert outcome.accepted == 2
    assert sorted(s.step_id for s in outcome.claimed) == ["b0", "b1"]
    assert sorted(events(client, run_id, "step.queued")) == ["a0", "a1", "b0", "b1"]
    steps = client.get(run_id).steps
    assert steps["b0"].status is StepStatus.RUNNING and steps["b1"].status is StepStatus.RUNNING


def test_a_layer_of_a_dag_costs_statements_independent_of_its_width(client: Client) -> None:
    """A batch completing a layer releases the next in one statement, however many
    steps each completion releases and however many runs share the batch."""
    pipelined(client)

    def layer_cost(width: int) -> Snapshot:
        run_id = client.start(layered(width))
        firsts = claim(client, root=run_id, limit=width)
        before = COUNTS.snapshot()
        outcome = report(client, [ok(s) for s in firsts], request(run_id, limit=width))
        cost = COUNTS.snapshot() - before
        assert outcome.accepted == width and len(outcome.claimed) == width
        assert sorted(s.step_id for s in outcome.claimed) == sorted(f"b{i}" for i in range(width))
        for s in outcome.claimed:  # b0 .. bN run once each, their dependencies all counted
            assert client.get(run_id).steps[s.step_id].status is StepStatus.RUNNING
        return cost

    layer_cost(3)  # contexts and counters read once
    small, large = layer_cost(3), layer_cost(40)
    assert large.statements == small.statements, (small, large)
    assert large.commits == small.commits == 1, (small, large)


def test_one_attempt_reported_twice_in_a_batch_counts_once(client: Client) -> None:
    pipelined(client)
    run_id = client.start(chain(3))
    [step] = claim(client, root=run_id)
    outcome = report(client, [ok(step), ok(step)], request(run_id))
    assert outcome.accepted == 1 and len(outcome.stale) == 1
    assert [s.step_id for s in outcome.claimed] == ["s1"]
    assert events(client, run_id, "step.completed") == ["s0"]


def test_a_batch_finishing_many_runs_costs_statements_independent_of_their_number(
    client: Client,
) -> None:
    """The last steps of many runs completing in one batch: their runs' rows are taken
    in one statement and the runs finished in one, not a statement per run."""
    pipelined(client)

    def finishing_cost(runs: int) -> Snapshot:
        run_ids = client.start_many(chain(2), [{}] * runs)
        report(client, [ok(s) for s in claim(client, "w1", limit=runs)])
        lasts = claim(client, "w1", limit=runs)
        assert sorted(s.step_id for s in lasts) == ["s1"] * runs
        before = COUNTS.snapshot()
        outcome = report(client, [ok(s) for s in lasts])
        cost = COUNTS.snapshot() - before
        assert outcome.accepted == runs and set(outcome.finished_runs) == set(run_ids)
        assert {client.get(r, with_steps=False).status for r in run_ids} == {RunStatus.COMPLETED}
        return cost

    finishing_cost(2)  # contexts and counters read once
    small, large = finishing_cost(2), finishing_cost(30)
    assert large.statements == small.statements, (small, large)
    assert large.round_trips == small.round_trips and large.commits == small.commits == 1
