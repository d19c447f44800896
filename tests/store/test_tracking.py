"""Runs tracked from outside on each backend: ``create_workflow_run``,
``update_workflow_run_status`` and ``spawn_task``, as Absurd's tracking client names them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from legato import (
    Client,
    ConflictError,
    ParamError,
    RunNotFoundError,
    RunStatus,
    StoreError,
    Worker,
    Workflow,
    WorkflowNotFoundError,
)

from .helpers import claim, count, drive, ok, report, sql, table_counts
from .tasks import add, echo
from .test_races import SECOND, Held, Second


def test_an_external_run_is_recorded_pending_with_its_metadata(client: Client) -> None:
    run_id = client.create_workflow_run(
        workflow_name="data_pipeline",
        workflow_version="1.0.0",
        inputs={"source": "s3://bucket/data"},
        created_by="etl_system",
        tags={"environment": "production"},
        workflow_hash="sha256:abc",
    )
    run = client.get(run_id)
    assert run.kind == "external"
    assert run.status is RunStatus.PENDING
    assert (run.workflow, run.version, run.workflow_hash) == (
        "data_pipeline",
        "1.0.0",
        "sha256:abc",
    )
    assert run.params == {"source": "s3://bucket/data"}
    assert (run.created_by, run.tags) == ("etl_system", {"environment": "production"})
    assert (run.steps, run.steps_total, run.started_at) == ({}, 0, None)
    assert [r.id for r in client.list_runs(workflow="data_pipeline")] == [run_id]
    [created] = client.history(run_id)
    assert created.type == "run.created" and created.actor == "etl_system"
    assert created.details is not None and created.details["kind"] == "external"


def test_its_status_follows_the_transition_table(client: Client) -> None:
    run_id = client.create_workflow_run("nightly", "2")
    began = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    client.update_workflow_run_status(run_id, "running", started_at=began, actor="app")
    client.update_workflow_run_status(run_id, "running", task_count=4)
    ended = began + timedelta(minutes=5)
    client.update_workflow_run_status(
        run_id, "completed", result={"rows": 10}, completed_at=ended, task_count=10
    )
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert (run.outputs, run.task_count) == ({"rows": 10}, 10)
    assert (run.started_at, run.finished_at) == (began, ended)
    assert client.result(run_id, timeout=0) == {"rows": 10}
    events = [(e.type, e.actor, e.details) for e in client.history(run_id)]
    assert events[1:] == [
        ("run.started", "app", None),
        ("run.updated", None, {"task_count": 4}),
        ("run.completed", None, {"task_count": 10, "result": True}),
    ]
    with pytest.raises(ConflictError, match=r"is completed: its status is final"):
        client.update_workflow_run_status(run_id, "completed")
    with pytest.raises(ConflictError, match=r"is completed: it cannot become running"):
        client.update_workflow_run_status(run_id, "running")
    other = client.create_workflow_run("nightly", "2")
    client.update_workflow_run_status(other, "running")
    with pytest.raises(
        ConflictError,
        match=r"is running: it cannot become pending \(from running it can become "
        r"cancelled, completed, failed, paused\)",
    ):
        client.update_workflow_run_status(other, "pending")
    client.update_workflow_run_status(other, "paused")
    client.update_workflow_run_status(other, "running")
    assert [e.type for e in client.history(other)][1:] == [
        "run.started",
        "run.paused",
        "run.resumed",
    ]
    assert client.get(other).finished_at is None


def test_a_run_driven_by_its_steps_takes_no_status_from_outside(client: Client) -> None:
    wf = Workflow("stepped")
    wf.step("e", echo, x=1)
    workflow_run = client.start(wf)
    task_run = client.enqueue(echo, 1)
    for run_id, what in ((workflow_run, "a workflow run"), (task_run, "a standalone task's")):
        with pytest.raises(ConflictError, match=f"is {what}.*create_workflow_run"):
            client.update_workflow_run_status(run_id, "completed")
        assert client.get(run_id, with_steps=False).status is RunStatus.PENDING
    with pytest.raises(RunNotFoundError):
        client.update_workflow_run_status(str(uuid.uuid4()), "running")


def test_failing_it_keeps_the_error_and_cancels_its_unfinished_tasks(client: Client) -> None:
    run_id = client.create_workflow_run("etl", "1", inputs={"day": "2026-01-02"})
    client.update_workflow_run_status(run_id, "running")
    done = client.spawn_task("store_suite.add", params={"a": 1, "b": 2}, workflow_run_id=run_id)
    waiting = client.spawn_task("store_suite.echo", params={"x": 3}, workflow_run_id=run_id)
    [first, _] = sorted(claim(client), key=lambda s: s.run_id != done.run_id)
    report(client, [ok(first, 3)])
    client.update_workflow_run_status(
        run_id,
        "failed",
        error={
            "type": "ProcessingError",
            "message": "Data source unavailable",
            "details": {"retries_attempted": 3},
            "timestamp": "2026-01-02T03:04:05",
        },
    )
    run = client.get(run_id)
    assert run.status is RunStatus.FAILED and run.finished_at is not None
    assert run.error is not None
    assert (run.error.type, run.error.message) == ("ProcessingError", "Data source unavailable")
    [stored] = sql(client.store, "SELECT error FROM runs WHERE id = ?", run_id)
    kept = stored[0] if isinstance(stored[0], dict) else json.loads(stored[0])
    assert kept["details"] == {"retries_attempted": 3, "timestamp": "2026-01-02T03:04:05"}
    assert client.get(done.run_id, with_steps=False).status is RunStatus.COMPLETED
    cancelled = client.get(waiting.run_id)
    assert cancelled.status is RunStatus.CANCELLED
    assert cancelled.error is not None and "spawned into failed" in cancelled.error.message


def test_cancel_ends_a_tracked_run_and_the_tasks_spawned_into_it(client: Client) -> None:
    run_id = client.create_workflow_run("etl", "1")
    spawned = client.spawn_task("store_suite.echo", {"x": 1}, workflow_run_id=run_id)
    client.cancel(run_id, "not needed", actor="ops")
    assert client.get(run_id, with_steps=False).status is RunStatus.CANCELLED
    assert client.get(spawned.run_id, with_steps=False).status is RunStatus.CANCELLED
    assert claim(client) == []


def test_a_spawned_task_runs_as_a_standalone_call_linked_to_its_run(client: Client) -> None:
    workflow_run_id = client.create_workflow_run("orders", "3")
    spawned = client.spawn_task(
        add,
        params={"a": 2, "b": 5},
        headers={"workflow_run_id": workflow_run_id},
        workflow_run_id=uuid.UUID(workflow_run_id),  # as Absurd's callers hold it
    )
    task_id, run_id, linked = spawned
    assert task_id == run_id and linked == workflow_run_id
    loose = client.spawn_task("store_suite.echo", params={"x": "alone"})
    assert loose.workflow_run_id is None
    worker = Worker(client, worker_id="spawned", concurrency=2)
    try:
        drive(client, run_id, worker)
        drive(client, loose.run_id, worker)
    finally:
        worker.close()
    assert client.result(run_id) == 7
    assert client.result(loose.run_id) == "alone"
    run = client.get(run_id)
    assert (run.kind, run.parent_run_id, run.root_run_id) == ("task", linked, linked)
    assert run.params["headers"] == {"workflow_run_id": workflow_run_id}
    assert run.params["kwargs"] == {"a": 2, "b": 5}
    assert client.get(workflow_run_id).status is RunStatus.PENDING  # its creator says when
    client.update_workflow_run_status(workflow_run_id, "cancelled")  # finished tasks stay
    assert client.get(run_id, with_steps=False).status is RunStatus.COMPLETED


def test_tasks_are_spawned_only_into_unfinished_external_runs(client: Client) -> None:
    finished = client.create_workflow_run("etl", "1")
    client.update_workflow_run_status(finished, "completed")
    wf = Workflow("stepped")
    wf.step("e", echo, x=1)
    stepped = client.start(wf)
    before = table_counts(client.store)
    with pytest.raises(ConflictError, match="is completed: no task can be spawned into it"):
        client.spawn_task("store_suite.echo", {"x": 1}, workflow_run_id=finished)
    with pytest.raises(ConflictError, match="driven by its steps"):
        client.spawn_task("store_suite.echo", {"x": 1}, workflow_run_id=stepped)
    with pytest.raises(RunNotFoundError):
        client.spawn_task("store_suite.echo", {"x": 1}, workflow_run_id=str(uuid.uuid4()))
    with pytest.raises(RunNotFoundError, match="not a run id"):
        client.spawn_task("store_suite.echo", {"x": 1}, workflow_run_id="nope")
    assert table_counts(client.store) == before


def test_bad_input_is_refused_before_anything_is_written(client: Client) -> None:
    run_id = client.create_workflow_run("etl", "1")
    before = table_counts(client.store)
    for name, version, field in (
        ("Data-Pipeline", "1", "workflow_name 'Data-Pipeline' must match"),
        ("data__pipeline", "1", "must not contain '__'"),
        ("etl", "1 0", "workflow_version '1 0' must match"),
        ("etl", "v__1", "workflow_version 'v__1' must not contain '__'"),
    ):
        with pytest.raises(ParamError, match=field):
            client.create_workflow_run(name, version)
    with pytest.raises(ParamError, match="workflow_hash must be text"):
        client.create_workflow_run("etl", "1", workflow_hash="")
    with pytest.raises(ParamError, match="status 'done' is not a run status"):
        client.update_workflow_run_status(run_id, "done")
    with pytest.raises(ParamError, match="result must be a mapping"):
        client.update_workflow_run_status(run_id, "completed", result=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ParamError, match="error goes with status failed or cancelled"):
        client.update_workflow_run_status(run_id, "running", error="boom")
    with pytest.raises(ParamError, match="task_count must be a whole number"):
        client.update_workflow_run_status(run_id, "running", task_count=-1)
    with pytest.raises(ParamError, match="completed_at"):
        client.update_workflow_run_status(run_id, "completed", completed_at="yesterday")
    assert table_counts(client.store) == before
    assert client.get(run_id).status is RunStatus.PENDING


def test_a_tracked_workflow_is_never_started_as_a_sub_workflow(client: Client) -> None:
    """Its stand-in spec has no steps: a sub-workflow naming it is not found, not run empty."""
    client.create_workflow_run("outside_flow", "1")
    store: Any = client.store
    with (
        pytest.raises(WorkflowNotFoundError, match="no workflow 'outside_flow' is stored"),
        store._transaction(write=False) as tx,
    ):
        store.newest_spec(tx, "outside_flow", None)


def test_an_exception_is_kept_with_its_traceback(client: Client) -> None:
    run_id = client.create_workflow_run("etl", "1")
    try:
        raise KeyError("missing column")
    except KeyError as exc:
        client.update_workflow_run_status(run_id, "failed", error=exc)
    error = client.get(run_id).error
    assert error is not None
    assert (error.type, error.message) == ("KeyError", "'missing column'")
    assert error.traceback is not None and "raise KeyError" in error.traceback


# -- races: a task spawned while its run ends ---------------------------------------------


@pytest.fixture
def two(db_url: str) -> Iterator[tuple[Client, Client]]:
    """Two clients on one database, each with connections of its own."""
    second_url = db_url if db_url.startswith("sqlite") else f"{db_url}?application_name={SECOND}"
    with Client(db_url) as first, Client(second_url) as second:
        yield first, second


def test_a_run_failing_while_a_task_is_spawned_into_it_cancels_the_task(
    two: tuple[Client, Client], db_url: str
) -> None:
    first, second = two
    run_id = first.create_workflow_run("etl", "1")
    spawning = Held(
        first,
        "tracked_run_locked",
        lambda: first.spawn_task("store_suite.echo", {"x": 1}, workflow_run_id=run_id),
    )
    failing = Second(second, lambda: second.update_workflow_run_status(run_id, "failed"))
    failing.assert_blocked(db_url)
    spawned = spawning.release()
    failing.wait()
    assert first.get(run_id, with_steps=False).status is RunStatus.FAILED
    assert first.get(spawned.run_id, with_steps=False).status is RunStatus.CANCELLED
    assert claim(first) == []


def test_a_task_spawned_while_its_run_fails_is_refused(
    two: tuple[Client, Client], db_url: str
) -> None:
    first, second = two
    run_id = first.create_workflow_run("etl", "1")
    failing = Held(
        first, "tracked_run_locked", lambda: first.update_workflow_run_status(run_id, "failed")
    )
    spawning = Second(
        second, lambda: second.spawn_task("store_suite.echo", {"x": 1}, workflow_run_id=run_id)
    )
    spawning.assert_blocked(db_url)
    failing.release()
    with pytest.raises(ConflictError, match="is failed: no task can be spawned into it"):
        spawning.wait()
    assert count(first.store, "runs") == 1


# -- the caller's own transaction (conn=) -------------------------------------------------


def _tracked(client: Client, conn: Any) -> tuple[str, str]:
    """A run, a task spawned into it and a status, all written through ``conn``."""
    run_id = client.create_workflow_run("orders", "1", inputs={"order": 7}, conn=conn)
    spawned = client.spawn_task("store_suite.echo", {"x": 7}, workflow_run_id=run_id, conn=conn)
    client.update_workflow_run_status(run_id, "running", task_count=1, conn=conn)
    return run_id, spawned.run_id


def test_conn_writes_roll_back_and_commit_with_the_callers_postgres_transaction(
    pg_url: str,
) -> None:
    import psycopg

    with Client(pg_url) as client, psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE orders (id integer PRIMARY KEY)")
        conn.commit()
        conn.execute("INSERT INTO orders VALUES (7)")
        run_id, task_run = _tracked(client, conn)
        # not committed: nobody else sees it, no worker can claim it
        with pytest.raises(RunNotFoundError):
            client.get(run_id)
        assert claim(client) == []
        conn.rollback()
        assert count(client.store, "runs") == 0
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone() == (0,)

        conn.execute("INSERT INTO orders VALUES (7)")
        run_id, task_run = _tracked(client, conn)
        enqueued = client.enqueue(echo, "too", conn=conn)
        conn.commit()
        assert client.get(run_id).status is RunStatus.RUNNING
        assert client.get(run_id).task_count == 1
        assert sorted(s.run_id for s in claim(client)) == sorted([task_run, enqueued])
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone() == (1,)


def test_a_refused_write_leaves_the_callers_postgres_transaction_usable(pg_url: str) -> None:
    import psycopg

    with Client(pg_url) as client, psycopg.connect(pg_url) as conn:
        run_id = client.create_workflow_run("orders", "1", conn=conn)
        client.update_workflow_run_status(run_id, "running", conn=conn)
        with pytest.raises(ConflictError, match="cannot become pending"):
            client.update_workflow_run_status(run_id, "pending", conn=conn)
        client.update_workflow_run_status(run_id, "completed", conn=conn)  # still usable
        conn.commit()
        assert client.get(run_id).status is RunStatus.COMPLETED


def test_conn_in_autocommit_mode_commits_alone_or_joins_an_open_transaction(
    pg_url: str,
) -> None:
    import psycopg

    with Client(pg_url) as client, psycopg.connect(pg_url, autocommit=True) as conn:
        committed = client.create_workflow_run("orders", "1", conn=conn)
        assert client.get(committed).status is RunStatus.PENDING  # no transaction to join
        with pytest.raises(ZeroDivisionError), conn.transaction():
            client.create_workflow_run("orders", "1", idempotency_key="k", conn=conn)
            1 / 0  # noqa: B018
        assert count(client.store, "runs") == 1


def test_conn_to_another_database_or_in_a_failed_transaction_is_refused(
    pg_url: str, sqlite_url: str
) -> None:
    import psycopg

    from .helpers import pg_url_for

    with Client(pg_url) as client, psycopg.connect(pg_url_for("postgres")) as conn:
        with pytest.raises(ParamError, match="connected to database 'postgres'"):
            client.create_workflow_run("orders", "1", conn=conn)
        with pytest.raises(ParamError, match="takes a psycopg 3 connection"):
            client.create_workflow_run("orders", "1", conn=object())
    with Client(pg_url) as client, psycopg.connect(pg_url) as broken:
        with pytest.raises(psycopg.errors.DivisionByZero):
            broken.execute("SELECT 1 / 0")
        with pytest.raises(StoreError, match="transaction has failed; roll it back"):
            client.create_workflow_run("orders", "1", conn=broken)
    with Client(sqlite_url) as client:
        import sqlite3

        other = sqlite3.connect(":memory:")
        with pytest.raises(ParamError, match="a database in memory"):
            client.create_workflow_run("orders", "1", conn=other)
        other.close()


def test_conn_writes_roll_back_and_commit_with_the_callers_sqlite_transaction(
    sqlite_url: str,
) -> None:
    import sqlite3

    path = sqlite_url.removeprefix("sqlite:///")
    with Client(sqlite_url) as client:
        conn = sqlite3.connect(path, timeout=5)
        try:
            conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
            conn.execute("INSERT INTO orders VALUES (7)")  # opens the caller's transaction
            _tracked(client, conn)
            assert conn.in_transaction
            conn.rollback()
            assert count(client.store, "runs") == 0
            assert conn.execute("SELECT COUNT(*) FROM orders").fetchone() == (0,)

            run_id, task_run = _tracked(client, conn)  # begins the caller's transaction
            conn.execute("INSERT INTO orders VALUES (7)")
            conn.commit()
            assert client.get(run_id).status is RunStatus.RUNNING
            assert [s.run_id for s in claim(client)] == [task_run]
            assert conn.execute("SELECT COUNT(*) FROM orders").fetchone() == (1,)

            auto = sqlite3.connect(path, timeout=5, isolation_level=None)
            alone = client.create_workflow_run("orders", "1", conn=auto)  # commits alone
            assert not auto.in_transaction
            auto.close()
            assert client.get(alone).kind == "external"
        finally:
            conn.close()
