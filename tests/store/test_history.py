"""History: every transition and operation is an event naming who did it; errors keep their
details."""

from __future__ import annotations

from typing import Any

from legato import Client, RunStatus, Worker, Workflow, task

from .helpers import claim, drive, ok
from .tasks import add, echo


class Refused(Exception):
    """A task's own error, carrying details a person needs."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


@task(name="store_suite.refused_upload")
def refused_upload(bucket: str) -> None:
    try:
        raise ConnectionError("connection reset")
    except ConnectionError as exc:
        error = Refused(f"upload to {bucket} refused", {"bucket": bucket, "retries": 3})
        error.add_note("the bucket's policy changed on Monday")
        raise error from exc


def two_steps() -> Workflow:
    wf = Workflow("history")
    first = wf.step("first", echo, x=wf.param("x"))
    wf.step("second", add, a=first.output, b=1)
    return wf


def test_a_workers_transitions_name_the_worker(client: Client) -> None:
    run_id = client.start(two_steps(), {"x": 1}, created_by="ada")
    worker = Worker(client, worker_id="wk-1", concurrency=1)
    try:
        run = drive(client, run_id, worker)
    finally:
        worker.close()
    assert run.status is RunStatus.COMPLETED
    events = client.history(run_id)
    assert [(e.type, e.step_id, e.actor) for e in events] == [
        ("run.created", None, "ada"),
        ("step.queued", "first", "ada"),
        ("run.started", None, "wk-1"),
        ("step.started", "first", "wk-1"),
        ("step.completed", "first", "wk-1"),
        ("step.queued", "second", "wk-1"),
        ("step.started", "second", "wk-1"),
        ("step.completed", "second", "wk-1"),
        ("run.completed", None, "wk-1"),
    ]
    assert all(e.at is not None for e in events)
    assert [e.at for e in events] == sorted(e.at for e in events)


def test_a_result_is_recorded_as_the_work_of_the_attempts_holder(client: Client) -> None:
    """Whoever reports a result, its events name the worker that held the attempt."""
    run_id = client.start(two_steps(), {"x": 1})
    [first] = claim(client, "holder")
    client.store.report_and_claim([ok(first, 1)], worker_id="reporter")
    by_type = {e.type: e.actor for e in client.history(run_id) if e.step_id == "first"}
    assert by_type["step.completed"] == "holder"
    second = [e for e in client.history(run_id) if e.step_id == "second"]
    assert [(e.type, e.actor) for e in second] == [("step.queued", "reporter")]


def test_operations_name_the_user(client: Client) -> None:
    wf = Workflow("waits")
    wf.wait_for_signal("approval", signal="approve")
    wf.step("after", echo, x=1, needs=["approval"])
    signalled = client.start(wf)
    client.signal(signalled, "approve", {"ok": True}, sent_by="ann")
    events = [(e.type, e.step_id, e.actor) for e in client.history(signalled)]
    assert ("signal.received", None, "ann") in events
    assert ("signal.consumed", "approval", "ann") in events
    assert ("step.completed", "approval", "ann") in events
    assert ("step.queued", "after", "ann") in events

    cancelled = client.start(two_steps(), {"x": 1})
    client.cancel(cancelled, "not today", actor="ops")
    events = [(e.type, e.step_id, e.actor) for e in client.history(cancelled)]
    assert ("step.cancelled", "first", "ops") in events
    assert ("run.cancelled", None, "ops") in events


def test_errors_keep_their_type_message_details_and_traceback(client: Client) -> None:
    wf = Workflow("upload")
    wf.step("put", refused_upload, bucket="s3://reports")
    run_id = client.start(wf)
    worker = Worker(client, worker_id="wk-2", concurrency=1)
    try:
        run = drive(client, run_id, worker)
    finally:
        worker.close()
    assert run.status is RunStatus.FAILED
    error = run.error
    assert error is not None
    assert (error.type, error.message, error.step) == (
        "Refused",
        "upload to s3://reports refused",
        "put",
    )
    assert error.details == {
        "bucket": "s3://reports",
        "retries": 3,
        "notes": ["the bucket's policy changed on Monday"],
        "cause": "ConnectionError: connection reset",
    }
    assert error.traceback is not None and "raise error from exc" in error.traceback
    step_error = run.steps["put"].error
    assert step_error is not None and step_error.details == error.details
    failed = [e for e in client.history(run_id) if e.type == "step.failed"]
    assert [(e.actor, (e.details or {})["error"]["details"]["bucket"]) for e in failed] == [
        ("wk-2", "s3://reports")
    ]
    [found] = client.search(text="policy changed on Monday")
    assert found.id == run_id
