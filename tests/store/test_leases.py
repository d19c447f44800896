"""Leases: expiry counts as a failed attempt, the late result is stale, heartbeats extend."""

from __future__ import annotations

from legato import Client, RunStatus, StepStatus, Workflow
from legato.store.base import ClaimRequest

from .helpers import claim, ok, report
from .tasks import echo, noop


def one_step(retries: int) -> Workflow:
    wf = Workflow("leased")
    wf.step("a", echo, x=1, retry={"max_attempts": retries + 1, "delay": 0})
    wf.step("b", noop)  # a second root, so a failed run has something to cancel
    return wf


def _sweep_request(worker: str, *, limit: int = 10, sweep_limit: int = 100) -> ClaimRequest:
    return ClaimRequest(
        worker_id=worker,
        queues=("default",),
        tasks=("store_suite.echo",),
        limit=limit,
        lease=30,
        sweep=True,
        sweep_limit=sweep_limit,
    )


def test_expired_lease_is_retried_and_the_old_result_is_stale(client: Client) -> None:
    run_id = client.start(one_step(retries=1))
    [old] = claim(client, "w1", lease=5, tasks=["store_suite.echo"])
    assert claim(client, "w2", sweep=True, tasks=["store_suite.echo"]) == []  # not expired yet
    client.store.clock.advance(6)
    outcome = report(client, [], _sweep_request("w2"))
    assert outcome.reclaimed == 1
    [new] = outcome.claimed  # the retry (no backoff) is claimed in the same transaction
    assert (new.step_id, new.attempt) == ("a", 2)
    step = client.get(run_id).steps["a"]
    assert step.status is StepStatus.RUNNING and step.worker == "w2"
    [first] = step.attempts[:1]
    assert (first.number, first.status, first.worker) == (1, "failed", "w1")
    assert first.error is not None and first.error.type == "LeaseExpired"
    assert "worker w1 stopped renewing its lease" in first.error.message
    retrying = [e for e in client.history(run_id) if e.type == "step.retrying"]
    assert [(e.actor, e.attempt) for e in retrying] == [("lease-sweeper", 1)]
    # the old worker comes back: its result is refused
    late = ok(old, "from w1")
    assert report(client, [late]).stale == [late]
    assert client.get(run_id).steps["a"].status is StepStatus.RUNNING
    assert report(client, [ok(new, "from w2")]).accepted == 1
    assert client.get(run_id).steps["a"].output == "from w2"


def test_expired_lease_on_the_last_attempt_fails_the_run(client: Client) -> None:
    run_id = client.start(one_step(retries=0))
    [old] = claim(client, "w1", lease=5, tasks=["store_suite.echo"])
    client.store.clock.advance(60)
    outcome = report(client, [], _sweep_request("w2"))
    assert outcome.reclaimed == 1 and outcome.claimed == []
    assert outcome.finished_runs == {run_id: RunStatus.FAILED}
    run = client.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.type, run.error.step) == ("LeaseExpired", "a")
    assert run.steps["a"].status is StepStatus.FAILED
    assert run.steps["b"].status is StepStatus.CANCELLED
    late = ok(old, "too late")
    assert report(client, [late]).stale == [late]
    assert client.get(run_id).steps["a"].output is None


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
        assert client.store.extend_leases("w1", held, 5) == 2
        assert report(client, [], _sweep_request("w2")).reclaimed == 0
    assert client.store.extend_leases("nobody", held, 5) == 0
    assert client.store.extend_leases("w1", [], 5) == 0
    assert client.get(run_id).steps["a"].attempt == 1
    clock.advance(6)
    assert report(client, [], _sweep_request("w2")).reclaimed == 2


def test_extend_leases_ignores_finished_steps(client: Client) -> None:
    client.start(one_step(retries=0))
    [a] = claim(client, "w1", lease=5, tasks=["store_suite.echo"])
    report(client, [ok(a, 1)])
    assert client.store.extend_leases("w1", [a.step_run_id], 5) == 0


def test_extend_leases_renews_only_the_steps_named(client: Client) -> None:
    client.start(one_step(retries=0))
    [a] = claim(client, "w1", lease=5, tasks=["store_suite.echo"])
    [b] = claim(client, "w1", lease=5, tasks=["store_suite.noop"])
    client.store.clock.advance(4)
    assert client.store.extend_leases("w1", [a.step_run_id], 5) == 1
    client.store.clock.advance(3)  # b's lease (5 s) has lapsed; a's was renewed to 9 s
    outcome = report(client, [], _sweep_request("w2"))
    assert outcome.reclaimed == 1
    lost = client.get(b.run_id).steps["b"].attempts[0].error
    assert lost is not None and lost.type == "LeaseExpired"


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
