"""Filters in a run on each backend: legato's and a registered one, resolved by the worker;
a filter's value that is no JSON fails its step, naming the input."""

from __future__ import annotations

from typing import Any

import legato
from legato import RunStatus, StepStatus, Workflow

from .tasks_secrets import plain


@legato.filter(name="flow_initials")
def initials(value: str, sep: str = "") -> str:
    return sep.join(word[0].upper() for word in value.split())


@legato.filter(name="flow_as_set")
def as_set(value: Any) -> set[Any]:
    return set(value)


@legato.task(name="flow_filters.echo")
def echo(**values: Any) -> dict[str, Any]:
    return values


def test_filters_in_a_run(db_url: str) -> None:
    wf = Workflow("filtered")
    wf.param("day", default="2024-05-01")
    wf.param("name", default="grace brewster hopper")
    wf.step(
        "call",
        echo,
        file="export-${{ params.day | fmt(fmt='%Y%m%d') }}.csv",
        weekday="${{ params.day | date | fmt('%A') }}",
        who="${{ params.name | flow_initials(sep='.') }}",
        doc="${{ '{\"n\": 2}' | from_json }}",
        text="${{ {'day': params.day | date} | json }}",
    )
    wf.step("bad", plain, x="${{ [1, 2] | flow_as_set }}", continue_on_error=True)
    run = legato.run(wf, url=db_url, timeout=30)

    assert run.status is RunStatus.COMPLETED, run.error
    assert run.steps["call"].output == {
        "file": "export-20240501.csv",
        "weekday": "Wednesday",
        "who": "G.B.H",
        "doc": {"n": 2},
        "text": '{"day":"2024-05-01"}',
    }
    bad = run.steps["bad"]
    assert bad.status is StepStatus.FAILED and bad.error is not None
    assert bad.error.type == "PayloadError"
    assert bad.error.message.startswith("step 'bad' inputs: $.x")
