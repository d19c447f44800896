"""Param types ``date``, ``datetime`` and ``choice``, and a workflow's schedule triggers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from legato import DefinitionError, ParamError, Workflow, WorkflowSpec
from legato.cli.params import build_params

T = "unit.t"


def spec_with(params: dict[str, Any], **extra: Any) -> WorkflowSpec:
    return WorkflowSpec.parse(
        {"name": "wf", "params": params, "steps": [{"id": "a", "task": T}], **extra}
    )


def problems(params: dict[str, Any], **extra: Any) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        spec_with(params, **extra)
    return info.value.problems


DATED = {
    "day": {"type": "date"},
    "at": {"type": "datetime", "required": False, "default": "2024-01-01T00:00:00Z"},
    "level": {"type": "choice", "options": ["low", 2, True], "required": False, "default": 2},
}


# -- binding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "bound"),
    [
        ({"day": "2024-02-29"}, {"day": "2024-02-29", "at": "2024-01-01T00:00:00Z", "level": 2}),
        ({"day": dt.date(2024, 3, 1)}, {"day": "2024-03-01"}),
        (
            {"day": "2024-01-01", "at": "2024-05-01T09:30:00+02:00"},
            {"at": "2024-05-01T09:30:00+02:00"},
        ),
        ({"day": "2024-01-01", "at": "2024-05-01T09:30:00Z"}, {"at": "2024-05-01T09:30:00+00:00"}),
        ({"day": "2024-01-01", "at": "2024-05-01 09:30"}, {"at": "2024-05-01T09:30:00"}),
        (
            {"day": "2024-01-01", "at": dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.UTC)},
            {"at": "2024-05-01T09:30:00+00:00"},
        ),
        ({"day": "2024-01-01", "level": "low"}, {"level": "low"}),
        ({"day": "2024-01-01", "level": True}, {"level": True}),
    ],
)
def test_dates_times_and_choices_bind_as_iso_text_and_options(
    given: dict[str, Any], bound: dict[str, Any]
) -> None:
    result = spec_with(DATED).bind_params(given)
    assert {k: result[k] for k in bound} == bound


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"day": "2023-02-29"},
            "param 'day' must be a date, ISO text YYYY-MM-DD (e.g. 2024-05-01), "
            "got str '2023-02-29'",
        ),
        (
            {"day": "20240101"},
            "param 'day' must be a date, ISO text YYYY-MM-DD (e.g. 2024-05-01), got str '20240101'",
        ),
        (
            {"day": 20240101},
            "param 'day' must be a date, ISO text YYYY-MM-DD (e.g. 2024-05-01), got int 20240101",
        ),
        ({"day": dt.datetime(2024, 1, 1)}, "param 'day' must be a date"),
        (
            {"day": "2024-01-01", "at": "tomorrow"},
            "param 'at' must be a datetime, ISO 8601 text (e.g. 2024-05-01T09:30:00+02:00), "
            "got str 'tomorrow'",
        ),
        ({"day": "2024-01-01", "at": "2024-13-01T00:00"}, "param 'at' must be a datetime"),
        (
            {"day": "2024-01-01", "level": "2"},
            "param 'level' must be one of \"low\", 2, true, got str '2'",
        ),
        (
            {"day": "2024-01-01", "level": 1},
            "param 'level' must be one of \"low\", 2, true, got int 1",
        ),
    ],
)
def test_a_value_that_does_not_fit_names_the_param_the_shape_and_what_was_found(
    given: dict[str, Any], message: str
) -> None:
    with pytest.raises(ParamError) as info:
        spec_with(DATED).bind_params(given)
    assert str(info.value).startswith(f"workflow wf@1: {message}")


def test_declarations_are_checked_where_they_are_written() -> None:
    assert problems({"level": {"type": "choice"}}) == [
        "params.level: a choice param needs options: a non-empty list of the values it may take"
    ]
    assert problems({"level": {"type": "choice", "options": []}})[0].endswith("may take")
    assert problems({"n": {"type": "int", "options": [1]}}) == [
        "params.n: options belong to a choice param, not to a int one"
    ]
    assert problems({"c": {"type": "choice", "options": [{"a": 1}]}}) == [
        "params.c: options are text, numbers or booleans, got {'a': 1}"
    ]
    assert problems({"c": {"type": "choice", "options": ["a", "a"]}}) == [
        "params.c: options are given twice: ['a', 'a']"
    ]
    assert problems({"d": {"type": "date", "required": False, "default": "01/02/2024"}}) == [
        "params.d: default must be a date, ISO text YYYY-MM-DD (e.g. 2024-05-01), "
        "got str '01/02/2024'"
    ]
    assert problems({"c": {"type": "choice", "options": ["a"], "default": "b"}}) == [
        "params.c: default must be one of \"a\", got str 'b'"
    ]


def test_the_builder_declares_them() -> None:
    wf = Workflow("declared")
    wf.step("a", T, day=wf.param("day", dt.date(2024, 1, 2), type="date"))
    wf.param("level", "low", type="choice", options=["low", "high"])
    spec = wf.spec
    assert spec.params["day"].default == "2024-01-02"
    assert spec.params["level"].options == ["low", "high"]
    assert spec.bind_params({})["level"] == "low"
    with pytest.raises(DefinitionError, match="param 'x': a choice param needs options"):
        wf.param("x", type="choice")


def test_the_command_line_reads_options_and_dates_as_written() -> None:
    spec = spec_with(DATED)
    pairs = {"day": "2024-01-02", "at": "2024-01-02T03:04:05Z", "level": "2"}
    assert build_params(spec, pairs) == {
        "day": "2024-01-02",
        "at": "2024-01-02T03:04:05+00:00",
        "level": 2,
    }
    assert build_params(spec, {"level": "true"})["level"] is True
    assert build_params(spec, {"level": "low"})["level"] == "low"
    with pytest.raises(ParamError, match=r"-p level=LOW: param 'level' must be one of"):
        build_params(spec, {"level": "LOW"})


# -- triggers --------------------------------------------------------------------------------


def test_triggers_are_stored_checked_and_left_out_when_there_are_none() -> None:
    plain = spec_with({})
    assert "triggers" not in plain.to_json()
    scheduled = spec_with(
        {"day": {"type": "date", "required": False}},
        triggers=[
            {"cron": "0 6 * * 1-5", "timezone": "Europe/Paris", "params": {"day": "2024-01-01"}},
            {"cron": "@hourly"},
        ],
    )
    assert [(t.cron, t.timezone, t.params) for t in scheduled.triggers] == [
        ("0 6 * * 1-5", "Europe/Paris", {"day": "2024-01-01"}),
        ("@hourly", "UTC", {}),
    ]
    assert scheduled.content_hash != plain.content_hash
    assert WorkflowSpec.parse(scheduled.to_json()) == scheduled


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ({"cron": "61 * * * *"}, "triggers.0.cron: '61 * * * *' is not a cron expression"),
        ({"cron": "* * *"}, "triggers.0.cron: '* * *' is not a cron expression"),
        ({"cron": "0 0 * * * *"}, "'0 0 * * * *' is not a cron expression: it has 6 fields"),
        (
            {"cron": "0 6 * * *", "timezone": "Mars/Olympus"},
            "triggers.0.timezone: 'Mars/Olympus' is not an IANA time zone",
        ),
        (
            {"cron": "0 6 * * *", "params": {"nope": 1}},
            "trigger 0 (0 6 * * *) params: unknown param 'nope'",
        ),
        (
            {"cron": "0 6 * * *", "params": {"day": "soon"}},
            "trigger 0 (0 6 * * *) params: param 'day' must be a date",
        ),
    ],
)
def test_a_bad_trigger_is_named(trigger: dict[str, Any], message: str) -> None:
    found = problems({"day": {"type": "date", "required": False}}, triggers=[trigger])
    assert len(found) == 1 and message in found[0], found


def test_the_builder_schedules_a_workflow() -> None:
    wf = Workflow("nightly")
    wf.param("day", None, type="date")
    wf.step("a", T)
    assert wf.schedule("0 2 * * *", timezone="America/New_York", params={"day": "2024-01-01"}) is wf
    wf.schedule("30 * * * *")
    assert [t.model_dump() for t in wf.spec.triggers] == [
        {"cron": "0 2 * * *", "timezone": "America/New_York", "params": {"day": "2024-01-01"}},
        {"cron": "30 * * * *", "timezone": "UTC", "params": {}},
    ]
    with pytest.raises(DefinitionError, match="workflow 'nightly': schedule cron: 'every day' is"):
        wf.schedule("every day")
    with pytest.raises(DefinitionError, match=r"schedule timezone: 'CET\+1' is not an IANA time"):
        wf.schedule("@daily", timezone="CET+1")
