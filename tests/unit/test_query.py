"""The search query string: its grammar, and errors that name the token at fault."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from legato import ParamError, RunStatus
from legato.model.search import RunFilter
from legato.query import parse_query

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)


def parse(text: str) -> dict[str, Any]:
    return parse_query(text, now=NOW)


def test_the_example_from_the_docs() -> None:
    assert parse('status:failed workflow:etl tag:env=prod since:2d "timeout"') == {
        "status": ["failed"],
        "workflow": "etl",
        "tags": {"env": "prod"},
        "started_after": NOW - timedelta(days=2),
        "text": ["timeout"],
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {}),
        ("   ", {}),
        ("status:failed,cancelled", {"status": ["failed", "cancelled"]}),
        ("status:failed status:PAUSED", {"status": ["failed", "paused"]}),
        ("is:running", {"status": ["running"]}),
        ("workflow:etl@2.1", {"workflow": "etl", "version": "2.1"}),
        ("wf:etl version:3", {"workflow": "etl", "version": "3"}),
        ("tag:env=prod tag:team=data", {"tags": {"env": "prod", "team": "data"}}),
        ("tag:env=prod tag:env=prod", {"tags": {"env": "prod"}}),
        ('tag:"team=data eng"', {"tags": {"team": "data eng"}}),
        ("tag:note=", {"tags": {"note": ""}}),
        ("tag:url=a=b", {"tags": {"url": "a=b"}}),
        ("correlation:order-42", {"correlation_id": "order-42"}),
        ("correlation_id:order-42", {"correlation_id": "order-42"}),
        ("by:alice", {"created_by": "alice"}),
        ("created_by:alice", {"created_by": "alice"}),
        ("since:90m", {"started_after": NOW - timedelta(minutes=90)}),
        ("after:1w", {"started_after": NOW - timedelta(weeks=1)}),
        ("since:2024-05-01", {"started_after": datetime(2024, 5, 1, tzinfo=UTC)}),
        (
            "since:2024-05-01T06:00:00+02:00 until:2024-05-02",
            {
                "started_after": datetime(2024, 5, 1, 4, tzinfo=UTC),
                "started_before": datetime(2024, 5, 2, tzinfo=UTC),
            },
        ),
        ("before:1h", {"started_before": NOW - timedelta(hours=1)}),
        ("timeout", {"text": ["timeout"]}),
        ("connection refused", {"text": ["connection", "refused"]}),
        ('"connection refused"', {"text": ["connection refused"]}),
        ('"say \\"hi\\""', {"text": ['say "hi"']}),
        ('"s3://bucket/key"', {"text": ["s3://bucket/key"]}),
        ('"a\\\\b" ', {"text": ["a\\b"]}),
        ('status:failed"timeout"', {"status": ["failed"], "text": ["timeout"]}),
    ],
)
def test_grammar(query: str, expected: dict[str, object]) -> None:
    assert parse(query) == expected


def test_it_fills_the_same_filter_as_arguments() -> None:
    parsed = RunFilter.of(**parse('status:failed tag:env=prod by:ci "disk full" since:2024-05-01'))
    given = RunFilter.of(
        status=RunStatus.FAILED,
        tags={"env": "prod"},
        created_by="ci",
        text="disk full",
        started_after=date(2024, 5, 1),
    )
    assert parsed == given


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "status:faild",
            "query: 'status:faild' at character 1: unknown run status 'faild'; expected "
            "pending, running, paused, completed, failed or cancelled",
        ),
        (
            "x s3://bucket",
            "query: unknown filter 's3' in 's3://bucket' at character 3; the filters are "
            "status:, workflow:, version:, tag:, correlation:, by:, since:, until:; to search "
            'for this text, quote it: "s3://bucket"',
        ),
        ("workflow:", "query: 'workflow:' at character 1 needs a value after the colon"),
        ('tag:""', "query: 'tag:\"\"' at character 1 needs a value after the colon"),
        ('"never closed', "query: the quote at character 1 is never closed"),
        ("tag:env", "query: 'tag:env' at character 1: expected tag:KEY=VALUE"),
        ("tag:=prod", "query: 'tag:=prod' at character 1: expected tag:KEY=VALUE"),
        (
            "tag:env=prod tag:env=dev",
            "query: 'tag:env=dev' at character 14: tag 'env' is given twice, with different values",
        ),
        (
            "workflow:a workflow:b",
            "query: 'workflow:b' at character 12: workflow is given twice",
        ),
        ("workflow:@2", "expected workflow:NAME or workflow:NAME@VERSION"),
        (
            "since:yesterday",
            "query: 'since:yesterday' at character 1: expected a duration before now (30m, "
            "2d, 1w) or an ISO 8601 date or time",
        ),
        ("until:-5m", "'until:-5m' at character 1: expected a duration before now"),
        ("ab", "query 'ab': text term 'ab' is too short: a term needs at least 3 characters"),
        ('"  "', "text term '  ' is too short"),
    ],
)
def test_errors_name_the_token(query: str, message: str) -> None:
    with pytest.raises(ParamError) as info:
        parse(query)
    assert message in str(info.value)


def test_relative_times_count_back_from_this_machines_clock() -> None:
    before = datetime.now(UTC)
    after = parse_query("since:1h")["started_after"]
    assert isinstance(after, datetime)
    assert before - timedelta(hours=1, seconds=1) <= after <= datetime.now(UTC) - timedelta(hours=1)


def test_filter_arguments_are_checked() -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"status": "lost"}, "unknown run status 'lost'"),
        ({"status": ["failed", 3]}, "unknown run status 3"),
        ({"workflow": "  "}, "workflow must be non-empty text"),
        ({"tags": {"env": 1}}, "tags are non-empty text keys with text values"),
        ({"tags": ["env"]}, "tags must be a mapping"),
        ({"tags": {f"k{i}": "v" for i in range(11)}}, "at most 10 tags"),
        ({"text": "x" * 201}, "is over 200 characters"),
        ({"text": [f"term{i}" for i in range(9)]}, "at most 8 text terms"),
        ({"text": [b"bytes"]}, "text terms are text"),
        ({"started_before": 5}, "started_before must be a datetime, a date or ISO 8601 text"),
    ]
    for arguments, message in cases:
        with pytest.raises(ParamError, match=message):
            RunFilter.of(**arguments)  # type: ignore[arg-type]


def test_filters_read_back_as_json() -> None:
    where = RunFilter.of(
        status=["failed", "failed", "cancelled"],
        tags={"b": "2", "a": "1"},
        started_after="2024-05-01T00:00:00",
        text=[" timeout ", "timeout"],
    )
    assert where.to_json() == {
        "status": ["failed", "cancelled"],
        "tags": {"a": "1", "b": "2"},
        "started_after": "2024-05-01T00:00:00+00:00",
        "text": ["timeout"],
    }
