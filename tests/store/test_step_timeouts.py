"""Schedule-to-start and heartbeat timeouts, enforced by the sweep in the database.

Time moves by the store's clock; the sweeping worker serves another queue
and other tasks, as when no worker serves a step at all.
"""

from __future__ import annotations

from legato import Client, RunStatus, StepStatus, Workflow
from legato.store.base import ClaimRequest, ProgressReport, ReportOutcome

from .helpers import claim, ok, report
from .tasks import beating, echo, noop


def _sweep(client: Client, worker: str = "sweeper") -> ReportOutcome:
    """A sweep by a worker that serves neither the steps' queue nor their tasks."""
    return report(
        client,
        [],
        ClaimRequest(
            worker_id=worker,
            queues=("other",),
            tasks=("store_suite.other_queue",),
            limit=4,
            lease=30,
            sweep=True,
        ),
    )


def unclaimed(retries: int = 1, timeout: float = 30) -> Workflow:
    wf = Workflow("unclaimed")
    wf.step(
        "a",
        echo,
        x=1,
        schedule_to_start_timeout=timeout,
        retry={"max_attempts": retries + 1, "delay": 0},
    )
    return wf


def test_a_step_no_worker_claims_times_out_in_the_queue_retries_then_fails(
    client: Client,
) -> None:
    run_id = client.start(unclaimed(retries=1))
    client.store.clock.advance(29)
    assert _sweep(client).failures == []
    client.store.clock.advance(2)
    [first] = _sweep(client).failures
    assert (first.step_id, first.attempt, first.retry_in) == ("a", 1, 0.0)
    assert first.error.type == "ScheduleToStartTimeout"
    assert "queued for 31s without a worker claiming it" in first.error.message
    step = client.get(run_id).steps["a"]
    assert step.status is StepStatus.QUEUED and (step.attempt, step.failures) == (1, 1)
    client.store.clock.advance(29)  # the retry waits its own 30s from now
    assert _sweep(client).failures == []
    client.store.clock.advance(2)
    [second] = _sweep(client).failures
    assert (second.attempt, second.retry_in) == (2, None)
    run = client.get(run_id)
    assert run.status is RunStatus.FAILED
    step = run.steps["a"]
    assert step.status is StepStatus.FAILED and (step.attempt, step.failures) == (2, 2)
    assert [(a.number, a.status, a.worker, a.started_at) for a in step.attempts] == [
        (1, "failed", None, None),
        (2, "failed", None, None),
    ]
    assert step.error is not None and step.error.type == "ScheduleToStartTimeout"
    history = client.history(run_id)
    events = [(e.type, e.actor, e.attempt) for e in history if e.actor == "timeout-sweeper"]
    assert events == [
        ("step.retrying", "timeout-sweeper", 1),
        ("step.failed", "timeout-sweeper", 2),
    ]


def test_a_step_claimed_in_time_does_not_time_out(client: Client) -> None:
    run_id = client.start(unclaimed(retries=0))
    client.store.clock.advance(20)
    [step] = claim(client, "w1", lease=300, tasks=["store_suite.echo"])
    client.store.clock.advance(60)
    assert _sweep(client).failures == []
    assert report(client, [ok(step, "done")]).accepted == 1
    assert client.get(run_id).status is RunStatus.COMPLETED


def test_a_paused_run_s_wait_does_not_count(client: Client) -> None:
    run_id = client.start(unclaimed(retries=0))
    client.store.clock.advance(10)
    client.pause(run_id)
    client.store.clock.advance(600)
    assert _sweep(client).failures == []
    client.resume(run_id)
    client.store.clock.advance(29)  # queued again since it resumed
    assert _sweep(client).failures == []
    client.store.clock.advance(2)
    [failure] = _sweep(client).failures
    assert failure.error.type == "ScheduleToStartTimeout" and failure.retry_in is None
    assert client.get(run_id).status is RunStatus.FAILED


def test_a_step_without_the_timeout_waits_as_long_as_it_takes(client: Client) -> None:
    wf = Workflow("patient")
    wf.step("a", echo, x=1)
    run_id = client.start(wf)
    client.store.clock.advance(86_400)
    assert _sweep(client).failures == []
    assert client.get(run_id).steps["a"].status is StepStatus.QUEUED


def beats() -> Workflow:
    wf = Workflow("beats")
    wf.step("a", beating)  # heartbeat_timeout 10s, one retry
    wf.step("b", noop, needs=["a"])
    return wf


def _beat(client: Client, worker: str, step_run_id: int, *, task_spoke: bool) -> None:
    """The worker's heartbeat: renews the lease, carrying the task's report if it made one."""
    progress = {step_run_id: ProgressReport(None, '"tick"')} if task_spoke else None
    renewal = client.store.extend_leases(worker, [step_run_id], 300, progress=progress)
    assert renewal.renewed == 1


def test_a_silent_task_fails_its_attempt_though_its_worker_renews_the_lease(
    client: Client,
) -> None:
    run_id = client.start(beats())
    [step] = claim(client, "w1", lease=300, tasks=["store_suite.beating"])
    assert step.heartbeat_timeout == 10
    client.store.clock.advance(8)
    _beat(client, "w1", step.step_run_id, task_spoke=True)
    client.store.clock.advance(8)  # 16s since the claim, 8s since the task spoke
    assert _sweep(client).failures == []
    client.store.clock.advance(3)
    _beat(client, "w1", step.step_run_id, task_spoke=False)  # the lease alone is renewed
    [failure] = _sweep(client).failures
    assert failure.error.type == "HeartbeatTimeout" and failure.retry_in == 0.0
    assert "sent no heartbeat for 11s" in failure.error.message
    assert "heartbeat_timeout of 10s (worker w1 held it)" in failure.error.message
    # the wedged attempt's late result is refused; the retry runs elsewhere
    late = ok(step, "late")
    assert report(client, [late]).stale == [late]
    [again] = claim(client, "w2", lease=300, tasks=["store_suite.beating"])
    assert again.attempt == 2
    assert report(client, [ok(again, "alive")]).accepted == 1
    a = client.get(run_id).steps["a"]
    assert a.status is StepStatus.COMPLETED and a.failures == 1
    assert [(x.number, x.status) for x in a.attempts] == [(1, "failed"), (2, "completed")]
    [first] = a.attempts[:1]
    assert first.error is not None and first.error.type == "HeartbeatTimeout"


def test_a_task_that_keeps_heartbeating_runs_on(client: Client) -> None:
    run_id = client.start(beats())
    [step] = claim(client, "w1", lease=300, tasks=["store_suite.beating"])
    for _ in range(6):
        client.store.clock.advance(7)
        _beat(client, "w1", step.step_run_id, task_spoke=True)
        assert _sweep(client).failures == []
    assert client.get(run_id).steps["a"].status is StepStatus.RUNNING


def test_a_silent_task_out_of_retries_fails_its_step(client: Client) -> None:
    wf = Workflow("beats_once")
    wf.step("a", beating, retry=0)
    run_id = client.start(wf)
    claim(client, "w1", lease=300, tasks=["store_suite.beating"])
    client.store.clock.advance(11)
    [failure] = _sweep(client).failures
    assert failure.retry_in is None
    run = client.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.steps["a"].error is not None
    assert run.steps["a"].error.type == "HeartbeatTimeout"
