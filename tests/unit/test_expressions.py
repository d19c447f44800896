"""``${{ ... }}`` expressions: native values, rendering, filters, the sandbox, limits."""

from __future__ import annotations

import re
from typing import Any

import pytest

from legato.errors import TemplateError
from legato.expressions import (
    MAX_RENDERED_CHARS,
    MAX_SOURCE_CHARS,
    References,
    evaluate,
    has_expressions,
    references,
)


def ctx() -> dict[str, Any]:
    return {
        "params": {"n": 3, "name": "ada", "rows": [1, 2, 3], "flag": False, "none": None},
        "steps": {
            "load": {"output": {"items": ["x", "y"], "keys": "k", "count": 2, "nested": {"a": 1}}},
            "step-1": {"output": [10, 20]},
        },
        "run": {"id": "r-1", "workflow": "wf"},
        "vars": {"v": 7},
    }


# -- values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ params.n }}", 3),
        ("${{ params.rows }}", [1, 2, 3]),
        ("${{ params.flag }}", False),
        ("${{ params.none }}", None),
        ("  ${{ params.rows }}\n", [1, 2, 3]),  # surrounding blanks keep it whole
        ("${{ steps.load.output }}", ctx()["steps"]["load"]["output"]),
        ("${{ params.n * 2 + 1 }}", 7),
        ("${{ params.rows[1:] }}", [2, 3]),
        ("${{ steps['step-1'].output[0] }}", 10),
        ("${{ vars.v }}", 7),
        ("${{ run.id }}", "r-1"),
        ("${{ {'a': params.n} }}", {"a": 3}),
    ],
)
def test_whole_expression_keeps_native_type(text: str, expected: Any) -> None:
    result = evaluate(text, ctx())
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n=${{ params.n }}", "n=3"),
        ("${{ params.name }}-${{ params.n }}", "ada-3"),
        ("rows: ${{ params.rows }}", "rows: [1, 2, 3]"),
        ("plain text", "plain text"),
        ("${{ params.none }}!", "None!"),
        ("${% for r in params.rows %}${{ r }},${% endfor %}", "1,2,3,"),
    ],
)
def test_mixed_text_is_rendered(text: str, expected: str) -> None:
    assert evaluate(text, ctx()) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ params.name | upper }}", "ADA"),
        ("${{ params.rows | length }}", 3),
        ("${{ params.rows | sum }}", 6),
        ("${{ params.rows | join('-') }}", "1-2-3"),
        ("${{ params.missing_ok | default('d') }}", "d"),
        ("${{ params.rows | map('string') | list }}", ["1", "2", "3"]),
        ("${{ steps.load.output.items | first }}", "x"),
        ("${{ params.n | string }}", "3"),
        ("${{ params.name | replace('a', 'o') }}", "odo"),
    ],
)
def test_filters(text: str, expected: Any) -> None:
    assert evaluate(text, ctx()) == expected


def test_dot_access_means_the_key() -> None:
    assert evaluate("${{ steps.load.output.items }}", ctx()) == ["x", "y"]
    assert evaluate("${{ steps.load.output.keys }}", ctx()) == "k"
    assert evaluate("${{ steps.load.output.nested.a }}", ctx()) == 1
    assert evaluate("n: ${{ steps.load.output.items | length }}", ctx()) == "n: 2"


def test_nested_values_are_evaluated() -> None:
    value = {"a": ["${{ params.n }}", {"b": "x${{ params.n }}"}], "c": 5, "d": None}
    assert evaluate(value, ctx()) == {"a": [3, {"b": "x3"}], "c": 5, "d": None}
    assert evaluate(42, ctx()) == 42


def test_has_expressions() -> None:
    assert has_expressions("${{ x }}")
    assert has_expressions({"a": ["b", {"c": "${{ y }}"}]})
    assert not has_expressions({"a": ["b", 1, None]})
    assert not has_expressions("$ { x }")


# -- the sandbox --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "${{ ''.__class__.__mro__ }}",
        "${{ params.__class__ }}",
        "${{ params.rows.__len__() }}",
        "${{ params.rows.append(1) }}",
        "${{ params.rows.pop() }}",
        "${{ steps.load.output.nested.update({'a': 2}) }}",
        "${{ steps.load.output.nested.clear() }}",
        "x ${{ params.rows.append(1) }}",
        "${{ (params.rows | list).append(4) }}",
    ],
)
def test_sandbox_refuses_internals_and_mutation(text: str) -> None:
    context = ctx()
    with pytest.raises(TemplateError) as info:
        evaluate(text, context)
    assert str(info.value).startswith(f"expression {text!r} is not allowed: access to attribute")
    assert context == ctx()  # nothing changed


def test_unknown_names_fail_when_evaluated_and_when_checked() -> None:
    with pytest.raises(TemplateError, match=r"expression '\${{ foo }}': 'foo' is undefined"):
        evaluate("${{ foo }}", ctx())
    with pytest.raises(TemplateError) as info:
        references("${{ foo.bar }}")
    assert str(info.value) == (
        "expression '${{ foo.bar }}': unknown name 'foo'; "
        "expressions start from one of params, steps, jobs, run, vars, item, matrix, index, "
        "iteration, secrets"
    )
    with pytest.raises(TemplateError, match="unknown name 'range'"):
        references("${{ range(10) }}")
    with pytest.raises(TemplateError, match="unknown name 'cycler'"):
        references("${{ cycler.__init__ }}")


