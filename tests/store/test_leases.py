"""Leases: expiry is a lost attempt with a budget of its own; late results are stale."""

from __future__ import annotations

from legato import Client, RunStatus, StepStatus, Workflow
from legato.store.base import ClaimRequest

from .helpers import by_step, claim, failed, ok, report
from .tasks import echo, fail, fragile, noop


def one_step(retries: int, lost: int | None = None) -> Workflow:
    wf = Workflow("leased")
    wf.step(
        "a",
        echo,
        x=1,
        retry={"max_attempts": retries + 1, "delay": 0},
        max_lost_attempts=lost,
    )
    wf.step("b", noop)  # a second root, so a failed run has something to cancel
    return wf


def _sweep_request(worker: str, *, limit: int = 10, sweep_limit: int = 100) -> ClaimRequest:
    return ClaimRequest(
        worker_id=worker,
        queues=("default",),
        tasks=("store_suite.echo", "store_suite.fragile"),
        limit=limit,
        lease=30,
        sweep=True,
        sweep_limit=sweep_limit,
    )


def test_an_expired_lease_runs_the_step_again_without_spending_retries(client: Client) -> None:
    run_id = client.start(one_step(retries=0))  # no retries at all: a loss must not fail it
    [old] = claim(client, "w1", lease=5, tasks=["store_suite.echo"])
    assert claim(client, "w2", sweep=True, tasks=["store_suite.echo"]) == []  # not expired yet
    client.store.clock.advance(6)
    outcome = report(client, [], _sweep_request("w2"))
    assert outcome.reclaimed == 1
    [new] = outcome.claimed  # queued again at once and claimed in the same transaction
    assert (new.step_id, new.attempt) == ("a", 2)
    [lost] = outcome.failures
    assert (lost.step_id, lost.attempt, lost.lost, lost.retry_in) == ("a", 1, True, 0.0)
    step = client.get(run_id).steps["a"]
    assert step.status is StepStatus.RUNNING and step.worker == "w2"
    assert (step.failures, step.lost, step.max_lost_attempts) == (0, 1, 3)
    [first] = step.attempts[:1]
    assert (first.number, first.status, first.worker) == (1, "lost", "w1")
    assert first.error is not None and first.error.type == "LeaseExpired"
    assert "worker w1 stopped renewing its lease" in first.error.message
    assert "lost attempt 1 of 3 allowed" in first.error.message
    history = client.history(run_id)
    assert [(e.actor, e.attempt) for e in history if e.type == "step.lost"] == [
        ("lease-sweeper", 1)
    ]
    assert not [e for e in history if e.type == "step.retrying"]
    # the old worker comes back: its result is refused
    late = ok(old, "from w1")
    assert report(client, [late]).stale == [late]
    assert client.get(run_id).steps["a"].status is StepStatus.RUNNING
    assert report(client, [ok(new, "from w2")]).accepted == 1
    assert client.get(run_id).steps["a"].output == "from w2"


def test_a_step_whose_worker_is_lost_every_time_fails_after_its_budget(
    client: Client,
) -> None:
    run_id = client.start(one_step(retries=5, lost=2))  # retries are not what it spends
    claim(client, "w1", lease=5, tasks=["store_suite.echo"])
    client.store.clock.advance(6)
    outcome = report(client, [], _sweep_request("w2"))
    [second] = outcome.claimed
    assert second.attempt == 2 and outcome.finished_runs == {}
    client.store.clock.advance(60)  # w2 is lost too
    outcome = report(client, [], _sweep_request("w3"))
    assert outcome.reclaimed == 1 and outcome.claimed == []
    assert outcome.finished_runs == {run_id: RunStatus.FAILED}
    run = client.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.type, run.error.step) == ("LeaseExpired", "a")
    assert "its worker was lost 2 times" in run.error.message
    assert "max_lost_attempts=2" in run.error.message
    step = run.steps["a"]
    assert (step.status, step.failures, step.lost) == (StepStatus.FAILED, 0, 2)
    assert [(a.number, a.status, a.worker) for a in step.attempts] == [
        (1, "lost", "w1"),
        (2, "lost", "w2"),
    ]
    assert run.steps["b"].status is StepStatus.CANCELLED


