"""Searching runs: each filter alone and combined, text in params, outputs and errors,
pages that stay put while runs are started, and the query-string form."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from legato import Client, ParamError, RunStatus, Workflow
from legato.store import search as search_store

from .helpers import claim, failed, ok, report, sql
from .tasks import echo

#: seconds between the corpus's runs, on the store's clock
GAP = 600.0


def flow(name: str, version: str = "1") -> Workflow:
    wf = Workflow(name, version=version)
    step = wf.step("a", echo, x=wf.param("x"))
    wf.outputs(out=step.output)
    return wf


def corpus(client: Client) -> dict[str, str]:
    """Five runs, ``GAP`` seconds apart (oldest first), in every status search tells apart."""
    clock = client.store.clock
    ids: dict[str, str] = {}

    def start(label: str, wf: Workflow, x: str, **options: Any) -> str:
        ids[label] = client.start(wf, {"x": x}, **options)
        clock.advance(GAP)
        return ids[label]

    start(
        "done",
        flow("alpha"),
        "ord-1001 apples",
        tags={"env": "prod", "team": "data"},
        created_by="alice",
        correlation_id="batch-1",
    )
    report(client, [ok(claim(client)[0], "delivered to s3://bucket/apples")])
    start("failed", flow("alpha"), "ord-1002", tags={"env": "dev"}, created_by="bob")
    [step] = claim(client)
    report(client, [failed(step, "Connection refused by db-3", type_="ConnectionError")])
    start(
        "pending",
        flow("beta", "2"),
        "ord-1003",
        tags={"env": "prod"},
        created_by="alice",
        correlation_id="batch-1",
    )
    cancelled = start(
        "cancelled", flow("beta"), 'say "hi" 100%_done', tags={"env": "prod", "team": "web"}
    )
    client.cancel(cancelled, "no longer needed")
    start("running", flow("alpha", "2"), "Ünïcode Straße \\ back")
    claim(client, root=ids["running"])
    return ids


def found(client: Client, ids: dict[str, str], **filters: Any) -> list[str]:
    """The labels of the runs a search returns, in its order."""
    names = {run_id: label for label, run_id in ids.items()}
    return [names[run.id] for run in client.search(**filters)]


def test_each_filter_alone(client: Client) -> None:
    ids = corpus(client)
    newest_first = ["running", "cancelled", "pending", "failed", "done"]
    assert found(client, ids) == newest_first
    created = {label: client.get(run_id).created_at for label, run_id in ids.items()}
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"status": "failed"}, ["failed"]),
        ({"status": RunStatus.PENDING}, ["pending"]),
        ({"status": ["completed", "cancelled"]}, ["cancelled", "done"]),
        ({"workflow": "alpha"}, ["running", "failed", "done"]),
        ({"version": "2"}, ["running", "pending"]),
        ({"tags": {"env": "prod"}}, ["cancelled", "pending", "done"]),
        ({"tags": {"env": "prod", "team": "web"}}, ["cancelled"]),
        ({"tags": {"team": "nobody"}}, []),
        ({"correlation_id": "batch-1"}, ["pending", "done"]),
        ({"created_by": "alice"}, ["pending", "done"]),
        ({"started_after": created["pending"]}, ["running", "cancelled", "pending"]),
        ({"started_before": created["pending"]}, ["failed", "done"]),
        ({"started_after": created["pending"].isoformat()}, ["running", "cancelled", "pending"]),
        ({"text": "ord-100"}, ["pending", "failed", "done"]),
        ({"order": "oldest"}, newest_first[::-1]),
        ({"limit": 2}, newest_first[:2]),
    ]
    for filters, expected in cases:
        assert found(client, ids, **filters) == expected, filters


def test_filters_combined(client: Client) -> None:
    ids = corpus(client)
    created = {label: client.get(run_id).created_at for label, run_id in ids.items()}
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"workflow": "alpha", "status": ["failed", "running"]}, ["running", "failed"]),
        ({"workflow": "alpha", "version": "1", "tags": {"env": "prod"}}, ["done"]),
        ({"tags": {"env": "prod"}, "created_by": "alice", "text": "ord-"}, ["pending", "done"]),
        ({"correlation_id": "batch-1", "tags": {"team": "data"}}, ["done"]),
        ({"status": "completed", "text": "apples", "workflow": "alpha"}, ["done"]),
        ({"status": "failed", "text": "apples"}, []),
        (
            {"started_after": created["failed"], "started_before": created["cancelled"]},
            ["pending", "failed"],
        ),
        ({"tags": {"env": "prod"}, "started_before": created["pending"]}, ["done"]),
        ({"tags": {"env": "prod"}, "order": "oldest", "limit": 2}, ["done", "pending"]),
    ]
    for filters, expected in cases:
        assert found(client, ids, **filters) == expected, filters


@pytest.fixture(params=["index drives", "runs drive"])
def drive(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every search both ways: the text or tag index read first, or the runs read in order
    with text and tags checked on each (what a common term or tag does)."""
    monkeypatch.setattr(
        search_store, "DRIVE_BELOW", 10**9 if request.param == "index drives" else 0
    )
    yield request.param