def test_dynamic_step_or_param_keys_are_refused() -> None:
    with pytest.raises(TemplateError) as info:
        references("${{ steps[params.which].output }}")
    assert str(info.value) == (
        "expression '${{ steps[params.which].output }}': steps[...] must use a fixed name, "
        "so dependencies are known before the run"
    )
    with pytest.raises(TemplateError, match=r"params\[...\] must use a fixed name"):
        references("${{ params[run.id] }}")
    with pytest.raises(TemplateError, match=r"use steps.<id>.output, not the whole steps context"):
        references("${{ steps }}")


def test_strict_undefined_names_the_expression() -> None:
    with pytest.raises(TemplateError) as info:
        evaluate("${{ params.missing }}", ctx())
    assert (
        str(info.value)
        == "expression '${{ params.missing }}': 'dict object' has no attribute 'missing'"
    )
    with pytest.raises(TemplateError) as info:
        evaluate("a ${{ steps.load.output.nope }} b", ctx())
    assert str(info.value).startswith("expression 'a ${{ steps.load.output.nope }} b': ")
    assert "nope" in str(info.value)


def test_evaluation_errors_name_the_expression() -> None:
    with pytest.raises(TemplateError) as info:
        evaluate("${{ params.n / 0 }}", ctx())
    assert str(info.value) == (
        "expression '${{ params.n / 0 }}' failed: ZeroDivisionError: division by zero"
    )


def test_syntax_errors() -> None:
    with pytest.raises(TemplateError, match="is not valid: unexpected 'end of print statement'"):
        references("${{ params.n + }}")
    with pytest.raises(TemplateError, match="is not valid"):
        evaluate("${{ params.n + }}", ctx())


# -- limits ---------------------------------------------------------------------------------


def test_source_size_limit() -> None:
    text = "x" * MAX_SOURCE_CHARS + "${{ params.n }}"
    with pytest.raises(TemplateError, match="over the limit of 10,000"):
        references(text)
    with pytest.raises(TemplateError, match="over the limit of 10,000"):
        evaluate(text, ctx())
    long_expr = "${{ " + " + ".join(["params.n"] * 2000) + " }}"
    with pytest.raises(TemplateError, match="over the limit of 10,000 characters"):
        evaluate(long_expr, ctx())


def test_rendered_size_limit() -> None:
    big = {"params": {"big": "x" * 600_000}}
    with pytest.raises(TemplateError) as info:
        evaluate("a${{ params.big ~ params.big }}", big)
    assert str(info.value) == (
        "expression 'a${{ params.big ~ params.big }}' rendered 1,200,001 characters, "
        f"over the limit of {MAX_RENDERED_CHARS:,}"
    )


def test_whole_expression_text_is_bounded_too() -> None:
    big = {"params": {"big": "x" * 600_000}}
    with pytest.raises(TemplateError, match="rendered 1,200,000 characters, over the limit"):
        evaluate("${{ params.big ~ params.big }}", big)
    assert len(evaluate("${{ params.name * 1000 }}", ctx())) == 3000


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("${{ params.name * 1000000 }}", "repeating a str of length 3 1,000,000 times"),
        ("${{ 1000000 * [1, 2] }}", "repeating a list of length 2 1,000,000 times"),
        ("${{ 10 ** 100000 }}", "10 ** 100000 would be an integer of more than 16,384 bits"),
        ("${{ params.n ** 5000 }}", "10 ** 5000 would be an integer"),
    ],
)
def test_values_too_large_to_build_are_refused_before_they_are_built(
    text: str, refused: str
) -> None:
    with pytest.raises(TemplateError, match="is not allowed: " + re.escape(refused)):
        evaluate(text, {**ctx(), "params": {"name": "ada", "n": 10}})
    assert evaluate("${{ 2 ** 100 }}", ctx()) == 2**100
    assert evaluate("${{ 2.5 ** 3 }}", ctx()) == 2.5**3


# -- references --------------------------------------------------------------------------------


def test_references() -> None:
    refs = references(
        {
            "a": "${{ steps.load.output.items }} and ${{ params.n }}",
            "b": ["${{ steps['step-1'].output }}", "${{ params['name'] }}", 5],
            "c": "${{ run.id }} ${{ vars.v }}",
        }
    )
    assert refs == References(
        steps=frozenset({"load", "step-1"}),
        params=frozenset({"n", "name"}),
        roots=frozenset({"steps", "params", "run", "vars"}),
        whole_params=False,
    )


def test_references_of_whole_params_and_plain_values() -> None:
    assert references("${{ params }}").whole_params is True
    assert references("${{ params.n }}").whole_params is False
    assert references("no expressions") == References()
    assert references(7) == References()
    assert references(["${{ steps.a.output }}"]) | references("${{ params }}") == References(
        steps=frozenset({"a"}),
        roots=frozenset({"steps", "params"}),
        whole_params=True,
    )


def test_references_inside_filters_and_conditions() -> None:
    refs = references("${{ steps.a.output if params.flag else steps.b.output | default(1) }}")
    assert refs.steps == frozenset({"a", "b"})
    assert refs.params == frozenset({"flag"})
