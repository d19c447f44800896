"""Date, time and choice params reach the run as the JSON text they are, on each backend."""

from __future__ import annotations

import datetime as dt

import pytest

import legato
from legato import Client, ParamError, RunStatus, Workflow

from .tasks_conditions import tag


def dated() -> Workflow:
    wf = Workflow("typed_params")
    wf.step(
        "show",
        tag,
        label=wf.param("day", type="date"),
        x={
            "at": wf.param("at", type="datetime"),
            "env": wf.param("env", "dev", type="choice", options=["dev", "prod"]),
        },
    )
    wf.outputs(shown="${{ steps.show.output }}")
    return wf


def test_python_dates_are_stored_and_passed_as_iso_text(db_url: str) -> None:
    at = dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    run = legato.run(dated(), {"day": dt.date(2024, 2, 29), "at": at}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.params == {"day": "2024-02-29", "at": "2024-05-01T09:30:00+02:00", "env": "dev"}
    assert run.outputs == {
        "shown": {"label": "2024-02-29", "x": {"at": "2024-05-01T09:30:00+02:00", "env": "dev"}}
    }


def test_a_value_outside_the_choices_stores_nothing(client: Client) -> None:
    with pytest.raises(ParamError, match='param \'env\' must be one of "dev", "prod", got str'):
        client.start(dated(), {"day": "2024-01-01", "at": "2024-01-01T00:00:00", "env": "qa"})
    assert client.list_runs() == []
