"""A run's logical date: the time it is for, kept with the run and read as ``run.logical_date``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

import legato
from legato import Client, ParamError, RunStatus, Workflow
from legato.client import logical_date_option

from .helpers import claim, sql, table_counts
from .tasks import echo
from .test_cost import counting


def dated() -> Workflow:
    wf = Workflow("dated")
    step = wf.step("say", echo, x="${{ run.logical_date }}")
    wf.outputs(said=step.output)
    return wf


def said(client: Client) -> Any:
    """What the run's one step gets as its input, resolved from ``run.logical_date``."""
    [step] = claim(client)
    return step.kwargs["x"]


def test_by_default_a_run_is_for_the_time_it_was_created(client: Client) -> None:
    run = client.get(client.start(dated()))
    assert run.logical_date == run.created_at
    assert said(client) == run.created_at.isoformat()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (datetime(2024, 5, 1, 6, 30, tzinfo=timezone(timedelta(hours=2))), "2024-05-01T04:30:00"),
        (datetime(2024, 5, 1, 6, 30, 0, 250000), "2024-05-01T06:30:00.250000"),  # naive: UTC
        (date(2024, 5, 1), "2024-05-01T00:00:00"),
        ("2024-05-01", "2024-05-01T00:00:00"),
        ("2024-05-01T06:30:00Z", "2024-05-01T06:30:00"),
        (" 2024-05-01T06:30:00-05:00 ", "2024-05-01T11:30:00"),
    ],
)
def test_a_logical_date_is_read_as_utc(given: Any, expected: str) -> None:
    assert logical_date_option(given) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


@pytest.mark.parametrize("given", ["yesterday", "2024-13-01", 20240501])
def test_a_bad_logical_date_names_what_is_expected(given: Any) -> None:
    with pytest.raises(ParamError, match="logical_date"):
        logical_date_option(given)


def test_a_given_logical_date_is_kept(client: Client) -> None:
    given = datetime(2024, 5, 1, 6, 30, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    run = client.get(client.start(dated(), logical_date=given))
    assert run.logical_date == given
    assert run.logical_date.tzinfo is UTC  # type: ignore[union-attr]
    assert said(client) == "2024-05-01T04:30:00.250000+00:00"


def test_a_bad_logical_date_is_refused_before_anything_is_stored(client: Client) -> None:
    before = table_counts(client.store)
    with pytest.raises(ParamError) as info:
        client.start(dated(), logical_date="yesterday")
    assert str(info.value) == (
        "logical_date 'yesterday' is not an ISO 8601 date or time "
        "(2024-05-01, 2024-05-01T06:00:00+02:00)"
    )
    assert table_counts(client.store) == before


def test_a_child_run_is_for_the_same_time_as_its_parent(client: Client, db_url: str) -> None:
    parent = Workflow("parent_of_dated")
    sub = parent.sub_workflow("sub", dated())
    parent.outputs(child=sub.output)
    run = legato.run(parent, url=db_url, timeout=30, logical_date="2023-12-31T23:00:00+00:00")
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"child": {"said": "2023-12-31T23:00:00+00:00"}}
    child = client.get(run.steps["sub"].child_run_id or "")
    assert child.logical_date == run.logical_date == datetime(2023, 12, 31, 23, tzinfo=UTC)


def test_a_run_stored_without_a_logical_date_reads_its_created_time(db_url: str) -> None:
    with Client(db_url) as client:
        run_id = client.start(dated())
        sql(client.store, "UPDATE runs SET logical_date = NULL")  # as runs made before it existed
    with Client(db_url) as fresh:  # nothing cached about the run
        run = fresh.get(run_id)
        assert run.logical_date == run.created_at
        assert said(fresh) == run.created_at.isoformat()


def test_a_logical_date_costs_creating_a_run_no_statement(client: Client) -> None:
    client.start(dated())  # the connection's first write loads the text index's settings
    with counting(client) as plain:
        client.start(dated())
    with counting(client) as given:
        client.start(dated(), logical_date="2024-05-01")
    queries = [q for q, _ in given["queries"]]
    assert queries == [q for q, _ in plain["queries"]]
    # the insert returns the date it kept: nothing reads the run back to know it
    assert queries[:2] == ["insert_spec", "insert_run"]
    assert not {"run_contexts", "get_run"} & set(queries)
    if client.store.dialect == "sqlite":  # type: ignore[attr-defined]
        assert len(given["statements"]) == len(plain["statements"])