def test_the_lost_budget_comes_from_the_task_unless_the_step_sets_it(client: Client) -> None:
    wf = Workflow("budgets")
    wf.step("task_default", echo, x=1)
    wf.step("own", echo, x=2, max_lost_attempts=7)
    wf.step("fragile", fragile)  # @task(max_lost_attempts=1)
    run_id = client.start(wf)
    steps = client.get(run_id).steps
    assert {k: s.max_lost_attempts for k, s in steps.items()} == {
        "task_default": 3,
        "own": 7,
        "fragile": 1,
    }
    [step] = claim(client, "w1", lease=5, tasks=["store_suite.fragile"])
    client.store.clock.advance(6)
    outcome = report(client, [], _sweep_request("w2"))
    assert outcome.finished_runs == {run_id: RunStatus.FAILED}
    error = client.get(run_id).error
    assert error is not None and "its worker was lost once" in error.message
    del step


def test_a_lost_attempt_of_a_finished_run_is_not_run_again(client: Client) -> None:
    wf = Workflow("outlived")
    wf.step("slow", echo, x=1)
    wf.step("bad", fail)
    run_id = client.start(wf)
    steps = by_step(claim(client, "w1", lease=5))
    report(client, [failed(steps["bad"])])  # fails the run; "slow" is still running
    assert client.get(run_id).status is RunStatus.FAILED
    client.store.clock.advance(6)
    outcome = report(client, [], _sweep_request("w2"))
    assert outcome.reclaimed == 1 and outcome.claimed == []
    slow = client.get(run_id).steps["slow"]
    assert slow.status is StepStatus.CANCELLED
    assert slow.error is not None and "after its run had finished" in slow.error.message
    assert [(a.number, a.status) for a in slow.attempts] == [(1, "lost")]


def test_sweep_only_when_asked(client: Client) -> None:
    run_id = client.start(one_step(retries=1))
    claim(client, "w1", lease=5, tasks=["store_suite.echo"])
    client.store.clock.advance(10)
    assert claim(client, "w2", tasks=["store_suite.echo"], sweep=False) == []
    assert client.get(run_id).steps["a"].status is StepStatus.RUNNING


def test_extend_leases_keeps_a_lease_alive(client: Client) -> None:
    run_id = client.start(one_step(retries=1))
    [a] = claim(client, "w1", lease=5, tasks=["store_suite.echo"])
    [b] = claim(client, "w1", lease=5, tasks=["store_suite.noop"])
    held = [a.step_run_id, b.step_run_id]
    clock = client.store.clock
    for _ in range(4):  # 16 seconds in all, far past the first lease
        clock.advance(4)
        assert client.store.extend_leases("w1", held, 5).renewed == 2
        assert report(client, [], _sweep_request("w2")).reclaimed == 0
    assert client.store.extend_leases("nobody", held, 5).renewed == 0
    assert client.store.extend_leases("w1", [], 5).renewed == 0
    assert client.get(run_id).steps["a"].attempt == 1
    clock.advance(6)
    assert report(client, [], _sweep_request("w2")).reclaimed == 2


def test_extend_leases_ignores_finished_steps(client: Client) -> None:
    client.start(one_step(retries=0))
    [a] = claim(client, "w1", lease=5, tasks=["store_suite.echo"])
    report(client, [ok(a, 1)])
    assert client.store.extend_leases("w1", [a.step_run_id], 5).renewed == 0


def test_extend_leases_renews_only_the_steps_named(client: Client) -> None:
    client.start(one_step(retries=0))
    [a] = claim(client, "w1", lease=5, tasks=["store_suite.echo"])
    [b] = claim(client, "w1", lease=5, tasks=["store_suite.noop"])
    client.store.clock.advance(4)
    assert client.store.extend_leases("w1", [a.step_run_id], 5).renewed == 1
    client.store.clock.advance(3)  # b's lease (5 s) has lapsed; a's was renewed to 9 s
    outcome = report(client, [], _sweep_request("w2"))
    assert outcome.reclaimed == 1
    lost = client.get(b.run_id).steps["b"].attempts[0]
    assert lost.status == "lost"
    assert lost.error is not None and lost.error.type == "LeaseExpired"


def test_sweep_is_bounded(client: Client) -> None:
    wf = Workflow("many_leases")
    for i in range(5):
        wf.step(f"s{i}", echo, x=i, retry={"max_attempts": 2, "delay": 0})
    client.start(wf)
    claim(client, "w1", lease=1)
    client.store.clock.advance(5)
    request = _sweep_request("w2", limit=0, sweep_limit=2)
    assert report(client, [], request).reclaimed == 2
    assert report(client, [], request).reclaimed == 2
    assert report(client, [], request).reclaimed == 1
    assert report(client, [], request).reclaimed == 0
