"""Every status write in the SQL obeys the transition table in ``legato.model.states``.

Each query that writes a status runs against rows in every status at once,
with parameters that match all of them, and every change it makes is checked
against the table. A query the SQL gains that writes a status and is not
exercised here fails the test, so the table and the SQL cannot drift apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from legato import Client, RunStatus, StepStatus, Workflow
from legato.model.states import (
    RUN_MOVES,
    can_run_transition,
    can_step_transition,
)
from legato.payload import dumps
from legato.store.queries import load_queries
from legato.store.sql import SQLStore
from legato.store.tracking import allowed_from

from .helpers import ALL_TASKS, sql
from .tasks import noop

ERROR = dumps({"type": "E", "message": "m"})


class Rolledback(Exception):
    """Raised to roll a probe's transaction back."""


def _writes_status(query: str) -> bool:
    """Does an UPDATE's SET clause (up to its WHERE or FROM) assign ``status``?"""
    for clause in re.findall(r"\bSET\b([\s\S]*?)(?:\bWHERE\b|\bFROM\b|$)", query):
        if re.search(r"(?<![\w.])status\s*=", clause):
            return True
    return False


#: the keys of the steps :func:`_step_rows` makes, one per status
KEYS = [status.value for status in StepStatus]


def _step_rows(client: Client) -> tuple[str, dict[int, str]]:
    """A run with one step in each status: step id -> status."""
    wf = Workflow("every_status")
    for status in StepStatus:
        wf.step(status.value, noop)
    run_id = client.start(wf)
    for status in StepStatus:
        sql(
            client.store,
            "UPDATE step_runs SET status = ?, attempt = 1, worker_id = 'w', deps_remaining = 1, "
            "lease_expires_at = queued_at, available_at = queued_at "
            "WHERE run_id = ? AND step_id = ?",
            status.value,
            run_id,
            status.value,
        )
    rows = sql(client.store, "SELECT id, status FROM step_runs WHERE run_id = ?", run_id)
    return run_id, {int(i): s for i, s in rows}


def _run_rows(client: Client) -> dict[str, str]:
    """One run in each status: run id -> status."""
    wf = Workflow("one_status")
    wf.step("s", noop)
    runs = {}
    for status in RunStatus:
        run_id = client.start(wf)
        sql(client.store, "UPDATE runs SET status = ? WHERE id = ?", status.value, run_id)
        runs[run_id] = status.value
    return runs


def _probe(store: SQLStore, query: str, calls: list[dict[str, Any]], read: str) -> list[Any]:
    """Run ``query`` once per params in ``calls``, then the raw SQL ``read``; roll back."""
    seen: list[tuple[Any, ...]] = []
    with pytest.raises(Rolledback), store._transaction() as tx:
        returns = "RETURNING" in store._queries[query]  # type: ignore[attr-defined]
        for params in calls:
            (tx.all if returns else tx.run)(query, **_params(store, params))
        seen.extend(_raw(tx, read))
        raise Rolledback
    return seen


def _params(store: SQLStore, params: dict[str, Any]) -> dict[str, Any]:
    """Lists as the dialect takes them (SQLite: JSON text)."""
    return {k: store._list(v) if isinstance(v, list) else v for k, v in params.items()}


def _raw(tx: Any, text: str) -> list[tuple[Any, ...]]:
    if hasattr(tx, "conn"):  # SQLite
        return [tuple(row) for row in tx.conn.execute(text).fetchall()]
    tx.cur.execute(text)
    return [tuple(row.values()) for row in tx.cur.fetchall()]


STEPS = "SELECT id, status FROM step_runs"
RUNS = "SELECT id, status FROM runs"


