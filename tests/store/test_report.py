"""Reporting results: completion, successors, fencing, retries and failure."""

from __future__ import annotations

import uuid

import pytest

from legato import Client, RunStatus, StepStatus, Worker, Workflow
from legato.store.base import ClaimRequest

from .helpers import ALL_TASKS, by_step, claim, drive, failed, ok, report
from .tasks import add, calls, echo, fail, fail_retried, fails_first_call, noop


def diamond() -> Workflow:
    wf = Workflow("diamond")
    a = wf.step("a", echo, x=wf.param("x"))
    b = wf.step("b", echo, x=a.output)
    c = wf.step("c", noop, needs=[a])
    d = wf.step("d", add, a=b.output, b=wf.param("x"), needs=[c])
    wf.outputs(total=d.output, first=a.output)
    return wf


def statuses(client: Client, run_id: str) -> dict[str, str]:
    return {k: s.status.value for k, s in client.get(run_id).steps.items()}


def test_completion_records_output_and_inputs_and_releases_successors(client: Client) -> None:
    run_id = client.start(diamond(), {"x": 5})
    [a] = claim(client)
    assert a.kwargs == {"x": 5}
    outcome = report(client, [ok(a, 5)])
    assert (outcome.accepted, outcome.stale, outcome.finished_runs) == (1, [], {})
    step = client.get(run_id).steps["a"]
    assert step.status is StepStatus.COMPLETED
    assert (step.output, step.inputs, step.args) == (5, {"x": 5}, [])
    assert step.started_at is not None and step.finished_at is not None
    assert step.finished_at >= step.started_at
    assert step.error is None
    assert statuses(client, run_id) == {
        "a": "completed",
        "b": "queued",
        "c": "queued",
        "d": "waiting",
    }
    run = client.get(run_id, with_steps=False)
    assert run.steps_done == 1 and run.status is RunStatus.RUNNING


def test_fan_in_is_queued_only_when_its_last_dependency_completes(client: Client) -> None:
    run_id = client.start(diamond(), {"x": 5})
    report(client, [ok(claim(client)[0], 5)])
    steps = by_step(claim(client))
    assert set(steps) == {"b", "c"}
    assert steps["b"].kwargs == {"x": 5}
    report(client, [ok(steps["b"], 5)])
    assert statuses(client, run_id)["d"] == "waiting"
    assert claim(client) == []
    report(client, [ok(steps["c"], None)])
    assert statuses(client, run_id)["d"] == "queued"
    [d] = claim(client)
    assert d.kwargs == {"a": 5, "b": 5}


def test_last_step_completes_the_run_with_outputs(client: Client) -> None:
    run_id = client.start(diamond(), {"x": 5})
    report(client, [ok(claim(client)[0], 5)])
    report(client, [ok(s, s.kwargs.get("x")) for s in claim(client)])
    [d] = claim(client)
    outcome = report(client, [ok(d, 10)])
    assert outcome.finished_runs == {run_id: RunStatus.COMPLETED}
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"total": 10, "first": 5}
    assert (run.steps_done, run.steps_total) == (4, 4)
    assert run.started_at is not None and run.finished_at is not None
    assert run.finished_at >= run.started_at
    assert run.error is None
    types = [(e.type, e.step_id) for e in client.history(run_id)]
    assert types == [
        ("run.created", None),
        ("step.queued", "a"),
        ("run.started", None),
        ("step.started", "a"),
        ("step.completed", "a"),
        ("step.queued", "b"),
        ("step.queued", "c"),
        ("step.started", "b"),
        ("step.started", "c"),
        ("step.completed", "b"),
        ("step.completed", "c"),
        ("step.queued", "d"),
        ("step.started", "d"),
        ("step.completed", "d"),
        ("run.completed", None),
    ]
    events = client.history(run_id)
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert all(e.at.tzinfo is not None for e in events)
    assert [e.at for e in events] == sorted(e.at for e in events)


