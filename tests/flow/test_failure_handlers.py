"""Failure handler workflows on each backend: ``on_failure`` starts a run when one fails.

The handler run is started by the transaction that ends the failed run, with
the failure's facts as params, linked both ways; a cancel starts it only when
asked; a handler that cannot start is an event, never a wedged run; a handler's
own failure starts nothing more.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from legato import Client, DefinitionError, Run, RunStatus, Worker, Workflow
from legato.files import to_yaml
from legato.model.runs import HANDLER_TAG
from store.helpers import claim, failed, report

from .tasks_loops import echo, fail


def handler_workflow(name: str = "cleanup") -> Workflow:
    """A handler taking the failure's facts it declares."""
    wf = Workflow(name)
    facts = {k: wf.param(k) for k in ("run_id", "workflow", "status", "error", "params")}
    seen = wf.step("seen", echo, x=facts)
    wf.outputs(seen=seen.output)
    return wf


def failing_workflow(on_failure: Any = "cleanup", name: str = "fragile") -> Workflow:
    wf = Workflow(name, on_failure=on_failure)
    wf.param("day", "2024-05-01")
    wf.step("work", fail, message="disk full")
    return wf


@pytest.fixture
def worker(client: Client) -> Iterator[Worker]:
    """One worker per test: what it claimed for another run it reports on its next ticks."""
    worker = Worker(client, worker_id="w1", concurrency=1)
    try:
        yield worker
    finally:
        worker.close()


