"""Cost per step is O(1) in run size: count the statements a completion issues."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from legato import Client, RunStatus, Workflow
from legato.store.base import Tx

from .helpers import claim, ok, report
from .tasks import noop


class CountingTx:
    """Passes every call to the real transaction and logs the named query."""

    def __init__(self, tx: Tx, log: list[tuple[str, int]]) -> None:
        self._tx = tx
        self._log = log

    def one(self, query: str, /, **params: Any) -> Any:
        self._log.append((query, 1))
        return self._tx.one(query, **params)

    def all(self, query: str, /, **params: Any) -> Any:
        self._log.append((query, 1))
        return self._tx.all(query, **params)

    def run(self, query: str, /, **params: Any) -> Any:
        self._log.append((query, 1))
        return self._tx.run(query, **params)

    def many(self, query: str, rows: list[dict[str, Any]]) -> None:
        self._log.append((query, len(rows)))
        self._tx.many(query, rows)

    def insert_rows(self, query: str, rows: list[dict[str, Any]]) -> None:
        self._log.append((query, len(rows)))
        self._tx.insert_rows(query, rows)

    def send(self, query: str, /, **params: Any) -> Any:
        self._log.append((query, 1))
        return self._tx.send(query, **params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


@contextmanager
def counting(client: Client) -> Iterator[dict[str, Any]]:
    """Count named queries (both databases) and raw statements (SQLite)."""
    store: Any = client.store
    original = store._transaction
    log: list[tuple[str, int]] = []
    statements: list[str] = []

    @contextmanager
    def transaction(**kwargs: Any) -> Iterator[Any]:
        with original(**kwargs) as tx:
            yield CountingTx(tx, log)

    store._transaction = transaction
    conn = store._conn() if store.dialect == "sqlite" else None
    if conn is not None:
        conn.set_trace_callback(statements.append)
    result: dict[str, Any] = {"queries": log, "statements": statements}
    try:
        yield result
    finally:
        del store._transaction
        if conn is not None:
            conn.set_trace_callback(None)


def fan_out_in(width: int) -> Workflow:
    wf = Workflow(f"fan_{width}")
    start = wf.step("start", noop)
    middle = [wf.step(f"m{i}", noop, needs=[start]) for i in range(width)]
    wf.step("end", noop, needs=middle)
    return wf


def measure(client: Client, width: int) -> dict[str, Any]:
    run_id = client.start(fan_out_in(width))
    report(client, [ok(claim(client, root=run_id)[0])])
    first, second, third = claim(client, limit=3, root=run_id)
    report(client, [ok(first)])  # warms the caches (spec, run context)
    with counting(client) as claim_cost:
        [fourth] = claim(client, limit=1, root=run_id)
    with counting(client) as complete_cost:
        outcome = report(client, [ok(second)])
    assert outcome.accepted == 1
    with counting(client) as both_cost:
        outcome = report(client, [ok(third)], _request(run_id))
    assert len(outcome.claimed) == 1
    assert client.get(run_id, with_steps=False).status is RunStatus.RUNNING
    del fourth
    return {"claim": claim_cost, "complete": complete_cost, "both": both_cost}


def _request(root: str) -> Any:
    from legato.store.base import ClaimRequest

    from .helpers import ALL_TASKS

    return ClaimRequest(
        worker_id="w1", queues=("default",), tasks=ALL_TASKS, limit=1, lease=30, root_run_id=root
    )


def test_completing_a_step_costs_the_same_in_small_and_large_runs(client: Client) -> None:
    small = measure(client, 10)
    large = measure(client, 2000)
    for what in ("claim", "complete", "both"):
        assert small[what]["queries"] == large[what]["queries"], what
        assert len(small[what]["statements"]) == len(large[what]["statements"]), what
    queries = [name for name, _ in large["complete"]["queries"]]
    # No lock and no write on the run's row: the step, its successor, one counter row.
    assert queries == [
        "complete_step",
        "release_successors",
        "decrement_counter",
        "insert_events",
    ]
    assert len(large["complete"]["queries"]) <= 6
    if client.store.dialect == "sqlite":  # type: ignore[attr-defined]
        statements = large["complete"]["statements"]
        assert statements[0].startswith("BEGIN") and statements[-1] == "COMMIT"
        assert len(statements) <= 9


@pytest.mark.parametrize("width", [3])
def test_the_fan_in_step_is_queued_by_the_last_completion(client: Client, width: int) -> None:
    run_id = client.start(fan_out_in(width))
    report(client, [ok(claim(client)[0])])
    middle = claim(client)
    assert len(middle) == width
    for step in middle[:-1]:
        report(client, [ok(step)])
        assert client.get(run_id).steps["end"].status.value == "waiting"
    report(client, [ok(middle[-1])])
    assert client.get(run_id).steps["end"].status.value == "queued"


def test_hot_path_statements_use_indexes_on_sqlite(sqlite_url: str) -> None:
    with Client(sqlite_url) as client:
        costs = measure(client, 50)
        conn = client.store._conn()  # type: ignore[attr-defined]
        plans = {}
        for what in ("claim", "complete", "both"):
            for statement in costs[what]["statements"]:
                if statement.split()[0].upper() in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT"):
                    continue
                plan = conn.execute(f"EXPLAIN QUERY PLAN {statement}").fetchall()
                plans[statement] = [row[-1] for row in plan]
    assert plans
    for statement, steps in plans.items():
        scans = [
            s
            for s in steps
            if s.startswith("SCAN") and "json_each" not in s and "CONSTANT ROWS" not in s
        ]
        assert scans == [], f"{statement}\n{steps}"