def test_report_and_claim_in_one_call(client: Client) -> None:
    run_id = client.start(diamond(), {"x": 1})
    [a] = claim(client)
    outcome = report(
        client,
        [ok(a, 1)],
        ClaimRequest(worker_id="w1", queues=("default",), tasks=ALL_TASKS, limit=5, lease=30),
    )
    assert outcome.accepted == 1
    assert sorted(s.step_id for s in outcome.claimed) == ["b", "c"]
    assert statuses(client, run_id) == {
        "a": "completed",
        "b": "running",
        "c": "running",
        "d": "waiting",
    }


def test_stale_result_is_refused_and_changes_nothing(client: Client) -> None:
    run_id = client.start(diamond(), {"x": 1})
    [a] = claim(client)
    before = client.get(run_id)
    events_before = client.history(run_id)
    wrong = ok(a, 99, attempt=a.attempt + 1)
    outcome = report(client, [wrong])
    assert outcome.accepted == 0 and outcome.stale == [wrong]
    wrong_failure = failed(a, attempt=a.attempt + 1)
    assert report(client, [wrong_failure]).stale == [wrong_failure]
    assert client.get(run_id) == before
    assert client.history(run_id) == events_before
    # the right attempt is still accepted, once
    assert report(client, [ok(a, 1)]).accepted == 1
    again = ok(a, 2)
    assert report(client, [again]).stale == [again]
    assert client.get(run_id).steps["a"].output == 1


def test_failure_with_attempts_left_is_retried_after_its_backoff(client: Client) -> None:
    wf = Workflow("retrying")
    wf.step("a", fail_retried, key="unused")  # 3 attempts, fixed 30s, no jitter
    run_id = client.start(wf)
    [first] = claim(client)
    outcome = report(client, [failed(first, "first failure", type_="ConnectionError")])
    assert outcome.accepted == 1 and outcome.finished_runs == {}
    assert outcome.next_retry_in == 30.0  # the reporting worker wakes for it
    step = client.get(run_id).steps["a"]
    assert step.status is StepStatus.QUEUED
    assert step.attempt == 1
    assert step.error is not None and step.error.message == "first failure"
    assert [(a.number, a.status, a.worker) for a in step.attempts] == [(1, "failed", "w1")]
    assert step.attempts[0].error is not None
    assert step.attempts[0].error.type == "ConnectionError"
    assert step.attempts[0].started_at is not None and step.attempts[0].finished_at is not None
    retrying = [e for e in client.history(run_id) if e.type == "step.retrying"]
    assert len(retrying) == 1
    assert retrying[0].details is not None and retrying[0].details["retry_in"] == 30.0
    assert retrying[0].attempt == 1
    # not claimable until the clock passes the backoff
    assert claim(client) == []
    client.store.clock.advance(29)
    assert claim(client) == []
    client.store.clock.advance(2)
    [second] = claim(client, "w2")
    assert second.attempt == 2 and second.kwargs == first.kwargs
    report(client, [ok(second, "fine")])
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    step = run.steps["a"]
    assert [(a.number, a.status, a.worker) for a in step.attempts] == [
        (1, "failed", "w1"),
        (2, "completed", "w2"),
    ]
    assert step.error is None and step.output == "fine"


