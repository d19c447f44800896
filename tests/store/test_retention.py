"""Retention: pruning old finished run trees in batches, never a run still going, and the
automatic rule one worker applies per interval."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from legato import Client, ConfigError, RunStatus, Worker, Workflow
from legato.model.retention import Retention
from legato.store.sql import SQLStore

from .helpers import claim, failed, ok, report, sql
from .tasks import echo

DAY = 86400.0
#: every table that holds rows of a run
RUN_TABLES = ("step_runs", "events", "scope_counters", "signals", "signal_channels", "run_tags")


def one_step(name: str = "kept") -> Workflow:
    wf = Workflow(name)
    wf.step("a", echo, x=wf.param("x"))
    return wf


def rows_of(client: Client, run_id: str) -> dict[str, int]:
    """How many rows each table holds for the run (the runs table included)."""
    counts = {"runs": len(sql(client.store, "SELECT id FROM runs WHERE id = ?", run_id))}
    for table in RUN_TABLES:
        counts[table] = len(
            sql(client.store, f"SELECT run_id FROM {table} WHERE run_id = ?", run_id)
        )
    return counts


def finish(client: Client, run_id: str, *, fail: bool = False) -> None:
    [step] = claim(client, root=run_id)
    report(client, [failed(step, "gone wrong") if fail else ok(step, "done")])


def statuses(client: Client) -> dict[str, RunStatus]:
    return {run.id: run.status for run in client.search_all(limit=1000)}


def test_prune_deletes_old_finished_runs_with_everything_they_hold(client: Client) -> None:
    wf = one_step()
    completed = client.start(wf, {"x": "old and done"}, tags={"env": "prod"})
    finish(client, completed)
    failed_run = client.start(wf, {"x": "old and failed"})
    finish(client, failed_run, fail=True)
    cancelled = client.start(wf, {"x": "old and cancelled"})
    client.signal(cancelled, "never_read", {"kept": True})  # a signal kept for no step
    client.cancel(cancelled, "not needed")
    pending = client.start(wf, {"x": "old but pending"})
    running = client.start(wf, {"x": "old but running"})
    claim(client, root=running)
    assert rows_of(client, completed)["run_tags"] == 1
    client.store.clock.advance(31 * DAY)
    recent = client.start(wf, {"x": "recent"})
    finish(client, recent)

    before = {run_id: rows_of(client, run_id) for run_id in (completed, cancelled)}
    assert before[completed]["events"] > 0 and before[cancelled]["signals"] == 1

    dry = client.prune("30d", dry_run=True)
    assert (dry.runs, dry.child_runs, dry.dry_run) == (3, 0, True)
    assert len(statuses(client)) == 6  # a dry run deletes nothing

    result = client.prune("30d")
    assert (result.runs, result.child_runs, result.skipped) == (3, 0, [])
    assert statuses(client) == {
        recent: RunStatus.COMPLETED,
        running: RunStatus.RUNNING,
        pending: RunStatus.PENDING,
    }
    for run_id in (completed, failed_run, cancelled):
        assert set(rows_of(client, run_id).values()) == {0}, run_id
    assert rows_of(client, pending)["step_runs"] == 1  # the rest untouched
    assert client.search(text="old and done").runs == []
    assert [r.id for r in client.search(text="old but")] == [running, pending]
    assert client.search(tags={"env": "prod"}).runs == []
    if client.store.dialect == "sqlite":  # type: ignore[attr-defined]
        sql(client.store, "INSERT INTO run_text (run_text) VALUES ('integrity-check')")
    assert client.prune("30d").total == 0  # nothing left to prune


def test_prune_filters_by_status_and_workflow(client: Client) -> None:
    done_a = client.start(one_step("alpha"), {"x": 1})
    finish(client, done_a)
    failed_a = client.start(one_step("alpha"), {"x": 2})
    finish(client, failed_a, fail=True)
    done_b = client.start(one_step("beta"), {"x": 3})
    finish(client, done_b)
    client.store.clock.advance(2 * DAY)
    assert client.prune("3d").total == 0  # not old enough
    assert client.prune("1d", status="failed").runs == 1
    assert client.prune("1d", status=["completed"], workflow="beta").runs == 1
    assert set(statuses(client)) == {done_a}
    with pytest.raises(ConfigError, match="'running' is not a status a run finishes in"):
        client.prune("1d", status="running")
    with pytest.raises(ConfigError, match="older_than: expected a duration"):
        client.prune("a month")


def parent_of_child() -> Workflow:
    child = Workflow("child")
    child.step("inner", echo, x=child.param("x"))
    parent = Workflow("parent")
    sub = parent.sub_workflow("sub", child, params={"x": parent.param("x")})
    parent.step("after", echo, x=sub.output, needs=[sub])
    return parent


def test_a_run_goes_with_its_tree_and_never_while_its_tree_is_going(client: Client) -> None:
    # A finished tree: the parent and its child, both completed.
    done = client.start(parent_of_child(), {"x": "tree"})
    finish(client, done)  # the child's step
    finish(client, done)  # the parent's last step
    [done_child] = [r.id for r in client.search_all() if r.parent_run_id == done]
    # A parent still running, whose child has finished.
    going = client.start(parent_of_child(), {"x": "going"})
    finish(client, going)  # the child's step: the child completes, the parent goes on
    [going_child] = [r.id for r in client.search_all() if r.parent_run_id == going]
    # A parent marked finished while its child still runs.
    odd = client.start(parent_of_child(), {"x": "odd"})
    [odd_child] = [r.id for r in client.search_all() if r.parent_run_id == odd]
    now = client.store.clock.now()
    finished_at: Any = now
    if client.store.dialect == "postgres":  # type: ignore[attr-defined]
        finished_at = sql(client.store, "SELECT legato_now()")[0][0]
    sql(
        client.store,
        "UPDATE runs SET status = 'completed', finished_at = ? WHERE id = ?",
        finished_at,
        odd,
    )
    client.store.clock.advance(10 * DAY)
    assert statuses(client)[going_child] is RunStatus.COMPLETED
    assert statuses(client)[going] is RunStatus.RUNNING
    assert statuses(client)[odd_child] is not RunStatus.COMPLETED

    assert (client.prune("1d", dry_run=True).runs, client.prune("1d", dry_run=True).child_runs) == (
        1,
        1,
    )
    result = client.prune("1d")
    assert (result.runs, result.child_runs, result.skipped) == (1, 1, [odd])
    left = statuses(client)
    assert done not in left and done_child not in left
    assert {going, going_child, odd, odd_child} <= set(left)


def test_a_large_prune_goes_in_small_transactions(client: Client) -> None:
    wf = one_step()
    ids = [client.start(wf, {"x": i}) for i in range(13)]
    for run_id in ids:
        client.cancel(run_id, "clearing")
    client.store.clock.advance(2 * DAY)
    commits = []
    store: Any = client.store
    original = store._transaction

    def counted(*, write: bool = True) -> Any:
        commits.append(write)
        return original(write=write)

    store._transaction = counted
    result = client.prune("1d", batch_size=4)
    store._transaction = original
    assert result.runs == 13
    assert result.batches >= 4  # at most four trees a batch (fewer if one is slow)
    assert commits.count(True) == result.batches + 1  # a batch a commit; the last finds none
    assert statuses(client) == {}


def test_a_run_another_transaction_holds_is_left_for_the_next_prune(pg_url: str) -> None:
    with Client(pg_url) as client:
        wf = one_step()
        ids = [client.start(wf, {"x": i}) for i in range(3)]
        for run_id in ids:
            client.cancel(run_id, "clearing")
        client.store.clock.advance(2 * DAY)
        with psycopg.connect(pg_url) as other:
            other.execute("SELECT id FROM runs WHERE id = %s FOR UPDATE", (ids[1],))
            assert client.prune("1d").runs == 2  # never waits for the held row
        assert set(statuses(client)) == {ids[1]}
        assert client.prune("1d").runs == 1


def test_the_automatic_rule_runs_once_per_interval_whoever_asks(db_url: str) -> None:
    rule = Retention.of("1d", every="1h")
    with Client(db_url) as first, Client(db_url) as second:
        old = first.start(one_step(), {"x": 1})
        first.cancel(old, "done with it")
        for client in (first, second):
            client.store.clock.advance(2 * DAY)
        taken = first.apply_retention(rule)
        assert taken is not None and taken.runs == 1
        assert second.apply_retention(rule) is None  # within the hour: not its turn
        assert first.apply_retention(rule) is None
        newer = second.start(one_step(), {"x": 2})
        second.cancel(newer, "done with it too")
        for client in (first, second):
            client.store.clock.advance(2 * DAY)
        again = second.apply_retention(rule)
        assert again is not None and again.runs == 1
        assert first.apply_retention(Retention.of("1d", every="1h")) is None
        assert first.apply_retention() is None  # no rule set: nothing to do


def test_many_workers_asking_at_once_take_one_turn(db_url: str) -> None:
    clients = [Client(db_url) for _ in range(4)]
    try:
        store: SQLStore = clients[0].store  # type: ignore[assignment]
        assert store.claim_turn("probe", 60) is True  # the first ever asks
        for client in clients:
            client.store.clock.advance(61)
        turns: list[bool] = []
        barrier = threading.Barrier(len(clients))

        def ask(client: Client) -> None:
            barrier.wait()
            turns.append(client.store.claim_turn("probe", 60))

        threads = [threading.Thread(target=ask, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(turns) == [False, False, False, True]
    finally:
        for client in clients:
            client.close()


def test_a_running_worker_applies_its_rule(client: Client) -> None:
    old = client.start(one_step(), {"x": 1})
    client.cancel(old, "done with it")
    client.store.clock.advance(2 * DAY)
    worker = Worker(client, retention="1d", poll_interval=0.05)
    assert worker.retention is not None and worker.retention.older_than == DAY
    thread = threading.Thread(
        target=worker.run, kwargs={"until": lambda tick: old not in statuses(client)}
    )
    thread.start()
    deadline = time.monotonic() + 20
    while old in statuses(client) and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()
    thread.join(timeout=20)
    assert old not in statuses(client)


def test_the_rule_from_settings(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    monkeypatch.setenv("LEGATO_RETENTION", "30d")
    monkeypatch.setenv("LEGATO_RETENTION_STATUS", "completed, cancelled")
    monkeypatch.setenv("LEGATO_RETENTION_EVERY", "10m")
    with Client(sqlite_url) as client:
        rule = client.settings.retention
        assert rule == Retention(30 * DAY, (RunStatus.COMPLETED, RunStatus.CANCELLED), every=600.0)
        worker = Worker(client)
        assert worker.retention == rule
        worker.close()
    monkeypatch.setenv("LEGATO_RETENTION", "off")
    with Client(sqlite_url) as client:
        assert client.settings.retention is None
    monkeypatch.setenv("LEGATO_RETENTION", "a month")
    with pytest.raises(ConfigError, match="LEGATO_RETENTION: expected a duration"):
        Client(sqlite_url)
    monkeypatch.setenv("LEGATO_RETENTION", "30d")
    monkeypatch.setenv("LEGATO_RETENTION_STATUS", "pending")
    with pytest.raises(ConfigError, match="LEGATO_RETENTION_STATUS: 'pending' is not a status"):
        Client(sqlite_url)
