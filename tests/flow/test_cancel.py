"""``client.cancel``: a run ends cancelled, whatever it was doing, on each backend."""

from __future__ import annotations

import pytest

from legato import Client, RunStatus, StepStatus, Workflow
from legato.errors import ConflictError, RunNotFoundError
from store.helpers import claim, ok, report

from .tasks_waits import ALL_TASKS, echo, tag


def test_a_pending_run_is_cancelled_and_nothing_of_it_is_ever_claimed(client: Client) -> None:
    wf = Workflow("to_cancel")
    first = wf.step("first", echo, x=1)
    wf.step("second", tag, label="second", x=first.output)
    run_id = client.start(wf)
    client.cancel(run_id, "changed my mind", actor="ada")

    run = client.get(run_id)
    assert run.status is RunStatus.CANCELLED
    assert run.error is not None
    assert (run.error.type, run.error.message) == ("Cancelled", "changed my mind")
    assert {k: s.status for k, s in run.steps.items()} == {
        "first": StepStatus.CANCELLED,
        "second": StepStatus.CANCELLED,
    }
    assert claim(client, tasks=ALL_TASKS) == []
    cancelled = [e for e in client.history(run_id) if e.type == "run.cancelled"]
    assert [(e.actor, (e.details or {}).get("reason")) for e in cancelled] == [
        ("ada", "changed my mind")
    ]


def test_a_sleeping_run_is_cancelled_and_its_timer_never_fires(client: Client) -> None:
    wf = Workflow("sleeper")
    nap = wf.sleep("nap", "1h")
    wf.step("after", echo, x="late", needs=[nap])
    run_id = client.start(wf)
    assert client.get(run_id).steps["nap"].status is StepStatus.SUSPENDED
    client.cancel(run_id)

    client.store.clock.advance(7200)  # type: ignore[attr-defined]
    assert claim(client, tasks=ALL_TASKS, sweep=True) == []
    run = client.get(run_id)
    assert run.status is RunStatus.CANCELLED
    assert run.steps["nap"].status is StepStatus.CANCELLED
    assert run.steps["nap"].wake_at is None
    assert run.steps["after"].status is StepStatus.CANCELLED


def test_a_running_step_finishes_after_the_cancel_and_starts_nothing(client: Client) -> None:
    wf = Workflow("busy")
    first = wf.step("first", echo, x=1)
    wf.step("second", echo, x=first.output)
    run_id = client.start(wf)
    [running] = claim(client, tasks=ALL_TASKS)
    client.cancel(run_id)

    assert report(client, [ok(running, 1)]).accepted == 1
    assert claim(client, tasks=ALL_TASKS) == []
    run = client.get(run_id)
    assert run.status is RunStatus.CANCELLED
    assert run.steps["first"].status is StepStatus.COMPLETED  # its result is kept
    assert run.steps["first"].output == 1
    assert run.steps["second"].status is StepStatus.CANCELLED


def test_cancelling_a_finished_or_unknown_run_is_a_clear_error(client: Client) -> None:
    wf = Workflow("twice")
    wf.step("only", echo, x=1)
    run_id = client.start(wf)
    client.cancel(run_id)
    with pytest.raises(
        ConflictError,
        match=f"run {run_id} is cancelled: only a pending, running or paused run can be cancelled",
    ):
        client.cancel(run_id)
    with pytest.raises(RunNotFoundError, match="no run with id"):
        client.cancel("01a2343c-0000-7000-8000-000000000000")
    with pytest.raises(RunNotFoundError, match="no run has an id starting with 'nonsense'"):
        client.cancel("nonsense")