def test_last_failure_fails_the_run_and_cancels_what_has_not_started(client: Client) -> None:
    wf = Workflow("failing")
    a = wf.step("a", noop)
    b = wf.step("b", noop)
    wf.step("after_a", noop, needs=[a])
    wf.step("after_b", noop, needs=[b])
    wf.step("queued_root", noop)
    run_id = client.start(wf)
    steps = by_step(claim(client, limit=2))
    assert set(steps) == {"a", "b"}
    outcome = report(client, [failed(steps["a"], "it broke")])
    assert outcome.finished_runs == {run_id: RunStatus.FAILED}
    run = client.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.type, run.error.message, run.error.step) == ("ValueError", "it broke", "a")
    assert run.error.traceback == "Traceback: here"
    assert run.finished_at is not None
    assert statuses(client, run_id) == {
        "a": "failed",
        "b": "running",
        "after_a": "cancelled",
        "after_b": "cancelled",
        "queued_root": "cancelled",
    }
    assert claim(client) == []
    # a step already running may still complete; the run stays failed
    late = report(client, [ok(steps["b"], "late")])
    assert late.accepted == 1 and late.finished_runs == {}
    run = client.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.steps["b"].status is StepStatus.COMPLETED and run.steps["b"].output == "late"
    assert statuses(client, run_id)["after_b"] == "cancelled"
    assert run.error is not None and run.error.step == "a"
    history = [(e.type, e.step_id) for e in client.history(run_id)]
    assert history.count(("run.failed", None)) == 1
    assert history[-1] == ("step.completed", "b")
    cancelled = {s for t, s in history if t == "step.cancelled"}
    assert cancelled == {"after_a", "after_b", "queued_root"}
    failed_event = next(e for e in client.history(run_id) if e.type == "run.failed")
    assert failed_event.details == {"error": run.error.to_json()}


def test_a_failure_that_is_not_retryable_fails_at_once(client: Client) -> None:
    wf = Workflow("not_retryable")
    wf.step("a", fail_retried, key="x")
    run_id = client.start(wf)
    [a] = claim(client)
    report(client, [failed(a, retryable=False)])
    run = client.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.steps["a"].attempt == 1


def test_a_late_failure_after_the_run_failed_changes_nothing_more(client: Client) -> None:
    wf = Workflow("two_failures")
    wf.step("a", noop)
    wf.step("b", noop)
    run_id = client.start(wf)
    steps = by_step(claim(client))
    report(client, [failed(steps["a"], "first")])
    outcome = report(client, [failed(steps["b"], "second")])
    assert outcome.accepted == 1 and outcome.finished_runs == {}
    run = client.get(run_id)
    assert run.error is not None and run.error.message == "first"
    assert run.steps["b"].status is StepStatus.FAILED


def test_a_step_of_a_failed_run_is_not_retried(client: Client) -> None:
    wf = Workflow("no_retry_after_failure")
    wf.step("a", noop)
    wf.step("b", echo, x=1, retry={"max_attempts": 3, "delay": 0})
    run_id = client.start(wf)
    steps = by_step(claim(client))
    report(client, [failed(steps["a"], "first")])
    outcome = report(client, [failed(steps["b"], "second, with attempts left")])
    assert outcome.accepted == 1
    run = client.get(run_id)
    assert run.steps["b"].status is StepStatus.FAILED
    assert run.steps["b"].attempt == 1
    assert claim(client) == []
    assert run.error is not None and run.error.step == "a"
    assert [e.type for e in client.history(run_id)].count("step.retrying") == 0


def test_results_for_several_runs_in_one_report(client: Client) -> None:
    wf = Workflow("single")
    wf.step("a", echo, x=1)
    first, second = client.start(wf), client.start(wf)
    claimed = claim(client)
    outcome = report(client, [ok(s, s.run_id) for s in claimed])
    assert outcome.accepted == 2
    assert outcome.finished_runs == {first: RunStatus.COMPLETED, second: RunStatus.COMPLETED}
    assert client.get(first).outputs == {}
    assert client.get(second).steps["a"].output == second


def test_input_that_cannot_be_resolved_fails_the_step(client: Client) -> None:
    wf = Workflow("unresolvable")
    a = wf.step("a", echo, x=1)
    wf.step(
        "b",
        add,
        a=a.output["present"],
        b=a.output["missing"],
        retry={"max_attempts": 3, "delay": 0},
    )
    run_id = client.start(wf)
    report(client, [ok(claim(client)[0], {"present": 1})])
    worker = Worker(client, worker_id="resolver")
    try:
        run = drive(client, run_id, worker)
    finally:
        worker.close()
    # The worker fails such an attempt without running it, and without retrying.
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.type == "TemplateError"
    assert run.error.step == "b" and "missing" in run.error.message
    assert run.error.message.startswith("step 'b' inputs cannot be resolved: input 'b': ")
    step = run.steps["b"]
    assert [(x.number, x.status) for x in step.attempts] == [(1, "failed")]
    # What resolved is on record beside what did not, for a later retry to start from.
    assert step.inputs == {"a": 1}
    assert list(step.input_errors) == ["b"] and "missing" in step.input_errors["b"]
    assert step.failures == 1


