"""Claims: batches, priority, leases, one claimer per step, filters."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

from legato import Client, RetryPolicy, RunStatus, StepStatus, Worker, Workflow
from legato.worker.worker import TickResult

from .helpers import by_step, claim, sql
from .tasks import calls, echo, noop, other_queue, registry_for, spans, takes_a_while, urgent


def fan(name: str = "fan", n: int = 5) -> Workflow:
    wf = Workflow(name)
    for i in range(n):
        wf.step(f"s{i}", echo, x=i)
    return wf


def test_batch_claims_up_to_the_limit(client: Client) -> None:
    run_id = client.start(fan(n=5))
    first = claim(client, limit=3)
    assert [s.step_id for s in first] == ["s0", "s1", "s2"]
    second = claim(client, limit=10)
    assert [s.step_id for s in second] == ["s3", "s4"]
    assert claim(client, limit=10) == []
    steps = client.get(run_id).steps
    assert {s.status for s in steps.values()} == {StepStatus.RUNNING}


def test_claimed_step_carries_its_resolved_call_and_policy(client: Client) -> None:
    wf = Workflow("call")
    wf.param("who", "ada")
    wf.step("a", echo, x={"hi": wf.param("who"), "n": [1, 2]}, retry=2, timeout="1m", priority=3)
    run_id = client.start(wf)
    [step] = claim(client)
    assert (step.run_id, step.step_id, step.task) == (run_id, "a", "store_suite.echo")
    assert (step.attempt, step.max_attempts, step.priority, step.timeout) == (1, 3, 3, 60.0)
    assert step.retry == RetryPolicy(max_attempts=3)
    assert step.args == [] and step.kwargs == {"x": {"hi": "ada", "n": [1, 2]}}
    assert step.resolve_error is None
    assert step.label == f"a (run {run_id}, attempt 1)"


def test_each_claimed_step_carries_its_own_stored_policy_and_call(client: Client) -> None:
    """Policies read once are shared only between steps that stored the same one."""
    wf = Workflow("policies")
    wf.step("once", noop)
    wf.step("three", noop, retry=2)
    wf.step("five", noop, retry=4)
    wf.step("three_again", echo, x=1, retry=2)
    for _ in range(2):  # the second run's claims read the policies the first one's read
        run_id = client.start(wf)
        steps = {s.step_id: s for s in claim(client, limit=10, root=run_id)}
        assert {k: s.retry.max_attempts for k, s in steps.items()} == {
            "once": 1,
            "three": 3,
            "five": 5,
            "three_again": 3,
        }
        assert (steps["once"].args, steps["once"].kwargs, steps["once"].resolve_error) == (
            [],
            {},
            None,
        )
        assert steps["three_again"].kwargs == {"x": 1}


def test_claims_follow_priority_then_creation_order(client: Client) -> None:
    wf = Workflow("prio")
    wf.step("low", noop)
    wf.step("high", noop, priority=9)
    wf.step("task_default", urgent)  # the task's priority 7
    wf.step("mid", noop, priority=4)
    wf.step("low2", noop)
    client.start(wf)
    order = [claim(client, limit=1)[0].step_id for _ in range(5)]
    assert order == ["high", "task_default", "mid", "low", "low2"]
    batch_run = client.start(wf)
    batch = claim(client, limit=5, root=batch_run)
    assert [s.step_id for s in batch] == ["high", "task_default", "mid", "low", "low2"]


def test_priority_applies_across_runs(client: Client) -> None:
    wf = Workflow("prio_runs")
    wf.step("a", noop)
    older = client.start(wf)
    wf2 = Workflow("prio_runs_high")
    wf2.step("a", noop, priority=5)
    newer = client.start(wf2)
    assert [s.run_id for s in claim(client, limit=2)] == [newer, older]


def test_a_claimed_step_is_not_claimed_again(client: Client) -> None:
    run_id = client.start(fan(n=3))
    mine = claim(client, "w1", limit=2)
    theirs = claim(client, "w2", limit=10)
    assert [s.step_id for s in mine] == ["s0", "s1"]
    assert [s.step_id for s in theirs] == ["s2"]
    assert claim(client, "w3") == []
    steps = client.get(run_id).steps
    assert {k: s.worker for k, s in steps.items()} == {"s0": "w1", "s1": "w1", "s2": "w2"}


SHARED_STEPS = 24
WORKERS = ("worker-one", "worker-two")


def test_two_workers_share_steps_without_overlap(db_url: str) -> None:
    """Two workers, each on a client of its own, in threads of their own, race for one
    run's steps: every step runs once, both workers run some, at the same time, and the
    database names the worker that really ran each one."""
    key = f"shared-{uuid.uuid4().hex}"
    wf = Workflow("shared")
    keys = {f"s{i}": f"{key}/s{i}" for i in range(SHARED_STEPS)}
    for step_id, step_key in keys.items():
        wf.step(step_id, takes_a_while, key=step_key, seconds=0.05)
    clients = {name: Client(db_url) for name in WORKERS}
    workers = {
        name: Worker(
            clients[name],
            worker_id=name,
            concurrency=2,
            poll_interval=0.05,
            registry=registry_for(name),  # its calls return, and record, this name
        )
        for name in WORKERS
    }
    ticked = {name: threading.Event() for name in WORKERS}
    claimed_by_ticks = dict.fromkeys(WORKERS, 0)
    errors: list[BaseException] = []

    def serve(name: str) -> None:
        def until(tick: TickResult) -> bool:
            claimed_by_ticks[name] += tick.claimed
            ticked[name].set()
            return False  # runs until stopped

        try:
            workers[name].run(until=until)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=serve, args=(n,), name=f"run-{n}", daemon=True) for n in WORKERS
    ]
    try:
        for thread in threads:
            thread.start()
        for name in WORKERS:  # both are in their loops before there is any work
            assert ticked[name].wait(10), f"{name} never ticked"
        with Client(db_url) as starting:
            run_id = starting.start(wf)
            run = starting.wait(run_id, timeout=60, poll_interval=0.01)
            history = starting.history(run_id)
    finally:
        for worker in workers.values():
            worker.stop()
        for thread in threads:
            thread.join(timeout=30)
        for name in WORKERS:
            workers[name].close()
            clients[name].close()
    assert not [t.name for t in threads if t.is_alive()], "a worker did not stop"
    assert errors == []
    assert run.status is RunStatus.COMPLETED, run

    # Every step ran exactly once (the task's own count), as attempt 1, and the
    # worker the database names for it is the one whose call returned.
    for step_id, step in run.steps.items():
        assert calls(keys[step_id]) == 1, step_id
        [(ran_by, _, _)] = spans(keys[step_id])
        assert step.worker == ran_by == step.output, step_id
        assert [(a.number, a.status, a.worker) for a in step.attempts] == [(1, "completed", ran_by)]
    started = [e for e in history if e.type == "step.started"]
    assert sorted(e.step_id or "" for e in started) == sorted(keys)  # once per step
    assert {e.step_id: (e.actor, e.attempt) for e in started} == {
        step_id: (step.worker, 1) for step_id, step in run.steps.items()
    }
    assert Counter(e.step_id for e in history if e.type == "step.completed") == dict.fromkeys(
        keys, 1
    )

    # Both did some of the work, by their own count and by the database's...
    by_worker = Counter(step.worker for step in run.steps.values())
    assert set(by_worker) == set(WORKERS), by_worker
    assert claimed_by_ticks == dict(by_worker)
    # ...and at the same time: some step of one overlapped some step of the other.
    ran = [span for step_key in keys.values() for span in spans(step_key)]
    one = [(start, end) for who, start, end in ran if who == WORKERS[0]]
    two = [(start, end) for who, start, end in ran if who == WORKERS[1]]
    assert any(a0 < b1 and b0 < a1 for a0, a1 in one for b0, b1 in two)


def test_claim_sets_a_lease(client: Client) -> None:
    run_id = client.start(fan(n=1))
    claim(client, "w1", lease=45)
    step = client.get(run_id).steps["s0"]
    assert step.status is StepStatus.RUNNING
    assert (step.worker, step.attempt) == ("w1", 1)
    assert step.started_at is not None and step.finished_at is None
    [(lease,)] = sql(
        client.store, "SELECT lease_expires_at FROM step_runs WHERE run_id = ?", run_id
    )
    expires = lease if isinstance(lease, float) else lease.timestamp()  # SQLite: epoch seconds
    assert abs(expires - step.started_at.timestamp() - 45) < 1e-3


def test_first_claim_starts_the_run_once(client: Client) -> None:
    run_id = client.start(fan(n=2))
    assert client.get(run_id).status is RunStatus.PENDING
    claim(client, limit=1)
    run = client.get(run_id)
    assert run.status is RunStatus.RUNNING and run.started_at is not None
    claim(client, "w2", limit=1)  # another step of the same run, by another worker
    types = [e.type for e in client.history(run_id)]
    assert types.count("run.started") == 1
    assert types == [
        "run.created",
        "step.queued",
        "step.queued",
        "run.started",
        "step.started",
        "step.started",
    ]


def test_first_claim_by_a_second_client_starts_the_run_once(client: Client) -> None:
    run_id = client.start(fan(n=2))
    with Client(client.url) as other:
        claim(client, limit=1)
        claim(other, "w2", limit=1)
    assert [e.type for e in client.history(run_id)].count("run.started") == 1


def test_claims_filter_by_queue(client: Client) -> None:
    wf = Workflow("queues")
    wf.step("d", noop)
    wf.step("o", other_queue)
    wf.step("moved", noop, queue="other")
    client.start(wf)
    assert [s.step_id for s in claim(client, queues=["nowhere"])] == []
    assert [s.step_id for s in claim(client, queues=["other"])] == ["o", "moved"]
    assert [s.step_id for s in claim(client, queues=["default", "other"])] == ["d"]


def test_claims_filter_by_task(client: Client) -> None:
    wf = Workflow("by_task")
    wf.step("e", echo, x=1)
    wf.step("n", noop)
    client.start(wf)
    assert [s.step_id for s in claim(client, tasks=["store_suite.noop"])] == ["n"]
    assert claim(client, tasks=["store_suite.noop"]) == []
    assert [s.step_id for s in claim(client, tasks=["store_suite.echo"])] == ["e"]


def test_claims_filter_by_root_run(client: Client) -> None:
    first = client.start(fan(n=2))
    second = client.start(fan(n=2))
    claimed = claim(client, root=second)
    assert {s.run_id for s in claimed} == {second}
    assert len(claimed) == 2
    assert client.get(first).status is RunStatus.PENDING
    assert {s.run_id for s in claim(client)} == {first}


def test_nothing_to_claim(client: Client) -> None:
    client.start(fan(n=2))
    assert claim(client, limit=0) == []
    assert claim(client, tasks=[]) == []
    assert claim(client, queues=[]) == []
    assert len(claim(client)) == 2


def test_waiting_steps_are_not_claimed(client: Client) -> None:
    wf = Workflow("chain")
    a = wf.step("a", echo, x=1)
    wf.step("b", echo, x=a.output)
    client.start(wf)
    assert [s.step_id for s in by_step(claim(client)).values()] == ["a"]
    assert claim(client) == []
