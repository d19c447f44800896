"""WorkflowSpec validation, params binding, hashing and the JSON round trip."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from pydantic import ValidationError

from legato.errors import CycleError, DefinitionError, ParamError
from legato.model.spec import RetryPolicy, WorkflowSpec, format_validation_error

T = "unit.t"


def parse(steps: list[dict[str, Any]], **extra: Any) -> WorkflowSpec:
    return WorkflowSpec.parse({"name": "wf", "steps": steps, **extra})


def problem(data: dict[str, Any]) -> DefinitionError:
    with pytest.raises(DefinitionError) as info:
        WorkflowSpec.parse(data)
    return info.value


def one_step(**extra: Any) -> dict[str, Any]:
    return {"name": "wf", "steps": [{"id": "a", "task": T}], **extra}


# -- names and versions -------------------------------------------------------------


@pytest.mark.parametrize("name", ["etl", "a", "daily_load_2", "x9"])
def test_good_names(name: str) -> None:
    assert WorkflowSpec.parse(one_step(name=name)).name == name


@pytest.mark.parametrize("name", ["Etl", "9lives", "_x", "a-b", "a b", "", "ünï"])
def test_bad_names(name: str) -> None:
    err = problem(one_step(name=name))
    assert str(err) == (
        f"workflow: name: workflow name {name!r} must match ^[a-z][a-z0-9_]*$ "
        "(lowercase letters, digits and '_')"
    )


def test_double_underscore_is_reserved_in_names_versions_and_step_ids() -> None:
    assert str(problem(one_step(name="a__b"))) == (
        "workflow: name: workflow name 'a__b' must not contain '__' "
        "(reserved as the display separator)"
    )
    assert str(problem(one_step(version="1__2"))) == (
        "workflow: version: workflow version '1__2' must not contain '__' "
        "(reserved as the display separator)"
    )
    err = problem({"name": "wf", "steps": [{"id": "a__b", "task": T}]})
    assert err.problems == [
        "steps.0.id: step id 'a__b' must not contain '__' (reserved as the display separator)"
    ]


@pytest.mark.parametrize("version", ["1", "2.0.1", "v1-beta_2", "2024.01"])
def test_good_versions(version: str) -> None:
    assert WorkflowSpec.parse(one_step(version=version)).version == version


@pytest.mark.parametrize("version", ["1 0", "", "v/1", "1+2"])
def test_bad_versions(version: str) -> None:
    err = problem(one_step(version=version))
    assert str(err) == (
        f"workflow: version: workflow version {version!r} must match ^[a-zA-Z0-9._-]+$ "
        "(letters, digits, '.', '_' and '-')"
    )


def test_field_errors_name_the_path() -> None:
    err = problem({"name": "wf", "steps": [{"id": "a", "task": T, "bogus": 1}]})
    assert err.problems == ["step 'a' bogus: unknown field (found 1)"]
    err = problem({"name": "wf"})
    assert err.problems == ["steps: required field is missing"]
    err = problem({"name": "wf", "steps": [{"id": "a", "task": T, "priority": 12}]})
    assert err.problems == ["step 'a' priority: Input should be less than or equal to 9 (found 12)"]
    err = problem({"name": "wf", "steps": [{"id": "a", "task": T, "timeout": "soon"}]})
    assert err.problems[0].startswith("step 'a' timeout: expected a duration")
    # A step without a usable id is named by its position.
    err = problem({"name": "wf", "steps": [{"task": T, "priority": 12}]})
    assert err.problems == [
        "steps.0.id: required field is missing",
        "steps.0.priority: Input should be less than or equal to 9 (found 12)",
    ]


def test_json_text_errors_name_the_step_too() -> None:
    text = json.dumps({"name": "wf", "steps": [{"id": "load", "task": T, "timeout": "inf"}]})
    with pytest.raises(DefinitionError) as info:
        WorkflowSpec.parse(text)
    assert str(info.value) == (
        "workflow: step 'load' timeout: a duration must be a finite number of seconds, got 'inf'"
    )


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            {"timeout": "inf"},
            "step 'a' timeout: a duration must be a finite number of seconds, got 'inf'",
        ),
        (
            {"timeout": "1e999"},
            "step 'a' timeout: a duration must be a finite number of seconds, got '1e999'",
        ),
        (
            {"timeout": float("nan")},
            "step 'a' timeout: a duration must be a finite number of seconds, got nan",
        ),
        ({"timeout": 0}, "step 'a' timeout: a duration must be more than zero, got 0"),
        ({"timeout": "0s"}, "step 'a' timeout: a duration must be more than zero, got '0s'"),
        ({"timeout": -1}, "step 'a' timeout: a duration cannot be negative, got -1"),
        ({"priority": True}, "step 'a' priority: expected a whole number, got True"),
        (
            {"retry": {"max_delay": "inf"}},
            "step 'a' retry.max_delay: a duration must be a finite number of seconds, got 'inf'",
        ),
        (
            {"retry": {"delay": "nan"}},
            "step 'a' retry.delay: a duration must be a finite number of seconds, got 'nan'",
        ),
        (
            {"retry": {"delay": "-2"}},
            "step 'a' retry.delay: a duration cannot be negative, got '-2'",
        ),
        (
            {"retry": {"max_attempts": False}},
            "step 'a' retry.max_attempts: expected a whole number, got False",
        ),
    ],
)
def test_bad_step_numbers_name_the_step_and_field(step: dict[str, Any], message: str) -> None:
    err = problem({"name": "wf", "steps": [{"id": "a", "task": T, **step}]})
    assert err.problems == [message]
    assert str(err) == f"workflow: {message}"


def test_zero_retry_delays_are_allowed() -> None:
    spec = parse([{"id": "a", "task": T, "retry": {"delay": 0, "max_delay": "0s"}}])
    assert spec.task_step("a").retry == RetryPolicy(delay=0, max_delay=0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"delay": "inf"}, "delay: a duration must be a finite number of seconds, got 'inf'"),
        (
            {"max_delay": 1e999},
            "max_delay: a duration must be a finite number of seconds, got inf",
        ),
        ({"max_attempts": True}, "max_attempts: expected a whole number, got True"),
    ],
)
def test_retry_policy_checks_its_numbers(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        RetryPolicy(**fields)
    assert format_validation_error(info.value) == [message]


def test_several_problems_are_listed_together() -> None:
    err = problem(
        {
            "name": "wf",
            "steps": [
                {"id": "a", "task": T, "needs": ["ghost"]},
                {"id": "a", "task": T},
            ],
        }
    )
    assert err.problems == ["duplicate step id 'a'", "step 'a' needs unknown step 'ghost'"]
    assert str(err) == (
        "workflow 'wf' has 2 problems:\n"
        "  - duplicate step id 'a'\n"
        "  - step 'a' needs unknown step 'ghost'"
    )


# -- graph checks ---------------------------------------------------------------------


def test_duplicate_step_ids() -> None:
    err = problem({"name": "wf", "steps": [{"id": "a", "task": T}, {"id": "a", "task": T}]})
    assert str(err) == "workflow 'wf': duplicate step id 'a'"


def test_at_least_one_step() -> None:
    assert str(problem({"name": "wf", "steps": []})) == (
        "workflow 'wf': a workflow needs at least one step"
    )


def test_unknown_needs() -> None:
    err = problem({"name": "wf", "steps": [{"id": "a", "task": T, "needs": ["zz"]}]})
    assert str(err) == "workflow 'wf': step 'a' needs unknown step 'zz'"


def test_self_needs() -> None:
    err = problem({"name": "wf", "steps": [{"id": "a", "task": T, "needs": ["a"]}]})
    assert str(err) == "workflow 'wf': step 'a' needs itself"


def test_a_step_reading_its_own_output() -> None:
    err = problem(
        {"name": "wf", "steps": [{"id": "a", "task": T, "inputs": {"x": "${{ steps.a.output }}"}}]}
    )
    assert str(err) == "workflow 'wf': step 'a' refers to its own output"


def test_cycle_is_named_in_order() -> None:
    with pytest.raises(CycleError) as info:
        parse(
            [
                {"id": "a", "task": T, "needs": ["c"]},
                {"id": "b", "task": T, "needs": ["a"]},
                {"id": "c", "task": T, "needs": ["b"]},
            ]
        )
    assert str(info.value) == "workflow 'wf': steps form a cycle: a -> b -> c -> a"
    assert info.value.cycle == ["a", "b", "c", "a"]


def test_cycle_through_data_references_among_other_steps() -> None:
    steps: list[dict[str, Any]] = [
        {"id": "start", "task": T},
        {"id": "x", "task": T, "needs": ["start"], "inputs": {"v": "${{ steps.z.output }}"}},
        {"id": "y", "task": T, "args": ["${{ steps.x.output }}"]},
        {"id": "z", "task": T, "needs": ["y"]},
        {"id": "after", "task": T, "needs": ["z"]},
    ]
    with pytest.raises(CycleError) as info:
        parse(steps)
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1]
    assert sorted(cycle[:-1]) == ["x", "y", "z"]
    # read in execution direction: each step is needed by the next one
    by_id = {s["id"]: s for s in steps}
    for before, after in itertools.pairwise(cycle):
        step = by_id[after]
        assert before in step.get("needs", []) or before in json.dumps(step)
    assert str(info.value) == "workflow 'wf': steps form a cycle: " + " -> ".join(cycle)


def test_two_step_cycle() -> None:
    with pytest.raises(
        CycleError, match=r"^workflow 'wf': steps form a cycle: (a -> b -> a|b -> a -> b)$"
    ):
        parse([{"id": "a", "task": T, "needs": ["b"]}, {"id": "b", "task": T, "needs": ["a"]}])


def test_references_to_unknown_steps_and_params() -> None:
    err = problem(
        {
            "name": "wf",
            "params": {"known": {}},
            "steps": [
                {
                    "id": "a",
                    "task": T,
                    "inputs": {"x": "${{ steps.ghost.output }}", "y": "${{ params.nope }}"},
                    "args": ["${{ params.known }}", "${{ params.other }}"],
                }
            ],
            "outputs": {"r": "${{ steps.q.output }}", "p": "${{ params.missing }}"},
        }
    )
    assert err.problems == [
        "step 'a' inputs refers to unknown step 'ghost'",
        "step 'a' inputs refers to unknown param 'nope'",
        "step 'a' args refers to unknown param 'other'",
        "output 'r' refers to unknown step 'q'",
        "output 'p' refers to unknown param 'missing'",
    ]


def test_extra_params_allows_undeclared_param_references() -> None:
    spec = parse(
        [{"id": "a", "task": T, "inputs": {"x": "${{ params.anything }}"}}], extra_params=True
    )
    assert spec.extra_params


def test_bad_expressions_are_definition_problems() -> None:
    err = problem(
        {"name": "wf", "steps": [{"id": "a", "task": T, "inputs": {"x": "${{ open('f') }}"}}]}
    )
    assert err.problems == [
        "step 'a' inputs: expression \"${{ open('f') }}\": unknown name 'open'; "
        "expressions start from one of params, steps, jobs, run, vars, item, matrix, index, "
        "iteration, secrets"
    ]


def test_text_inputs_must_be_one_expression() -> None:
    err = problem({"name": "wf", "steps": [{"id": "a", "task": T, "inputs": "x ${{ params }}"}]})
    assert err.problems == [
        "step 'a': inputs given as text must be one ${{ ... }} expression yielding a mapping"
    ]


# -- params ---------------------------------------------------------------------------


PARAMS = {
    "n": {"type": "int"},
    "ratio": {"type": "float", "required": False, "default": 0.5},
    "flag": {"type": "bool", "required": False, "default": True},
    "name": {"type": "str", "required": False, "default": "x"},
    "items": {"type": "list", "required": False, "default": []},
    "opts": {"type": "dict", "required": False, "default": {}},
    "anything": {"required": False},
}


def typed() -> WorkflowSpec:
    return WorkflowSpec.parse(one_step(params=PARAMS))


def test_bind_params_fills_defaults() -> None:
    assert typed().bind_params({"n": 4}) == {
        "n": 4,
        "ratio": 0.5,
        "flag": True,
        "name": "x",
        "items": [],
        "opts": {},
        "anything": None,
    }


def test_bind_params_keeps_given_values() -> None:
    bound = typed().bind_params(
        {"n": 1, "ratio": 2, "items": (1, 2), "anything": {"deep": [1]}, "flag": False}
    )
    assert bound["ratio"] == 2  # an int is a float
    assert bound["items"] == (1, 2)
    assert bound["anything"] == {"deep": [1]}
    assert bound["flag"] is False


def test_bind_params_missing_required() -> None:
    with pytest.raises(ParamError) as info:
        typed().bind_params({})
    assert str(info.value) == "workflow wf@1: missing required param 'n'"
    with pytest.raises(ParamError):
        typed().bind_params(None)


def test_bind_params_unknown() -> None:
    with pytest.raises(ParamError) as info:
        typed().bind_params({"n": 1, "zz": 2})
    assert str(info.value) == (
        "workflow wf@1: unknown param 'zz' (declared: anything, flag, items, n, name, opts, ratio)"
    )
    no_params = WorkflowSpec.parse(one_step())
    with pytest.raises(ParamError, match=r"unknown param 'x' \(declared: none\)"):
        no_params.bind_params({"x": 1})


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"n": True}, "param 'n' must be int, got bool True"),
        ({"n": 1.0}, "param 'n' must be int, got float 1.0"),
        ({"n": "1"}, "param 'n' must be int, got str '1'"),
        ({"n": 1, "flag": 1}, "param 'flag' must be bool, got int 1"),
        ({"n": 1, "ratio": False}, "param 'ratio' must be float, got bool False"),
        ({"n": 1, "name": 5}, "param 'name' must be str, got int 5"),
        ({"n": 1, "items": "ab"}, "param 'items' must be list, got str 'ab'"),
        ({"n": 1, "opts": [1]}, "param 'opts' must be dict, got list [1]"),
    ],
)
def test_bind_params_type_mismatches(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamError) as info:
        typed().bind_params(given)
    assert str(info.value) == f"workflow wf@1: {message}"


def test_bind_params_reports_every_problem_at_once() -> None:
    with pytest.raises(ParamError) as info:
        typed().bind_params({"flag": "yes", "extra": 1})
    assert str(info.value) == (
        "workflow wf@1: missing required param 'n'; param 'flag' must be bool, got str 'yes'; "
        "unknown param 'extra' (declared: anything, flag, items, n, name, opts, ratio)"
    )


def test_bind_params_extra_params() -> None:
    spec = WorkflowSpec.parse(one_step(params={"n": {"type": "int"}}, extra_params=True))
    assert spec.bind_params({"n": 1, "more": "x"}) == {"n": 1, "more": "x"}


def test_bind_params_does_not_change_the_given_dict() -> None:
    given = {"n": 1}
    typed().bind_params(given)
    assert given == {"n": 1}


# -- hashing and round trips ----------------------------------------------------------


def rich_spec() -> dict[str, Any]:
    return {
        "name": "etl",
        "version": "2.1",
        "description": "load and shape",
        "params": {
            "path": {"type": "str"},
            "limit": {"type": "int", "required": False, "default": 5},
        },
        "steps": [
            {
                "id": "load",
                "task": "unit.load",
                "inputs": {"path": "${{ params.path }}", "limit": "${{ params.limit }}"},
                "retry": {"max_attempts": 3, "backoff": "linear", "delay": "2s"},
                "timeout": "1m",
            },
            {"id": "shape", "task": "unit.transform", "args": ["${{ steps.load.output }}"]},
            {"id": "report", "task": "unit.noarg", "needs": ["shape"], "priority": 3},
        ],
        "outputs": {"rows": "${{ steps.shape.output }}"},
    }


def test_content_hash_is_stable() -> None:
    spec = WorkflowSpec.parse(rich_spec())
    # A stored run names its spec by this hash: a change here orphans stored specs.
    assert spec.content_hash == WorkflowSpec.parse(rich_spec()).content_hash
    assert len(spec.content_hash) == 64
    assert spec.content_hash == "9c03d0dfb5c72b16d585e7de60811c8d50e24885c79c0bcc24f0344aa325d2b8"


def test_equal_specs_hash_equal() -> None:
    a = rich_spec()
    b = json.loads(json.dumps(a))
    b["params"] = dict(reversed(list(b["params"].items())))  # key order does not matter
    b["steps"][0]["timeout"] = 60  # "1m" and 60 are the same timeout
    b["steps"][0]["retry"]["delay"] = 2.0
    b["steps"][1]["needs"] = []  # a default written out
    b["steps"][2]["inputs"] = {}
    assert WorkflowSpec.parse(a) == WorkflowSpec.parse(b)
    assert WorkflowSpec.parse(a).content_hash == WorkflowSpec.parse(b).content_hash


def test_different_specs_hash_differently() -> None:
    a = rich_spec()
    b = rich_spec()
    b["steps"][2]["priority"] = 4
    c = rich_spec()
    c["version"] = "2.2"
    hashes = {WorkflowSpec.parse(x).content_hash for x in (a, b, c)}
    assert len(hashes) == 3


def test_json_round_trip() -> None:
    spec = WorkflowSpec.parse(rich_spec())
    text = spec.to_json()
    again = WorkflowSpec.parse(text)
    assert again == spec
    assert again.content_hash == spec.content_hash
    assert again.to_json() == text
    assert WorkflowSpec.parse(json.loads(text)).content_hash == spec.content_hash


def test_canonical_json_sorts_keys_and_drops_defaults() -> None:
    spec = WorkflowSpec.parse(rich_spec())
    text = spec.canonical_json()
    assert ": " not in text and ", " not in text.replace("and shape", "")
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert "extra_params" not in data  # defaults are left out
    assert data["steps"][0]["timeout"] == 60.0
    assert data["steps"][0]["retry"] == {"backoff": "linear", "delay": 2.0, "max_attempts": 3}


def test_to_json_keeps_the_order_literals_were_written_in() -> None:
    data = rich_spec()
    data["steps"][0]["inputs"] = {"zeta": {"b": 1, "a": 2}, "alpha": 0}
    spec = WorkflowSpec.parse(data)
    stored = json.loads(spec.to_json())
    assert list(stored["steps"][0]["inputs"]) == ["zeta", "alpha"]
    assert list(stored["steps"][0]["inputs"]["zeta"]) == ["b", "a"]
    reordered = dict(
        data,
        steps=[
            dict(data["steps"][0], inputs={"alpha": 0, "zeta": {"a": 2, "b": 1}}),
            *data["steps"][1:],
        ],
    )
    assert WorkflowSpec.parse(reordered).content_hash == spec.content_hash


def test_step_lookup_and_label() -> None:
    spec = WorkflowSpec.parse(rich_spec())
    assert spec.label == "etl@2.1"
    assert spec.task_step("shape").args == ["${{ steps.load.output }}"]
    assert spec.task_step("load").retry == RetryPolicy(max_attempts=3, backoff="linear", delay=2)
    with pytest.raises(KeyError):
        spec.task_step("ghost")


def test_spec_is_frozen() -> None:
    spec = WorkflowSpec.parse(rich_spec())
    with pytest.raises(ValueError):
        spec.name = "other"  # type: ignore[misc]


def test_a_copy_does_not_keep_the_originals_hash_or_graph() -> None:
    spec = WorkflowSpec.parse(rich_spec())
    original_hash, original_graph = spec.content_hash, spec.graph
    copy = spec.model_copy(update={"version": "3"})
    assert copy.content_hash != original_hash
    assert copy.content_hash == WorkflowSpec.parse({**rich_spec(), "version": "3"}).content_hash
    fewer = spec.model_copy(update={"steps": spec.steps[:2], "outputs": {}})
    assert fewer.graph is not original_graph
    assert fewer.graph.order == ("load", "shape")
    assert spec.content_hash == original_hash and spec.graph is original_graph


def test_equal_specs_compare_equal_whatever_they_cached() -> None:
    a, b = WorkflowSpec.parse(rich_spec()), WorkflowSpec.parse(rich_spec())
    assert a.graph is not None  # only a has its graph and hash cached
    assert a.content_hash
    assert a == b and b == a
    c = WorkflowSpec.parse({**rich_spec(), "version": "9"})
    assert c.graph is not None
    assert a != c