def test_a_claim_resolves_each_input_on_its_own(client: Client) -> None:
    wf = Workflow("partly")
    a = wf.step("a", echo, x=1)
    wf.step("b", add, a=a.output["present"], b=a.output["missing"])
    client.start(wf)
    report(client, [ok(claim(client)[0], {"present": 1})])
    [b] = claim(client, lease=5)
    assert b.resolve_error is not None and b.resolve_error.type == "TemplateError"
    assert (b.args, b.kwargs, list(b.input_errors)) == ([], {"a": 1}, ["b"])


def test_output_expression_failing_fails_the_run(client: Client) -> None:
    wf = Workflow("bad_outputs")
    a = wf.step("a", echo, x=1)
    wf.outputs(value=a.output["nope"])
    run_id = client.start(wf)
    outcome = report(client, [ok(claim(client)[0], {"yes": 1})])
    assert outcome.finished_runs == {run_id: RunStatus.FAILED}
    run = client.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.type == "TemplateError"
    assert "nope" in run.error.message
    assert run.steps["a"].status is StepStatus.COMPLETED


@pytest.mark.parametrize("retries", [0, 1])
def test_worker_retries_then_fails(client: Client, retries: int) -> None:
    wf = Workflow("worker_fail")
    wf.step("a", fail, message="nope", retry={"max_attempts": retries + 1, "delay": 0})
    run_id = client.start(wf)
    worker = Worker(client, worker_id="wf")
    try:
        run = drive(client, run_id, worker, timeout=30)
    finally:
        worker.close()
    assert run.status is RunStatus.FAILED
    step = run.steps["a"]
    assert step.attempt == retries + 1
    assert [a.status for a in step.attempts] == ["failed"] * (retries + 1)
    assert run.error is not None
    assert (run.error.type, run.error.message, run.error.step) == ("ValueError", "nope", "a")
    assert run.error.traceback is not None and "ValueError: nope" in run.error.traceback


def test_worker_runs_a_retried_step_to_completion(client: Client) -> None:
    """The first attempt fails for sure; the worker retries it and the second completes."""
    key = f"retried-{uuid.uuid4().hex}"
    wf = Workflow("once")
    wf.step("a", fails_first_call, key=key)  # one retry, no delay
    run_id = client.start(wf)
    worker = Worker(client, worker_id="w")
    try:
        run = drive(client, run_id, worker)
    finally:
        worker.close()
    assert run.status is RunStatus.COMPLETED, run
    assert calls(key) == 2  # the task really ran twice
    step = run.steps["a"]
    assert step.output == "succeeded on call 2"
    assert (step.attempt, step.max_attempts, step.failures, step.lost) == (2, 2, 1, 0)
    assert step.error is None  # the retry's success clears the step's error
    assert [(a.number, a.status, a.worker) for a in step.attempts] == [
        (1, "failed", "w"),
        (2, "completed", "w"),
    ]
    first, second = step.attempts
    assert first.error is not None
    assert (first.error.type, first.error.message) == ("ConnectionError", "the first call fails")
    assert first.error.traceback is not None
    assert "ConnectionError: the first call fails" in first.error.traceback
    assert second.error is None
    history = client.history(run_id)
    assert [(e.type, e.attempt) for e in history if e.step_id == "a"] == [
        ("step.queued", None),
        ("step.started", 1),
        ("step.retrying", 1),
        ("step.started", 2),
        ("step.completed", 2),
    ]
    [retrying] = [e for e in history if e.type == "step.retrying"]
    assert retrying.details is not None and retrying.details["retry_in"] == 0.0
    assert retrying.details["error"]["message"] == "the first call fails"
    assert [e.type for e in history][-1] == "run.completed"
