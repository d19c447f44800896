"""Drive a store directly, or a worker tick by tick, without sleeping blindly."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from legato import Client, Run, StepError, Worker
from legato.payload import dumps
from legato.store.base import ClaimedStep, ClaimRequest, ReportOutcome, StepResult
from legato.store.sql import SQLStore

ALL_TASKS = (
    "store_suite.echo",
    "store_suite.add",
    "store_suite.noop",
    "store_suite.fragile",
    "store_suite.gated",
    "store_suite.huge_number",
    "store_suite.surrogate_error",
    "store_suite.other_queue",
    "store_suite.urgent",
    "store_suite.fail",
    "store_suite.fail_retried",
    "store_suite.flaky",
    "store_suite.only_value_errors",
    "store_suite.retried_once",
    "store_suite.append_to",
    "store_suite.bad_output",
    "store_suite.structured",
    "store_suite.double",
    "store_suite.async_double",
    "store_suite.total",
    "store_suite.exits",
    "store_suite.fail_when_sibling_runs",
    "store_suite.outlive_the_run",
    "store_suite.takes_a_while",
    "store_suite.fails_first_call",
    "store_suite.beating",
)


def claim(
    client: Client,
    worker: str = "w1",
    *,
    limit: int = 100,
    lease: float = 30.0,
    queues: Iterable[str] = ("default",),
    tasks: Iterable[str] = ALL_TASKS,
    root: str | None = None,
    sweep: bool = False,
) -> list[ClaimedStep]:
    return report(
        client,
        [],
        ClaimRequest(
            worker_id=worker,
            queues=tuple(queues),
            tasks=tuple(tasks),
            limit=limit,
            lease=lease,
            root_run_id=root,
            sweep=sweep,
        ),
    ).claimed


def report(
    client: Client, results: list[StepResult], request: ClaimRequest | None = None
) -> ReportOutcome:
    return client.store.report_and_claim(results, request)


def ok(step: ClaimedStep, output: Any = None, *, attempt: int | None = None) -> StepResult:
    return StepResult(
        step_run_id=step.step_run_id,
        run_id=step.run_id,
        step_id=step.step_id,
        attempt=step.attempt if attempt is None else attempt,
        ok=True,
        output_json=dumps(output),
        inputs_json=dumps({"args": step.args, "kwargs": step.kwargs}),
    )


def failed(
    step: ClaimedStep,
    message: str = "boom",
    *,
    type_: str = "ValueError",
    retryable: bool = True,
    attempt: int | None = None,
) -> StepResult:
    return StepResult(
        step_run_id=step.step_run_id,
        run_id=step.run_id,
        step_id=step.step_id,
        attempt=step.attempt if attempt is None else attempt,
        ok=False,
        inputs_json=dumps({"args": step.args, "kwargs": step.kwargs}),
        error=StepError(type=type_, message=message, traceback="Traceback: here"),
        retryable=retryable,
    )


def by_step(steps: list[ClaimedStep]) -> dict[str, ClaimedStep]:
    return {s.step_id: s for s in steps}


def drive(client: Client, run_id: str, *workers: Worker, timeout: float = 15.0) -> Run:
    """Tick the workers until the run finishes; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in workers:
            worker.tick()
        if client.get(run_id, with_steps=False).finished:
            for worker in workers:  # report what is still running, then stop
                worker.tick()
            return client.get(run_id)
        time.sleep(0.002)  # let the task threads report
    run = client.get(run_id)
    raise AssertionError(f"run did not finish within {timeout}s: {run!r}")


def sql(store: Any, text: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run raw SQL on the store's database (``?`` placeholders on both)."""
    assert isinstance(store, SQLStore)
    if store.dialect == "sqlite":
        return [tuple(row) for row in store._conn().execute(text, params).fetchall()]  # type: ignore[attr-defined]
    with store._pool.connection() as conn:  # type: ignore[attr-defined]
        cur = conn.execute(text.replace("?", "%s"), params)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
        return [tuple(row.values()) for row in rows]


def count(store: Any, table: str, where: str = "", *params: Any) -> int:
    rows = sql(store, f"SELECT COUNT(*) FROM {table} {where}", *params)
    return int(rows[0][0])


def table_counts(store: Any) -> dict[str, int]:
    return {t: count(store, t) for t in ("workflow_specs", "runs", "step_runs", "events")}


def pg_url_for(dbname: str) -> str:
    """The URL of another database on the test server (as tests/conftest.py builds them)."""
    admin = os.environ.get(
        "LEGATO_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    return f"{admin.rpartition('/')[0]}/{dbname}"
