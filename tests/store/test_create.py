"""create_run: the spec stored once, the run and its steps, events, idempotency, atomicity."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from legato import (
    Client,
    CycleError,
    IdempotencyConflictError,
    ParamError,
    PayloadError,
    RunStatus,
    StepStatus,
    UnknownTaskError,
    Workflow,
)
from legato.errors import StoreError
from legato.store.base import NewRun

from .helpers import count, sql, table_counts
from .tasks import add, echo, noop


def diamond(name: str = "diamond") -> Workflow:
    wf = Workflow(name)
    a = wf.step("a", echo, x=wf.param("x"))
    b = wf.step("b", echo, x=a.output)
    c = wf.step("c", noop, needs=[a])
    d = wf.step("d", add, a=b.output, b=wf.param("x"), needs=[c])
    wf.outputs(total=d.output)
    return wf


def test_create_run_stores_run_steps_and_events(client: Client) -> None:
    wf = diamond()
    run_id = client.start(wf, {"x": 2}, tags={"team": "data"}, created_by="ada")
    run = client.get(run_id)
    assert run.id == run_id
    assert run.status is RunStatus.PENDING
    assert (run.workflow, run.version, run.workflow_hash) == ("diamond", "1", wf.spec.content_hash)
    assert run.params == {"x": 2}
    assert run.tags == {"team": "data"} and run.created_by == "ada"
    assert (run.steps_total, run.steps_done) == (4, 0)
    assert run.outputs is None and run.error is None
    assert run.started_at is None and run.finished_at is None
    assert [(s.step_id, s.status) for s in run.steps.values()] == [
        ("a", StepStatus.QUEUED),
        ("b", StepStatus.WAITING),
        ("c", StepStatus.WAITING),
        ("d", StepStatus.WAITING),
    ]
    a = run.steps["a"]
    assert (a.task, a.attempt, a.max_attempts, a.queue, a.priority) == (
        "store_suite.echo",
        0,
        1,
        "default",
        0,
    )
    assert a.queued_at is not None and run.steps["b"].queued_at is None
    assert a.inputs is None and a.output is None and a.attempts == ()
    remaining = dict(
        sql(client.store, "SELECT step_id, deps_remaining FROM step_runs WHERE run_id = ?", run_id)
    )
    assert remaining == {"a": 0, "b": 1, "c": 1, "d": 2}
    events = client.history(run_id)
    assert [(e.type, e.step_id) for e in events] == [("run.created", None), ("step.queued", "a")]
    assert events[0].actor == "ada"
    assert events[0].details == {"workflow": "diamond@1", "hash": wf.spec.content_hash}


def test_spec_is_stored_once_per_hash(client: Client) -> None:
    wf = diamond()
    first = client.start(wf, {"x": 1})
    second = client.start(wf, {"x": 2})
    assert first != second
    assert count(client.store, "workflow_specs") == 1
    assert client.store.get_spec(wf.spec.content_hash) == wf.spec
    other = diamond("diamond_two")
    client.start(other, {"x": 1})
    assert count(client.store, "workflow_specs") == 2
    assert client.get(first).workflow_hash == client.get(second).workflow_hash


def test_several_roots_are_all_queued(client: Client) -> None:
    wf = Workflow("roots")
    for step_id in ("r1", "r2", "r3"):
        wf.step(step_id, noop)
    run_id = client.start(wf)
    assert {s.status for s in client.get(run_id).steps.values()} == {StepStatus.QUEUED}
    assert [e.step_id for e in client.history(run_id) if e.type == "step.queued"] == [
        "r1",
        "r2",
        "r3",
    ]


def test_idempotency_key_returns_the_first_run_and_writes_nothing(client: Client) -> None:
    wf = diamond()
    first = client.start(wf, {"x": 1}, idempotency_key="order-42")
    before = table_counts(client.store)
    again = client.start(wf, {"x": 1}, idempotency_key="order-42", tags={"try": "2"})
    assert again == first
    assert table_counts(client.store) == before
    assert client.get(first).params == {"x": 1}
    assert client.get(first).idempotency_key == "order-42"
    other = client.start(wf, {"x": 1}, idempotency_key="order-43")
    assert other != first
    assert len(client.list_runs()) == 2


def test_idempotency_key_with_other_params_is_a_conflict(client: Client) -> None:
    wf = diamond()
    first = client.start(wf, {"x": 1}, idempotency_key="order-42")
    before = table_counts(client.store)
    with pytest.raises(IdempotencyConflictError) as info:
        client.start(wf, {"x": 999}, idempotency_key="order-42")
    assert str(info.value) == (
        f"idempotency key 'order-42' already started run {first} of workflow 'diamond' "
        "with other params; use another key to start a run with these params"
    )
    assert table_counts(client.store) == before
    assert client.get(first).params == {"x": 1}


def test_idempotency_key_with_another_workflow_is_a_conflict_and_writes_no_spec(
    client: Client,
) -> None:
    first = client.start(diamond(), {"x": 1}, idempotency_key="k")
    before = table_counts(client.store)
    with pytest.raises(
        IdempotencyConflictError,
        match=f"already started run {first} of workflow 'diamond', not 'another'",
    ):
        client.start(diamond("another"), {"x": 1}, idempotency_key="k")
    assert table_counts(client.store) == before


def test_idempotency_conflict_found_after_the_insert_races(client: Client) -> None:
    """The key taken between the lookup and the insert is compared too."""
    wf = diamond()
    first = client.start(wf, {"x": 1}, idempotency_key="raced")
    store: Any = client.store
    real = store._transaction

    @contextmanager
    def lookup_misses(**kwargs: Any) -> Iterator[Any]:
        with real(**kwargs) as tx:
            one = tx.one

            def hide_first_lookup(query: str, /, **params: Any) -> Any:
                if query == "run_by_idempotency_key" and not hidden:
                    hidden.append(True)
                    return None
                return one(query, **params)

            tx.one = hide_first_lookup
            yield tx

    hidden: list[bool] = []
    store._transaction = lookup_misses
    try:
        with pytest.raises(IdempotencyConflictError, match="with other params"):
            client.start(wf, {"x": 2}, idempotency_key="raced")
        hidden.clear()
        assert client.start(wf, {"x": 1}, idempotency_key="raced") == first
    finally:
        del store._transaction
    assert len(client.list_runs()) == 1


def test_idempotency_key_at_the_store(client: Client) -> None:
    wf = diamond()
    first = client.start(wf, {"x": 1}, idempotency_key="k")
    spec = wf.spec
    new = NewRun(spec=spec, params={"x": 1}, steps=[], idempotency_key="k")
    assert client.store.create_run(new) == (first, False)


def assert_nothing_written(client: Client) -> None:
    assert client.list_runs() == []
    assert table_counts(client.store) == {
        "workflow_specs": 0,
        "runs": 0,
        "step_runs": 0,
        "events": 0,
    }


def test_bad_params_write_nothing(client: Client) -> None:
    with pytest.raises(ParamError, match="workflow diamond@1: missing required param 'x'"):
        client.start(diamond())
    with pytest.raises(ParamError, match="unknown param 'y'"):
        client.start(diamond(), {"x": 1, "y": 2})
    with pytest.raises(PayloadError, match=r"params of diamond@1: \$.x is of type set"):
        client.start(diamond(), {"x": {1}})
    with pytest.raises(PayloadError, match="NUL character"):
        client.start(diamond(), {"x": "a\x00"})
    with pytest.raises(ParamError, match="tags are text keys and values"):
        client.start(diamond(), {"x": 1}, tags={"n": 1})  # type: ignore[dict-item]
    assert_nothing_written(client)


def test_unregistered_task_writes_nothing(client: Client) -> None:
    spec = {"name": "ghostly", "steps": [{"id": "a", "task": "store_suite.not_registered"}]}
    with pytest.raises(UnknownTaskError) as info:
        client.start(spec)
    assert "step 'a' calls task 'store_suite.not_registered', which is not registered" in str(
        info.value
    )
    assert_nothing_written(client)


def test_cycle_writes_nothing(client: Client) -> None:
    spec = {
        "name": "loop",
        "steps": [
            {"id": "a", "task": "store_suite.noop", "needs": ["b"]},
            {"id": "b", "task": "store_suite.noop", "needs": ["a"]},
        ],
    }
    with pytest.raises(CycleError, match="steps form a cycle: "):
        client.start(spec)
    assert_nothing_written(client)


def test_a_failing_insert_leaves_nothing_half_written(client: Client) -> None:
    wf = diamond()
    spec = wf.spec
    from legato.engine.planner import TaskDefaults, plan_new_run

    defaults = {
        t.name: TaskDefaults(retry=t.retry, timeout=t.timeout, queue=t.queue, priority=t.priority)
        for t in wf.tasks.values()
    }
    steps = plan_new_run(spec.graph, defaults)
    duplicated = [*steps, steps[0]]  # breaks UNIQUE (run_id, step_id) after the run row
    with pytest.raises(StoreError):
        client.store.create_run(NewRun(spec=spec, params={"x": 1}, steps=duplicated))
    assert_nothing_written(client)
    client.start(wf, {"x": 1})  # the store is still usable
    assert count(client.store, "runs") == 1
