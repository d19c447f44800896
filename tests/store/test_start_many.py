"""``client.start_many``: many runs of one workflow in one transaction, checked as ``start``
checks one, with the same idempotency."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pytest

from legato import Client, IdempotencyConflictError, ParamError, RunStatus, Worker, Workflow

from .helpers import count, table_counts
from .tasks import add


def pair() -> Workflow:
    wf = Workflow("pairs")
    first = wf.step("first", add, a=wf.param("a", type="int"), b=1)
    wf.step("second", add, a=first.output, b=wf.param("b", 10, type="int"))
    wf.outputs(total="${{ steps.second.output }}")
    return wf


@contextmanager
def commits(client: Client) -> Any:
    counter = [0]
    original = client.store._transaction  # type: ignore[attr-defined]

    @contextmanager
    def counted(*, write: bool = True) -> Any:
        with original(write=write) as tx:
            yield tx
        counter[0] += write

    client.store._transaction = counted  # type: ignore[attr-defined]
    try:
        yield counter
    finally:
        client.store._transaction = original  # type: ignore[attr-defined]


def test_many_runs_start_in_one_transaction_and_all_complete(client: Client) -> None:
    with commits(client) as counter:
        ids = client.start_many(
            pair(), [{"a": i} for i in range(40)], tags={"batch": "7"}, created_by="loader"
        )
    assert counter[0] == 1
    assert len(ids) == len(set(ids)) == 40
    runs = [client.get(r, with_steps=False) for r in ids]
    assert [r.params for r in runs] == [{"a": i, "b": 10} for i in range(40)]
    assert {(r.tags["batch"], r.created_by) for r in runs} == {("7", "loader")}
    assert count(client.store, "workflow_specs") == 1
    worker = Worker(client, concurrency=4, poll_interval=0.05)
    pending = set(ids)

    def all_finished(tick: Any) -> bool:
        pending.difference_update(tick.finished_runs)
        return not pending

    worker.run(until=all_finished)
    worker.close()
    finished = [client.get(r, with_steps=False) for r in ids]
    assert [r.status for r in finished] == [RunStatus.COMPLETED] * 40
    assert [r.outputs for r in finished] == [{"total": i + 11} for i in range(40)]


def test_one_bad_params_stores_none_and_names_the_run(client: Client) -> None:
    before = table_counts(client.store)
    with pytest.raises(ParamError, match=r"run 2 of 3: .*param 'a' must be int"):
        client.start_many(pair(), [{"a": 1}, {"a": 2}, {"a": "three"}])
    assert table_counts(client.store) == before


def test_idempotency_keys_within_the_batch_and_before_it(client: Client) -> None:
    first = client.start(pair(), {"a": 1}, idempotency_key="k1")
    ids = client.start_many(
        pair(), [{"a": 1}, {"a": 2}, {"a": 2}, {"a": 3}], idempotency_keys=["k1", "k2", "k2", None]
    )
    assert ids[0] == first  # started before: the same run
    assert ids[1] == ids[2]  # twice in the batch with the same params: one run
    assert len(set(ids)) == 3
    before = table_counts(client.store)
    with pytest.raises(IdempotencyConflictError, match="k3"):
        client.start_many(pair(), [{"a": 5}, {"a": 6}], idempotency_keys=["k3", "k3"])
    with pytest.raises(IdempotencyConflictError, match="other params"):
        client.start_many(pair(), [{"a": 9}], idempotency_keys=["k1"])
    assert table_counts(client.store) == before
    with pytest.raises(ParamError, match="one per run"):
        client.start_many(pair(), [{"a": 1}], idempotency_keys=["x", "y"])


def test_nothing_to_start_starts_nothing(client: Client) -> None:
    assert client.start_many(pair(), []) == []