STEP_QUERIES: dict[str, Callable[[str, int, float], list[dict[str, Any]]]] = {
    "claim_queue_steps": lambda run_id, step, now: [
        {
            "worker": "w2",
            "queue": "default",
            "tasks": list(ALL_TASKS),
            "limit": 100,
            "lease": 30.0,
            "now": now,
        }
    ],
    "claim_steps": lambda run_id, step, now: [
        {
            "worker": "w2",
            "queues": ["default"],
            "tasks": list(ALL_TASKS),
            "limit": 100,
            "lease": 30.0,
            "now": now,
        }
    ],
    "claim_tree_steps": lambda run_id, step, now: [
        {
            "worker": "w2",
            "queues": None,
            "tasks": list(ALL_TASKS),
            "limit": 100,
            "lease": 30.0,
            "root": run_id,
            "now": now,
        }
    ],
    "queue_instance": lambda run_id, step, now: [{"id": step, "now": now}],
    "release_successors": lambda run_id, step, now: [
        {"run_id": run_id, "keys": KEYS, "failed": failed, "now": now} for failed in (0, 1)
    ],
    "skip_instance": lambda run_id, step, now: [{"id": step, "error": None, "now": now}],
    "begin_instance": lambda run_id, step, now: [{"id": step, "inputs": None, "now": now}],
    "suspend_instance": lambda run_id, step, now: [
        {
            "id": step,
            "wake_at": None,
            "delay": 5.0,
            "waiting_for": "timer",
            "child_run_id": None,
            "inputs": None,
            "new_attempt": 0,
            "failed": 0,
            "now": now,
        }
    ],
    "complete_instance": lambda run_id, step, now: [
        {"id": step, "output": "1", "inputs": None, "now": now}
    ],
    "fail_instance": lambda run_id, step, now: [
        {"id": step, "error": ERROR, "failed": 1, "inputs": None, "now": now}
    ],
    "cancel_scope": lambda run_id, step, now: [{"run_id": run_id, "scope": "", "now": now}],
    "cancel_unstarted": lambda run_id, step, now: [{"run_id": run_id, "now": now}],
    "cancel_instance": lambda run_id, step, now: [{"id": step, "now": now}],
    "complete_step": lambda run_id, step, now: [
        {"id": step, "attempt": 1, "output": "1", "inputs": "{}", "now": now}
    ],
    # one step at a time, as a batch of one row ("id" marks it a query of a step)
    "complete_steps": lambda run_id, step, now: [
        {
            "id": step,
            "rows": json.dumps([{"id": step, "attempt": 1, "output": "1", "inputs": "{}"}]),
            "now": now,
        }
    ],
    "release_successors_many": lambda run_id, step, now: [
        {"rows": json.dumps([{"run_id": run_id, "key": k, "n": n} for k in KEYS]), "now": now}
        for n in (1, 2)
    ],
    "retry_step": lambda run_id, step, now: [
        {
            "id": step,
            "attempt": 1,
            "error": ERROR,
            "inputs": None,
            "failures": 1,
            "delay": 0.0,
            "now": now,
        }
    ],
    "fail_step": lambda run_id, step, now: [
        {
            "id": step,
            "attempt": 1,
            "error": ERROR,
            "inputs": None,
            "failures": 1,
            "lost": 0,
            "now": now,
        }
    ],
    "fail_unclaimed": lambda run_id, step, now: [
        {"id": step, "attempt": 1, "error": ERROR, "failures": 1, "now": now}
    ],
    "lose_step": lambda run_id, step, now: [
        {"id": step, "attempt": 1, "error": ERROR, "lost": 1, "now": now}
    ],
    "abandon_step": lambda run_id, step, now: [
        {"id": step, "attempt": 1, "error": ERROR, "lost": 1, "now": now}
    ],
    "release_step": lambda run_id, step, now: [
        {"id": step, "attempt": 1, "worker": "w", "now": now}
    ],
    "unclaim_step": lambda run_id, step, now: [
        {"id": step, "attempt": 1, "flow_key": "noop", "now": now}
    ],
    "cancel_attempt": lambda run_id, step, now: [
        {"id": step, "attempt": 1, "error": ERROR, "output": None, "inputs": None, "now": now}
    ],
    "requeue_attempt": lambda run_id, step, now: [
        {"id": step, "attempt": 1, "held": held, "now": now} for held in (False, True)
    ],
    "reset_instance": lambda run_id, step, now: [
        {
            "id": step,
            "status": status,
            "deps_remaining": 0,
            "deps_failed": 0,
            "keep_inputs": True,
            "run_attempt": 2,
            "now": now,
        }
        for status in ("waiting", "running", "queued", "completed")
    ],
    "skip_step": lambda run_id, step, now: [{"id": step, "output": "1", "now": now}],
}

#: queries that write a run's status
RUN_WRITERS = {
    "start_runs",
    "finish_run",
    "complete_runs",
    "pause_run",
    "resume_run",
    "reopen_run",
}
#: queries that write the status of a run tracked from outside (its creator reports it)
TRACKED_WRITERS = {"set_tracked_status"}


