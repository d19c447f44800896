"""Filters: legato's (dates, JSON, coercions), ``@legato.filter``, unknown ones refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import legato
from legato import expressions
from legato.errors import DefinitionError, TemplateError
from legato.expressions import evaluate, references
from legato.model.spec import WorkflowSpec


@pytest.fixture(autouse=True)
def _own_filters() -> Iterator[None]:
    """Filters registered by a test are gone after it (the registry is per process)."""
    table = dict(expressions._env.filters)
    registered = dict(expressions._user_filters)
    yield
    expressions._env.filters.clear()
    expressions._env.filters.update(table)
    expressions._user_filters.clear()
    expressions._user_filters.update(registered)


def ctx() -> dict[str, Any]:
    return {
        "params": {
            "day": "2024-05-01",
            "at": "2024-05-01T09:30:00+02:00",
            "zulu": "2024-05-01T09:30:00Z",
            "n": 5,
            "doc": '{"rows": [1, 2], "ok": true}',
            "yes": "Yes",
            "no": "off",
            "rows": [1, "<b>"],
        }
    }


# -- legato's filters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ params.day | fmt }}", "2024-05-01"),
        ("${{ params.day | fmt(fmt='%Y%m%d') }}", "20240501"),
        ("${{ params.at | fmt('%d/%m %H:%M') }}", "01/05 09:30"),
        ("${{ params.zulu | fmt('%H:%M %z') }}", "09:30 +0000"),
        ("run-${{ params.day | fmt(fmt='%Y%m%d') }}.csv", "run-20240501.csv"),
        ("${{ params.day | date }}", "2024-05-01"),
        ("${{ params.at | date }}", "2024-05-01"),
        ("${{ (params.day | date).year }}", 2024),
        ("${{ params.day | date | fmt('%A') }}", "Wednesday"),
        ("${{ params.at | datetime }}", "2024-05-01T09:30:00+02:00"),
        ("${{ (params.at | datetime).hour }}", 9),
        ("${{ params.doc | from_json }}", {"rows": [1, 2], "ok": True}),
        ("${{ (params.doc | from_json).rows[1] }}", 2),
        ("${{ params.rows | json }}", '[1,"<b>"]'),
        ("${{ {'d': params.day | date} | json }}", '{"d":"2024-05-01"}'),
        ("${{ params.yes | bool }}", True),
        ("${{ params.no | bool }}", False),
        ("${{ params.n | bool }}", True),
        ("${{ params.n | str }}", "5"),
        ("${{ params.n | string }}", "5"),  # Jinja's own stay
        ("${{ params.missing | default('x') }}", "x"),
        ("${{ params.rows | tojson }}", '[1, "\\u003cb\\u003e"]'),
    ],
)
def test_legato_filters(text: str, expected: Any) -> None:
    result = evaluate(text, ctx())
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        (
            "${{ params.n | fmt }}",
            "TypeError: fmt needs a date, a datetime or ISO 8601 text such as '2024-05-01', "
            "got int 5",
        ),
        (
            "${{ params.yes | fmt('%Y') }}",
            "ValueError: fmt: 'Yes' is not an ISO 8601 date or time "
            "(such as 2024-05-01 or 2024-05-01T09:30:00+00:00)",
        ),
        ("${{ params.day | fmt(fmt=5) }}", "TypeError: fmt: the format must be text"),
        ("${{ params.n | date }}", "TypeError: date needs a date, a datetime or ISO 8601 text"),
        ("${{ params.yes | datetime }}", "ValueError: datetime: 'Yes' is not an ISO 8601"),
        ("${{ params.n | from_json }}", "TypeError: from_json needs JSON text, got int 5"),
        ("${{ params.day | from_json }}", "ValueError: from_json: the text is not JSON"),
        ("${{ params.day | bool }}", "ValueError: bool: cannot read '2024-05-01' as true or false"),
    ],
)
def test_bad_filter_input_names_the_expression_and_the_cause(text: str, cause: str) -> None:
    with pytest.raises(TemplateError) as info:
        evaluate(text, ctx())
    assert str(info.value).startswith(f"expression {text!r} failed: {cause}")


# -- user filters -----------------------------------------------------------------------------


def test_a_registered_filter_is_usable_and_stays_a_function() -> None:
    @legato.filter
    def shout(value: str, marks: int = 1) -> str:
        return value.upper() + "!" * marks

    @legato.filter(name="cents")
    def to_cents(value: float) -> int:
        return round(value * 100)

    assert shout("hi") == "HI!"
    assert evaluate("${{ params.x | shout(marks=2) }}", {"params": {"x": "hi"}}) == "HI!!"
    assert evaluate("${{ params.p | cents }}", {"params": {"p": 1.25}}) == 125
    assert references("${{ params.p | cents | shout }}", check_filters=True).filters == {
        "cents",
        "shout",
    }
    spec = WorkflowSpec.parse(
        {"name": "wf", "steps": [{"id": "a", "task": "t", "inputs": {"x": "${{ 'a' | shout }}"}}]}
    )
    assert spec.steps[0].id == "a"


def test_a_filter_name_is_taken_once() -> None:
    @legato.filter(name="twice")
    def first(value: Any) -> Any:
        return value

    legato.filter(name="twice")(first)  # the same function again: a reloaded module
    with pytest.raises(DefinitionError) as info:

        @legato.filter(name="twice")
        def second(value: Any) -> Any:
            return value

    assert str(info.value) == (
        f"filter name 'twice' is already registered for {__name__}."
        "test_a_filter_name_is_taken_once.<locals>.first; "
        f"{__name__}.test_a_filter_name_is_taken_once.<locals>.second needs another name "
        '(@legato.filter(name="..."))'
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("fmt", "filter name 'fmt' is a built-in filter; give yours another name"),
        ("default", "filter name 'default' is a built-in filter; give yours another name"),
        ("my-filter", "filter name 'my-filter' is not valid: letters, digits and '_'"),
        ("1st", "filter name '1st' is not valid"),
    ],
)
def test_bad_filter_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        legato.filter(name=name)(lambda value: value)
    assert str(info.value).startswith(message)


# -- unknown filters --------------------------------------------------------------------------


def test_an_unknown_filter_is_a_definition_problem_naming_it_and_how_to_register() -> None:
    with pytest.raises(DefinitionError) as info:
        WorkflowSpec.parse(
            {
                "name": "wf",
                "steps": [{"id": "a", "task": "t", "inputs": {"day": "${{ run.id | fmtt }}"}}],
            }
        )
    [problem] = info.value.problems
    assert problem.startswith(
        "step 'a' inputs: expression '${{ run.id | fmtt }}': unknown filter 'fmtt' "
        "(did you mean 'fmt'?); known filters are legato's (bool, date, datetime, fmt, "
        "from_json, json, str), Jinja's (default, int, float, string, tojson, length, join, "
        "lower, upper, ...) and those registered with @legato.filter ("
    )
    assert problem.endswith(
        "register one with @legato.filter in a module every process running the workflow "
        "imports (--import or LEGATO_IMPORTS)"
    )


def test_unknown_filters_are_found_everywhere_a_spec_has_expressions() -> None:
    with pytest.raises(DefinitionError) as info:
        WorkflowSpec.parse(
            {
                "name": "wf",
                "steps": [
                    {"id": "a", "task": "t", "when": "${{ run.id | nope1 }}"},
                    {"id": "b", "kind": "set_vars", "vars": {"v": "x${{ 1 | nope2 }}"}},
                ],
                "outputs": {"o": "${{ 1 if run.id else (run.id | nope3) }}"},
            }
        )
    found = [p.split(": unknown filter ")[1].split(";")[0] for p in info.value.problems]
    assert found == ["'nope1'", "'nope2'", "'nope3'"]


def test_an_unknown_filter_when_evaluated_says_how_to_register_it() -> None:
    """A process that runs a stored spec without the filter's module: the step fails."""
    assert references("${{ run.id | zzz }}").filters == {"zzz"}  # not checked at run time
    for text in ("${{ run.id | zzz }}", "id: ${{ run.id | zzz }}"):
        with pytest.raises(TemplateError) as info:
            evaluate(text, {"run": {"id": "r"}})
        assert str(info.value).startswith(f"expression {text!r}: unknown filter 'zzz'; ")
        assert "@legato.filter" in str(info.value)