def test_text_is_found_in_params_outputs_and_errors(client: Client, drive: str) -> None:
    ids = corpus(client)
    cases: list[tuple[Any, list[str]]] = [
        ("ord-1002", ["failed"]),  # params
        ("s3://bucket/apples", ["done"]),  # outputs
        ("refused by db-3", ["failed"]),  # the error's message
        ("ConnectionError", ["failed"]),  # its type
        ("no longer needed", ["cancelled"]),  # a cancel's reason
        ("REFUSED", ["failed"]),  # any case
        ("Apples", ["done"]),
        ('say "hi"', ["cancelled"]),  # quotes as written, not as JSON escapes them
        ("100%_done", ["cancelled"]),  # % and _ are no wildcards
        ("1%0", []),
        ("ord_1001", []),
        ("Straße \\ back", ["running"]),  # a backslash, letters beyond ASCII
        (["ord-", "apples"], ["done"]),  # every term must be found
        (["apples", "refused"], []),
        ("nowhere to be found", []),
    ]
    for text, expected in cases:
        assert found(client, ids, text=text) == expected, text
        if isinstance(text, str) and '"' not in text:
            query = f'"{text}"'
            assert found(client, ids, query=query) == expected, query


def test_tags_are_found_whichever_drives(client: Client, drive: str) -> None:
    ids = corpus(client)
    assert found(client, ids, tags={"env": "prod"}) == ["cancelled", "pending", "done"]
    assert found(client, ids, tags={"env": "prod", "team": "data"}) == ["done"]
    assert found(client, ids, tags={"env": "prod"}, status="pending") == ["pending"]
    assert found(client, ids, tags={"env": "prod"}, text="ord-") == ["pending", "done"]
    assert found(client, ids, tags={"env": "prod"}, text="ord-", limit=1) == ["pending"]


def test_run_tags_follow_the_runs_row(client: Client) -> None:
    """Tags are searched through rows triggers keep in step with runs.tags, whoever writes."""
    ids = corpus(client)
    sql(client.store, "UPDATE runs SET tags = ? WHERE id = ?", '{"env": "qa"}', ids["done"])
    assert found(client, ids, tags={"env": "qa"}) == ["done"]
    assert found(client, ids, tags={"team": "data"}) == []
    assert found(client, ids, tags={"env": "prod"}) == ["cancelled", "pending"]


def test_text_index_follows_changed_outputs_and_errors(client: Client) -> None:
    ids = corpus(client)
    sql(client.store, "UPDATE runs SET error = NULL WHERE id = ?", ids["failed"])
    sql(client.store, "UPDATE runs SET outputs = ? WHERE id = ?", '{"out": "pears"}', ids["done"])
    assert found(client, ids, text="refused") == []
    assert found(client, ids, text="apples") == ["done"]  # still in its params
    assert found(client, ids, text="pears") == ["done"]
    assert found(client, ids, text="s3://bucket") == []


def pages(client: Client, between: Any = None, **filters: Any) -> list[list[str]]:
    """Every page of a search, calling ``between()`` after each page but the last."""
    result: list[list[str]] = []
    cursor = None
    while True:
        page = client.search(cursor=cursor, **filters)
        result.append([run.id for run in page])
        if page.next_cursor is None:
            return result
        cursor = page.next_cursor
        if between is not None:
            between()


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_pages_stay_put_while_runs_are_started(client: Client, order: str) -> None:
    wf = flow("paged")
    for i in range(7):
        client.start(wf, {"x": f"item {i}"}, tags={"env": "prod"})
    late: list[str] = []

    def start_more() -> None:
        late.extend(client.start(wf, {"x": "item late"}, tags={"env": "prod"}) for _ in range(2))

    for filters in ({}, {"tags": {"env": "prod"}}, {"text": "item"}):
        before = [run.id for run in client.search_all(order=order, limit=100, **filters)]
        late.clear()
        got = pages(client, start_more, order=order, limit=3, **filters)
        flat = [run_id for page in got for run_id in page]
        assert len(flat) == len(set(flat)), f"a run came twice: {filters}"
        if order == "newest":  # runs started meanwhile are newer than the first page
            assert flat == before, filters
        else:  # oldest first: they come after the rest, in the order they started
            assert flat[: len(before)] == before, filters
            assert flat[len(before) :] == late[: len(flat) - len(before)], filters


