"""``legato.Context`` on each backend: what a task learns, what it reports, and how a
cancel or a pause with ``stop_now`` reaches it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import legato
from legato import Client, Context, RunStatus, StepStatus, Worker, Workflow
from legato.errors import DefinitionError
from legato.payload import dumps
from legato.store.base import ProgressReport
from store.helpers import claim, drive

from .tasks_ops import ALL_TASKS, began, calls, polls, reports, waits_async, whereabouts


def test_a_task_that_asks_for_the_context_gets_its_whereabouts(client: Client) -> None:
    wf = Workflow("whereabouts")
    m = wf.map("m", whereabouts, over=["a", "b"], x=legato.item)
    lp = wf.loop("lp", until="${{ iteration >= 1 }}", max_iterations=2, needs=[m])
    lp.step("body", whereabouts, x=legato.iteration)
    steps = wf.map("s", over=[{"k": 1}], needs=[lp])
    steps.step("inner", whereabouts, x="inner")
    run_id = client.start(wf)
    worker = Worker(client, worker_id="w1")
    try:
        run = drive(client, run_id, worker)
    finally:
        worker.close()
    assert run.status is RunStatus.COMPLETED, run.error
    second = run.steps["m[1]"].output
    assert second == {
        "x": "b",
        "run_id": run_id,
        "step_id": "m[1]",
        "attempt": 1,
        "index": 1,
        "item": "b",
        "iteration": None,
        "logger": "legato.task.flow_ops.whereabouts",
    }
    assert run.steps["lp[1].body"].output["iteration"] == 1
    inner = run.steps["s[0].inner"].output
    assert (inner["index"], inner["item"], inner["step_id"]) == (0, {"k": 1}, "s[0].inner")
    # the context is no input: the call recorded is what the step passed
    assert run.steps["m[1]"].inputs == {"x": "b"}


def test_the_context_parameter_is_not_an_input() -> None:
    wf = Workflow("ctx_not_input")
    with pytest.raises(DefinitionError, match=r"cannot call task flow_ops\.whereabouts"):
        wf.step("s", whereabouts, x=1, context="given")
        wf.spec  # noqa: B018 - building the spec checks the calls
    assert list(whereabouts.signature.parameters) == ["x"]
    assert whereabouts.context_param == "context"


def test_a_task_may_take_only_one_context() -> None:
    def twice(a: Context, b: Context) -> None: ...

    with pytest.raises(DefinitionError, match="only one parameter can take the Context"):
        legato.task(registry=legato.TaskRegistry())(twice)


@contextmanager
def counting_commits(client: Client) -> Iterator[list[int]]:
    """Count the store's write transactions while the block runs."""
    store: Any = client.store
    original = store._transaction
    count = [0]

    @contextmanager
    def transaction(**kwargs: Any) -> Iterator[Any]:
        if kwargs.get("write", True):
            count[0] += 1
        with original(**kwargs) as tx:
            yield tx

    store._transaction = transaction
    try:
        yield count
    finally:
        del store._transaction


def test_ten_thousand_progress_reports_cost_no_extra_commits(client: Client) -> None:
    wf = Workflow("progress")
    wf.step("count", reports, n=10_000)
    run_id = client.start(wf)
    worker = Worker(client, worker_id="w1", concurrency=1)
    try:
        with counting_commits(client) as commits:
            run = drive(client, run_id, worker)
    finally:
        worker.close()
    assert run.status is RunStatus.COMPLETED
    # a claim and a report, with some idle ticks between: nothing per report
    assert commits[0] < 50
    step = run.steps["count"]
    assert step.progress is not None
    assert (step.progress["done"], step.progress["total"]) == (10_000, 10_000)
    assert step.progress["message"] == "row 10000"
    assert step.percent == 100.0
    assert step.heartbeat_details == {"last": 10_000}


def test_a_running_steps_progress_is_written_by_the_heartbeat(client: Client) -> None:
    wf = Workflow("beating")
    wf.step("count", reports, n=5)
    run_id = client.start(wf)
    [step] = claim(client, tasks=ALL_TASKS)
    progress = dumps({"done": 30, "total": 120, "message": "rows", "at": 1.0})
    renewal = client.store.extend_leases(
        "w1",
        [step.step_run_id],
        30,
        progress={step.step_run_id: ProgressReport(progress, dumps({"cursor": 30}))},
    )
    assert renewal.renewed == 1 and renewal.stop_requested == frozenset()
    running = client.get(run_id).steps["count"]
    assert running.status is StepStatus.RUNNING
    assert running.progress == {"done": 30, "total": 120, "message": "rows", "at": 1.0}
    assert running.percent == 25.0
    assert running.heartbeat_details == {"cursor": 30}


# -- a cancel or a pause reaching a running task ------------------------------------------------


@contextmanager
def working(client: Client) -> Iterator[Worker]:
    """A worker running in a thread, beating every third of a second."""
    worker = Worker(client, worker_id="w1", lease=1.0, poll_interval=0.05, sweep_interval=0.2)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop(now=True)
        thread.join(10)
        worker.close()


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> float:
    """Poll ``check`` until it holds; return how long that took."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.01)
    return time.monotonic() - start


def test_a_cancel_reaches_a_sync_task_that_polls_the_context(client: Client) -> None:
    key = uuid.uuid4().hex
    wf = Workflow("cancel_sync")
    wf.step("long", polls, key=key)
    run_id = client.start(wf)
    with working(client):
        assert began(key).wait(10)
        client.cancel(run_id, "enough", actor="ops")
        took = wait_for(lambda: client.get(run_id).steps["long"].status is StepStatus.CANCELLED)
    assert took < 3  # a heartbeat interval (a third of the lease) and the report
    run = client.get(run_id)
    assert run.status is RunStatus.CANCELLED
    step = run.steps["long"]
    assert step.error is not None and step.error.type == "Cancelled"
    types = [e.type for e in client.history(run_id)]
    assert "step.stop_requested" in types


def test_a_cancel_really_cancels_an_async_task(client: Client) -> None:
    key = uuid.uuid4().hex
    wf = Workflow("cancel_async")
    wf.step("long", waits_async, key=key)
    run_id = client.start(wf)
    with working(client):
        assert began(key).wait(10)
        client.cancel(run_id)
        wait_for(lambda: client.get(run_id).steps["long"].status is StepStatus.CANCELLED)
    assert calls(key) == ["cancelled"]  # the coroutine saw its CancelledError
    step = client.get(run_id).steps["long"]
    assert step.error is not None and "stopped on request" in step.error.message


def test_a_pause_with_stop_now_sends_the_attempt_back_to_the_queue(client: Client) -> None:
    key = uuid.uuid4().hex
    wf = Workflow("pause_now")
    wf.step("long", polls, key=key, retry={"max_attempts": 1})
    run_id = client.start(wf)
    with working(client):
        assert began(key).wait(10)
        client.pause(run_id, stop_now=True)
        wait_for(lambda: client.get(run_id).steps["long"].status is StepStatus.QUEUED)
        step = client.get(run_id).steps["long"]
        assert [(a.number, a.status) for a in step.attempts] == [(1, "stopped")]
        assert step.failures == 0  # its retries not spent
        began(key).clear()
        client.resume(run_id)
        assert began(key).wait(10)  # attempt 2 runs
        assert client.get(run_id).steps["long"].attempt == 2
        client.cancel(run_id)