def finish(client: Client, worker: Worker, run_id: str, timeout: float = 15.0) -> Run:
    """Tick the worker until ``run_id`` has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.tick()
        if client.get(run_id, with_steps=False).finished:
            worker.tick()
            return client.get(run_id)
        time.sleep(0.002)
    raise AssertionError(f"run {run_id} did not finish: {client.get(run_id)!r}")


def events_of(client: Client, run_id: str) -> dict[str, dict[str, Any] | None]:
    return {e.type: e.details for e in client.history(run_id)}


def handler_runs(client: Client, run_id: str) -> list[Run]:
    return client.search(tags={HANDLER_TAG: run_id}).runs


def test_a_failed_run_starts_its_handler_which_runs_to_completion(
    client: Client, worker: Worker
) -> None:
    client.deploy(handler_workflow())
    run_id = client.start(failing_workflow(), {"day": "2024-06-02"})

    run = finish(client, worker, run_id)

    assert run.status is RunStatus.FAILED
    assert run.failure_handler_run_id is not None
    handler = finish(client, worker, run.failure_handler_run_id)
    assert handler.workflow == "cleanup"
    assert handler.handler_of == run_id
    assert handler.status is RunStatus.COMPLETED
    assert handler.params == {
        "run_id": run_id,
        "workflow": "fragile",
        "status": "failed",
        "error": {"type": "Boom", "message": "disk full", "step": "work"},
        "params": {"day": "2024-06-02"},
    }
    assert handler.outputs == {"seen": handler.params}
    started = events_of(client, run_id)["run.failure_handler_started"]
    assert started == {"run": handler.id, "workflow": "cleanup@1"}
    assert [r.id for r in handler_runs(client, run_id)] == [handler.id]


def test_templated_params_and_a_handler_given_whole(client: Client, worker: Worker) -> None:
    notify = Workflow("notify")
    message = notify.param("message", type="str")
    notify.param("failed", type="str")
    notify.step("say", echo, x=message)
    wf = Workflow("fragile").failure_handler(
        notify,
        params={
            "message": "${{ run.workflow }} ${{ params.day }} failed: ${{ run.error.message }}",
            "failed": "${{ run.id }}",
        },
    )
    wf.param("day", "2024-05-01")
    wf.step("work", fail, message="disk full")
    run = finish(client, worker, client.start(wf))

    assert run.failure_handler_run_id is not None
    handler = client.get(run.failure_handler_run_id)
    assert handler.params == {
        "message": "fragile 2024-05-01 failed: disk full",
        "failed": run.id,
    }


def test_a_handler_taking_no_params_gets_none(client: Client, worker: Worker) -> None:
    quiet = Workflow("quiet")
    quiet.step("x", echo, x=1)
    run = finish(client, worker, client.start(failing_workflow(quiet)))
    assert run.failure_handler_run_id is not None
    assert client.get(run.failure_handler_run_id).params == {}


def test_a_completed_run_starts_no_handler(client: Client, worker: Worker) -> None:
    client.deploy(handler_workflow())
    wf = Workflow("fine", on_failure="cleanup")
    wf.step("work", echo, x=1)
    run = finish(client, worker, client.start(wf))
    assert run.status is RunStatus.COMPLETED
    assert run.failure_handler_run_id is None
    assert [r.workflow for r in client.list_runs()] == ["fine"]


@pytest.mark.parametrize("asked", [False, True], ids=["plain", "run_failure_handler"])
def test_a_cancel_starts_the_handler_only_when_asked(client: Client, asked: bool) -> None:
    client.deploy(handler_workflow())
    run_id = client.start(failing_workflow())
    client.cancel(run_id, "not today", run_failure_handler=asked)

    run = client.get(run_id)
    assert run.status is RunStatus.CANCELLED
    if not asked:
        assert run.failure_handler_run_id is None
        assert handler_runs(client, run_id) == []
        return
    assert run.failure_handler_run_id is not None
    handler = client.get(run.failure_handler_run_id)
    assert handler.params["status"] == "cancelled"
    assert handler.params["error"] == {"type": "Cancelled", "message": "not today"}


def test_cancel_many_starts_each_handler_when_asked(client: Client) -> None:
    client.deploy(handler_workflow())
    ids = [client.start(failing_workflow()) for _ in range(2)]
    result = client.cancel_many(workflow="fragile", run_failure_handler=True)
    assert sorted(result.changed) == sorted(ids)
    for run_id in ids:
        [handler] = handler_runs(client, run_id)
        assert client.get(run_id).failure_handler_run_id == handler.id


def test_a_missing_handler_is_an_event_and_the_run_stays_failed(
    client: Client, worker: Worker
) -> None:
    run = finish(client, worker, client.start(failing_workflow("nowhere")))

    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.message == "disk full"
    assert run.failure_handler_run_id is None
    why = events_of(client, run.id)["run.failure_handler_failed"]
    assert why is not None and why["workflow"] == "nowhere"
    assert "no workflow 'nowhere' is stored" in why["reason"]
    assert [r.id for r in client.list_runs()] == [run.id]


def test_a_handler_refusing_its_params_is_an_event(client: Client, worker: Worker) -> None:
    strict = Workflow("strict")
    strict.param("needed", type="int")
    strict.step("x", echo, x=1)
    run = finish(client, worker, client.start(failing_workflow(strict)))
    why = events_of(client, run.id)["run.failure_handler_failed"]
    assert why is not None and "missing required param 'needed'" in why["reason"]
    assert run.status is RunStatus.FAILED


def test_a_failing_handler_starts_no_second_handler(client: Client, worker: Worker) -> None:
    # The handler's own workflow names a handler: its failure still starts nothing.
    client.deploy(handler_workflow("cleanup_of_cleanup"))
    broken = Workflow("broken_cleanup", on_failure="cleanup_of_cleanup")
    broken.step("oops", fail, message="handler broke")
    run = finish(client, worker, client.start(failing_workflow(broken)))
    assert run.failure_handler_run_id is not None

    handler = finish(client, worker, run.failure_handler_run_id)

    assert handler.status is RunStatus.FAILED
    assert handler.failure_handler_run_id is None
    assert sorted(r.workflow for r in client.list_runs()) == ["broken_cleanup", "fragile"]
    assert "run.failure_handler_started" not in events_of(client, handler.id)


def test_the_handler_starts_in_the_transaction_ending_the_run(client: Client) -> None:
    """Before the failing result is reported there is no handler; the report that fails
    the run leaves both, committed together."""
    client.deploy(handler_workflow())
    run_id = client.start(failing_workflow())
    [step] = claim(client, tasks=("flow_loops.fail",))
    assert client.list_runs(workflow="cleanup") == []

    report(client, [failed(step, "disk full", retryable=False)])

    run = client.get(run_id)
    [handler] = client.list_runs(workflow="cleanup")
    assert run.status is RunStatus.FAILED
    assert run.failure_handler_run_id == handler.id
    assert handler.status in (RunStatus.PENDING, RunStatus.RUNNING)


def test_a_workflow_naming_itself_as_its_handler_is_refused() -> None:
    wf = Workflow("loop", on_failure="loop")
    wf.step("x", echo, x=1)
    with pytest.raises(DefinitionError, match="on_failure names the workflow itself"):
        _ = wf.spec


def test_handler_params_read_only_the_failed_run() -> None:
    wf = Workflow("a").failure_handler("b", params={"x": "${{ steps.x.output }}"})
    wf.step("x", echo, x=1)
    with pytest.raises(DefinitionError, match="on_failure params read steps"):
        _ = wf.spec


def test_a_report_rolled_back_loses_the_failure_and_its_handler_together(
    client: Client,
) -> None:
    """The connection breaks before the commit that fails the run: neither the failure
    nor the handler run is kept; the report sent again keeps both, one handler run."""
    client.deploy(handler_workflow())
    run_id = client.start(failing_workflow())
    [step] = claim(client, tasks=("flow_loops.fail",))
    calls: list[int] = []

    def roll_back_once() -> None:
        if not calls:
            calls.append(1)
            raise RuntimeError("the connection broke before the commit")

    client.store.checkpoints["before_commit"] = roll_back_once  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        report(client, [failed(step, "disk full", retryable=False)])
    assert client.get(run_id).status is RunStatus.RUNNING
    assert client.list_runs(workflow="cleanup") == []

    report(client, [failed(step, "disk full", retryable=False)])
    report(client, [failed(step, "disk full", retryable=False)])  # a repeat changes nothing

    [handler] = client.list_runs(workflow="cleanup")
    assert client.get(run_id).failure_handler_run_id == handler.id
    started = [e for e in client.history(run_id) if e.type == "run.failure_handler_started"]
    assert len(started) == 1


def test_a_handler_in_a_definition_file_of_the_conf_path_is_found(
    db_url: str, tmp_path: Path
) -> None:
    """Never deployed: the client starting the run finds it in the conf path's files and
    stores it with the run, so the transaction ending the run finds it by name."""
    conf = tmp_path / "flows"
    conf.mkdir()
    (conf / "cleanup.yaml").write_text(to_yaml(handler_workflow().spec))
    with Client(db_url, conf_path=str(conf)) as client:
        run_id = client.start(failing_workflow())
        [step] = claim(client, tasks=("flow_loops.fail",))
        report(client, [failed(step, "disk full", retryable=False)])
        run = client.get(run_id)
        assert run.failure_handler_run_id is not None
        assert client.get(run.failure_handler_run_id).params["run_id"] == run_id
        assert client.definitions() == []  # found, not deployed
