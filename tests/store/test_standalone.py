"""Standalone tasks on each backend: ``client.enqueue`` and ``task.enqueue`` run one task
as a one-step run, with its retries, queue and tracking; ``client.result`` waits for it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from legato import (
    Client,
    IdempotencyConflictError,
    ParamError,
    PayloadError,
    RunFailedError,
    RunStatus,
    StepStatus,
    TaskRegistry,
    UnknownTaskError,
    WaitTimeout,
    Worker,
    task,
)
from legato.engine.planner import TaskDefaults
from legato.model.spec import RetryPolicy

from .helpers import claim, count, drive, ok, report, table_counts
from .tasks import add, calls, echo, fail, flaky, other_queue


@contextmanager
def worker_on(client: Client) -> Iterator[Worker]:
    worker = Worker(client, worker_id=f"w-{uuid.uuid4().hex[:6]}", concurrency=2)
    try:
        yield worker
    finally:
        worker.close()


def test_enqueue_runs_the_task_and_result_gives_its_output(client: Client) -> None:
    run_id = client.enqueue(add, 2, b=3, tags={"team": "data"}, created_by="ana")
    by_task = add.enqueue(10, 20, client=client)
    with worker_on(client) as worker:
        drive(client, run_id, worker)
        drive(client, by_task, worker)
    assert client.result(run_id) == 5
    assert client.result(by_task, timeout=0) == 30
    run = client.get(run_id)
    assert run.kind == "task"
    assert run.status is RunStatus.COMPLETED
    assert (run.workflow, run.version) == ("store_suite_add", "task")
    assert run.params == {"args": [2], "kwargs": {"b": 3}}
    assert run.outputs == {"result": 5}
    assert (run.tags, run.created_by) == ({"team": "data"}, "ana")
    [step] = run.steps.values()
    assert (step.step_id, step.task, step.args, step.inputs) == (
        "add",
        "store_suite.add",
        [2],
        {"b": 3},
    )
    types = [e.type for e in client.history(run_id)]
    assert types[0] == "run.created" and types[-1] == "run.completed"


def test_a_call_that_fails_raises_its_error_from_result(client: Client) -> None:
    run_id = client.enqueue(fail, "it broke")
    with worker_on(client) as worker:
        drive(client, run_id, worker)
    with pytest.raises(
        RunFailedError, match=r"task store_suite\.fail\) failed: .*it broke"
    ) as caught:
        client.result(run_id)
    assert caught.value.run_id == run_id
    assert caught.value.status == "failed"
    assert (caught.value.error.type, caught.value.error.message) == ("ValueError", "it broke")


def test_a_call_gets_its_tasks_retries(client: Client) -> None:
    key = f"standalone-{uuid.uuid4().hex}"
    run_id = client.enqueue(flaky, key, 2)
    with worker_on(client) as worker:
        drive(client, run_id, worker)
    assert client.result(run_id) == "ok after 3"
    assert calls(key) == 3
    assert client.get(run_id).steps["flaky"].attempt == 3


def test_result_waits_only_as_long_as_asked(client: Client) -> None:
    run_id = client.enqueue(echo, "later")
    with pytest.raises(WaitTimeout, match="still pending"):
        client.result(run_id, timeout=0)


def test_result_of_a_workflow_run_is_its_outputs(client: Client) -> None:
    from legato import Workflow

    wf = Workflow("standalone_outputs")
    step = wf.step("e", echo, x=wf.param("x"))
    wf.outputs(value=step.output)
    run_id = client.start(wf, {"x": 7})
    with worker_on(client) as worker:
        drive(client, run_id, worker)
    assert client.result(run_id) == {"value": 7}


def test_queue_and_priority_of_one_call(client: Client) -> None:
    run_id = client.enqueue(echo, "x", queue="reports", priority=6)
    assert claim(client, queues=("default",)) == []
    [claimed] = claim(client, queues=("reports",))
    assert (claimed.run_id, claimed.priority, claimed.args) == (run_id, 6, ["x"])
    report(client, [ok(claimed, "x")])
    assert client.result(run_id, timeout=0) == "x"
    plain = client.enqueue(other_queue)  # the task's own queue when the call names none
    [claimed] = claim(client, queues=("other",))
    assert claimed.run_id == plain


def test_a_call_by_name_needs_no_code_once_a_worker_recorded_the_task(db_url: str) -> None:
    with Client(db_url, registry=TaskRegistry()) as bare:
        with pytest.raises(UnknownTaskError, match=r"store_suite\.other_queue"):
            bare.enqueue("store_suite.other_queue")
        bare.store.register_task_defaults(
            {
                "store_suite.other_queue": TaskDefaults(
                    retry=RetryPolicy(max_attempts=4), timeout=9.0, queue="other", priority=3
                )
            }
        )
        run_id = bare.enqueue("store_suite.other_queue")
        step = bare.get(run_id).steps["other_queue"]
        assert (step.queue, step.priority, step.max_attempts) == ("other", 3, 4)


def test_an_idempotency_key_starts_one_call(client: Client) -> None:
    first = client.enqueue(echo, "once", idempotency_key="call-1")
    assert client.enqueue(echo, "once", idempotency_key="call-1") == first
    assert count(client.store, "runs") == 1
    with pytest.raises(IdempotencyConflictError, match="other params"):
        client.enqueue(echo, "twice", idempotency_key="call-1")


def test_a_delayed_call_waits_on_a_durable_timer(client: Client) -> None:
    run_id = client.enqueue(echo, "late", delay="1h")
    eta = datetime.now(UTC) + timedelta(hours=2)
    at_eta = client.enqueue(echo, "later", eta=eta)
    assert claim(client, sweep=True) == []
    wait = client.get(run_id).steps["wait"]
    assert wait.status is StepStatus.SUSPENDED and wait.waiting_for == "timer"
    assert client.get(at_eta).params["eta"] == eta.isoformat()
    client.store.clock.advance(3601)
    [claimed] = claim(client, sweep=True)
    assert (claimed.run_id, claimed.step_id) == (run_id, "echo")
    report(client, [ok(claimed, "late")])
    client.store.clock.advance(3600)
    [claimed] = claim(client, sweep=True)
    assert claimed.run_id == at_eta


def test_bad_calls_are_refused_before_anything_is_written(client: Client) -> None:
    registry = TaskRegistry()

    @task(name="standalone_suite.rank", registry=registry)
    def rank(item: str, priority: int = 0) -> str:
        return f"{item}:{priority}"

    before = table_counts(client.store)
    with pytest.raises(ParamError, match=r"store_suite\.add: the call does not fit"):
        client.enqueue(add, 1, 2, 3)
    with pytest.raises(PayloadError, match=r"the call of task store_suite\.echo"):
        client.enqueue(echo, {1, 2})
    with pytest.raises(ParamError, match=r"decorate it with @legato\.task"):
        client.enqueue(len, [1])  # type: ignore[arg-type]
    with pytest.raises(ParamError, match=r"takes 'priority'.*enqueue_with"):
        client.enqueue(rank, "a", priority=2)
    with pytest.raises(ParamError, match="delay or eta, not both"):
        client.enqueue(echo, 1, delay=5, eta=datetime.now(UTC))
    with pytest.raises(ParamError, match="priority must be an int from 0 to 9"):
        client.enqueue(echo, 1, priority=12)
    with pytest.raises(UnknownTaskError, match=r"nobody\.home"):
        client.enqueue("nobody.home")
    assert table_counts(client.store) == before
    # the explicit form says which keywords are whose
    run_id = client.enqueue_with(rank, ["a"], {"priority": 2}, priority=5)
    run = client.get(run_id)
    assert (run.params["kwargs"], run.steps["rank"].priority) == ({"priority": 2}, 5)


def test_a_call_starts_in_one_transaction_its_spec_built_once(client: Client) -> None:
    store: Any = client.store
    original = store._transaction
    opened: list[bool] = []

    @contextmanager
    def counted(**kwargs: Any) -> Iterator[Any]:
        opened.append(kwargs.get("write", True))
        with original(**kwargs) as tx:
            yield tx

    first = client.enqueue(add, 1, b=1)
    store._transaction = counted
    try:
        second = client.enqueue(add, 5, b=6)
        by_name = client.enqueue("store_suite.add", 7, 8)
    finally:
        store._transaction = original
    assert len(opened) == 2  # one transaction per call, nothing read first
    runs = [client.get(r, with_steps=False) for r in (first, second, by_name)]
    assert runs[0].workflow_hash == runs[1].workflow_hash  # one spec per shape of call
    assert runs[2].workflow_hash != runs[0].workflow_hash  # two positional arguments


def test_cancel_reaches_a_call(client: Client) -> None:
    run_id = client.enqueue(echo, "never")
    client.cancel(run_id, "not needed")
    with pytest.raises(RunFailedError, match="cancelled: Cancelled: not needed"):
        client.result(run_id)


def test_task_enqueue_without_a_client_opens_one_on_legato_url(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEGATO_URL", db_url)
    run_id = echo.enqueue("from the environment")
    with Client(db_url) as client:
        [claimed] = claim(client)
        assert (claimed.run_id, claimed.args) == (run_id, ["from the environment"])
        with pytest.raises(ParamError, match=r"client must be a legato\.Client"):
            echo.enqueue(1, client="sqlite:///x.db")