def test_pages_split_runs_started_at_the_same_moment(client: Client) -> None:
    wf = flow("ties")
    ids = [client.start(wf, {"x": str(i)}, tags={"k": "v"}) for i in range(5)]
    moment = datetime(2024, 5, 1, tzinfo=UTC)
    value: Any = moment.timestamp() if client.store.dialect == "sqlite" else moment  # type: ignore[attr-defined]
    for table, column in (("runs", "id"), ("run_tags", "run_id")):
        sql(client.store, f"UPDATE {table} SET created_at = ? WHERE {column} IS NOT NULL", value)
    for filters in ({}, {"tags": {"k": "v"}}):
        got = pages(client, limit=2, **filters)
        assert [len(p) for p in got] == [2, 2, 1]
        assert [run_id for page in got for run_id in page] == sorted(ids, reverse=True)
        oldest = pages(client, limit=2, order="oldest", **filters)
        assert [run_id for page in oldest for run_id in page] == sorted(ids)


def test_a_cursor_is_checked(client: Client) -> None:
    wf = flow("cursors")
    for i in range(3):
        client.start(wf, {"x": str(i)})
    page = client.search(limit=1)
    assert page.next_cursor is not None and len(page) == 1
    assert client.search(limit=5).next_cursor is None  # the last page says so
    with pytest.raises(ParamError, match="with the same order"):
        client.search(limit=1, order="oldest", cursor=page.next_cursor)
    for bad in ("nonsense", "W10", page.next_cursor[:-3], "eyJ4IjoxfQ"):
        with pytest.raises(ParamError, match="is not one a search of this database returned"):
            client.search(cursor=bad)


def test_search_returns_runs_with_their_metadata(client: Client) -> None:
    ids = corpus(client)
    [done] = client.search(correlation_id="batch-1", status="completed")
    assert done.id == ids["done"]
    assert (done.workflow, done.version, done.created_by) == ("alpha", "1", "alice")
    assert done.tags == {"env": "prod", "team": "data"}
    assert done.params == {"x": "ord-1001 apples"}
    assert done.outputs == {"out": "delivered to s3://bucket/apples"}
    assert (done.steps_total, done.steps_done, done.task_count) == (1, 1, 1)
    assert done.workflow_hash == client.get(ids["done"]).workflow_hash
    assert done.steps == {}
    [bad] = client.search(status="failed")
    assert bad.error is not None and bad.error.type == "ConnectionError"


def test_query_string_and_arguments(client: Client) -> None:
    ids = corpus(client)
    assert found(client, ids, query="status:failed,completed workflow:alpha") == [
        "failed",
        "done",
    ]
    assert found(client, ids, query='tag:env=prod "ord-"', created_by="alice") == [
        "pending",
        "done",
    ]
    assert found(client, ids, query="workflow:beta@2") == ["pending"]
    assert len(found(client, ids, query="since:1h")) == 5
    assert found(client, ids, query="until:1h") == []
    with pytest.raises(ParamError, match="status given both in the query"):
        client.search("status:failed", status="completed")
    with pytest.raises(ParamError, match="unknown run status 'faild'"):
        client.search("status:faild")


def test_search_all_reads_every_page(client: Client) -> None:
    wf = flow("all")
    ids = [client.start(wf, {"x": str(i)}) for i in range(5)]
    assert [run.id for run in client.search_all(workflow="all", limit=2)] == ids[::-1]


def test_bad_arguments_are_refused_before_the_database(client: Client) -> None:
    with pytest.raises(ParamError, match="limit must be a whole number from 1 to 1000"):
        client.search(limit=0)
    with pytest.raises(ParamError, match="order must be 'newest' or 'oldest'"):
        client.search(order="random")
    with pytest.raises(ParamError, match="at least 3 characters"):
        client.search(text="ab")
    with pytest.raises(ParamError, match="started_after 'yesterday' is not an ISO 8601"):
        client.search(started_after="yesterday")
    assert client.search(started_after=datetime.now(UTC) + timedelta(days=1)).runs == []