def test_every_status_writing_query_is_checked_here() -> None:
    for dialect in ("sqlite", "postgres"):
        writing = {name for name, q in load_queries(dialect).items() if _writes_status(q)}
        assert writing == STEP_QUERIES.keys() | RUN_WRITERS | TRACKED_WRITERS, dialect


def _check(kind: str, query: str, before: dict[str, str], after: list[Any]) -> set[Any]:
    allowed = can_step_transition if kind == "step" else can_run_transition
    changed = set()
    for row_id, status in after:
        old = before[str(row_id)]
        if status != old:
            assert allowed(old, status), f"{query} moves a {kind} from {old} to {status}"
            changed.add((old, status))
    return changed


@pytest.mark.parametrize("query", sorted(STEP_QUERIES))
def test_step_status_writes_follow_the_table(client: Client, query: str) -> None:
    store: Any = client.store
    run_id, steps = _step_rows(client)
    before = {str(k): v for k, v in steps.items()}
    runs_before = {str(r): s for r, s in sql(store, RUNS)}
    targets = list(steps) if "id" in STEP_QUERIES[query](run_id, 0, 0.0)[0] else [0]
    changed: set[Any] = set()
    for step in targets:
        calls = STEP_QUERIES[query](run_id, step, store.clock.now())
        changed |= _check("step", query, before, _probe(store, query, calls, STEPS))
        _check("run", query, runs_before, _probe(store, query, calls, RUNS))
    assert changed, f"{query} changed no status at all: the probe does not reach it"


@pytest.mark.parametrize("query", sorted(RUN_WRITERS))
def test_run_status_writes_follow_the_table(client: Client, query: str) -> None:
    store: Any = client.store
    before = _run_rows(client)
    changed: set[Any] = set()
    now = store.clock.now()
    if query == "start_runs":
        calls = [{"ids": list(before), "now": now}]
    elif query == "complete_runs":
        rows = [{"id": run_id, "outputs": "null"} for run_id in before]
        calls = [{"rows": json.dumps(rows), "ids": list(before), "now": now}]
    elif query in ("pause_run", "resume_run"):
        calls = [{"id": run_id, "now": now} for run_id in before]
    elif query == "reopen_run":
        calls = [
            {
                "id": run_id,
                "params": None,
                "spec_hash": None,
                "version": None,
                "fresh": fresh,
                "now": now,
            }
            for run_id in before
            for fresh in (False, True)
        ]
    else:
        calls = [
            {"run_id": run_id, "status": status.value, "outputs": None, "error": None, "now": now}
            for run_id in before
            for status in RunStatus
        ]
    for params in calls:  # each on its own, so every target status is tried on every run
        changed |= _check("run", query, before, _probe(store, query, [params], RUNS))
    assert changed, f"{query} changed no run status at all: the probe does not reach it"


def test_tracked_status_writes_follow_the_table(client: Client) -> None:
    """Every target from every status, as ``set_tracked_status`` is called: with the
    statuses it may move from, which the SQL must hold to whatever the caller checked."""
    store: Any = client.store
    before = _run_rows(client)
    sql(store, "UPDATE runs SET kind = 'external'")
    now = store.clock.now()
    changed: set[Any] = set()
    for run_id in before:
        for status in RunStatus:
            params = {
                "id": run_id,
                "status": status.value,
                "allowed": allowed_from(status),
                "outputs": None,
                "error": None,
                "started_at": None,
                "finished_at": None,
                "task_count": None,
                "now": now,
            }
            changed |= _check(
                "run",
                "set_tracked_status",
                before,
                _probe(store, "set_tracked_status", [params], RUNS),
            )
    # every move a run makes by itself, and no other (reopening is an operator's)
    assert changed == set(RUN_MOVES)


def test_tracked_status_writes_never_touch_runs_driven_by_steps(client: Client) -> None:
    store: Any = client.store
    before = _run_rows(client)
    now = store.clock.now()
    for run_id in before:
        for status in RunStatus:
            params = {
                "id": run_id,
                "status": status.value,
                "allowed": [s.value for s in RunStatus],
                "outputs": None,
                "error": None,
                "started_at": None,
                "finished_at": None,
                "task_count": None,
                "now": now,
            }
            after = dict(_probe(store, "set_tracked_status", [params], RUNS))
            assert {str(k): v for k, v in after.items()} == before
