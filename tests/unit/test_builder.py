"""The Python builder: references, ordering, groups, Sequence, and its errors."""

from __future__ import annotations

from typing import Any

import pytest

from legato import RetryPolicy, Sequence, Workflow
from legato.define.builder import OutputRef, ParamRef
from legato.errors import DefinitionError

from .tasks import anykw, load, noarg, pair, plain, posonly, transform, tuned


def steps_of(wf: Workflow) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in wf.spec.to_dict()["steps"]}


# -- references ----------------------------------------------------------------------


def test_refs_become_expressions() -> None:
    wf = Workflow("refs")
    a = wf.step("a", load, path=wf.param("path"), limit=5)
    b = wf.step("b", transform, rows=a.output["rows"][0])
    c = wf.step("c", transform, rows={"all": a.output, "list": [wf.param("path"), 1]})
    wf.outputs(r=b.output, p=wf.param("path"), c=c.output["x y"])
    spec = wf.spec.to_dict()
    assert spec["params"] == {"path": {}}
    steps = steps_of(wf)
    assert steps["a"]["inputs"] == {"path": "${{ params.path }}", "limit": 5}
    assert steps["b"]["inputs"] == {"rows": '${{ steps.a.output["rows"][0] }}'}
    assert steps["c"]["inputs"] == {
        "rows": {"all": "${{ steps.a.output }}", "list": ["${{ params.path }}", 1]}
    }
    assert spec["outputs"] == {
        "r": "${{ steps.b.output }}",
        "p": "${{ params.path }}",
        "c": '${{ steps.c.output["x y"] }}',
    }


def test_ref_objects() -> None:
    assert ParamRef("x").template() == "${{ params.x }}"
    assert ParamRef("my-p").template() == '${{ params["my-p"] }}'
    assert OutputRef("a")["k"][2].template() == '${{ steps.a.output["k"][2] }}'
    assert OutputRef("step-1").template() == '${{ steps["step-1"].output }}'
    assert repr(OutputRef("a")) == "${{ steps.a.output }}"
    with pytest.raises(DefinitionError, match=r"output keys are strings or list indexes, got 1.5"):
        OutputRef("a")[1.5]  # type: ignore[index]
    with pytest.raises(DefinitionError, match="got True"):
        OutputRef("a")[True]


def test_data_references_create_dependencies() -> None:
    wf = Workflow("deps")
    a = wf.step("a", noarg)
    wf.step("b", transform, rows=a.output["k"])
    graph = wf.spec.graph
    assert graph.deps["b"] == ("a",)
    assert steps_of(wf)["b"].get("needs", []) == []  # data reference, not a written need


def test_string_expressions_are_kept_and_read() -> None:
    wf = Workflow("text")
    wf.step("a", noarg)
    wf.step("b", transform, rows="n=${{ steps.a.output }}")
    assert wf.spec.graph.deps["b"] == ("a",)


def test_step_ids_with_dashes_are_referenced_by_key() -> None:
    wf = Workflow("dash")
    first = wf.step("step-1", noarg)
    wf.step("b", transform, rows=first.output)
    assert steps_of(wf)["b"]["inputs"] == {"rows": '${{ steps["step-1"].output }}'}
    assert wf.spec.graph.deps["b"] == ("step-1",)


# -- ordering ----------------------------------------------------------------------------


def test_rshift_orders_steps() -> None:
    wf = Workflow("order")
    a, b = wf.step("a", noarg), wf.step("b", noarg)
    assert (a >> b) is b
    a >> b  # a repeated need is recorded once
    assert steps_of(wf)["b"]["needs"] == ["a"]


def test_rshift_fan_out_and_in() -> None:
    wf = Workflow("fan")
    a, b, c, d = (wf.step(x, noarg) for x in "abcd")
    result = a >> [b, c] >> d
    assert result is d
    steps = steps_of(wf)
    assert steps["b"]["needs"] == ["a"]
    assert steps["c"]["needs"] == ["a"]
    assert steps["d"]["needs"] == ["b", "c"]
    assert "needs" not in steps["a"]


def test_rshift_refuses_what_is_not_a_step() -> None:
    wf = Workflow("bad")
    a = wf.step("a", noarg)
    with pytest.raises(DefinitionError, match="a >> b: expected steps, got 3"):
        a >> 3  # type: ignore[operator]


def test_needs_accepts_refs_and_ids() -> None:
    wf = Workflow("needs")
    a = wf.step("a", noarg)
    wf.step("b", noarg)
    wf.step("c", noarg, needs=[a, "b"])
    assert steps_of(wf)["c"]["needs"] == ["a", "b"]
    with pytest.raises(DefinitionError, match="needs takes steps or step ids, got 5"):
        wf.step("d", noarg, needs=[5])  # type: ignore[list-item]


def test_cycle_made_with_rshift_is_reported() -> None:
    wf = Workflow("loop")
    a, b = wf.step("a", noarg), wf.step("b", noarg)
    a >> b
    b >> a
    with pytest.raises(DefinitionError, match="steps form a cycle"):
        wf.spec  # noqa: B018


# -- add_group ------------------------------------------------------------------------------


def test_add_group_forms() -> None:
    wf = Workflow("group")
    start = wf.step("start", noarg)
    refs = wf.add_group(
        [noarg, ("t", transform, {"rows": start.output}), ("n2", noarg)], needs=[start]
    )
    assert [r.id for r in refs] == ["noarg", "t", "n2"]
    steps = steps_of(wf)
    for step_id in ("noarg", "t", "n2"):
        assert steps[step_id]["needs"] == ["start"]
    assert steps["t"]["inputs"] == {"rows": "${{ steps.start.output }}"}
    assert steps["noarg"]["task"] == "unit.noarg"
    end = wf.step("end", noarg)
    refs >> end  # type: ignore[operator]
    assert steps_of(wf)["end"]["needs"] == ["noarg", "t", "n2"]


def test_add_group_without_needs_adds_roots() -> None:
    wf = Workflow("roots")
    wf.add_group([("x", noarg), ("y", noarg)])
    assert wf.spec.graph.roots == ("x", "y")


@pytest.mark.parametrize("item", [1, ("only-id",), ("a", noarg, {}, "extra")])
def test_add_group_refuses_other_items(item: Any) -> None:
    wf = Workflow("group")
    with pytest.raises(DefinitionError, match="add_group items are tasks, \\(id, task\\) or"):
        wf.add_group([item])


# -- step options ------------------------------------------------------------------------------


def test_step_options_are_written_to_the_spec() -> None:
    wf = Workflow("opts")
    wf.step("a", noarg, retry=2, timeout="1m30s", queue="fast", priority=0)
    wf.step("b", noarg, retry={"max_attempts": 4, "backoff": "fixed", "delay": "3s"})
    wf.step("c", noarg, retry=RetryPolicy(max_attempts=2, jitter=False))
    wf.step("d", anykw, inputs={"a": 1, "retry": "not an option"})
    spec = wf.spec
    assert spec.task_step("a").retry == RetryPolicy(max_attempts=3)
    assert (
        spec.task_step("a").timeout,
        spec.task_step("a").queue,
        spec.task_step("a").priority,
    ) == (
        90.0,
        "fast",
        0,
    )
    assert spec.task_step("b").retry == RetryPolicy(max_attempts=4, backoff="fixed", delay=3)
    assert spec.task_step("c").retry == RetryPolicy(max_attempts=2, jitter=False)
    assert spec.task_step("d").inputs == {"a": 1, "retry": "not an option"}


def test_task_name_strings_are_allowed() -> None:
    wf = Workflow("byname")
    wf.step("a", "some.registered.task", x=1)
    assert wf.spec.task_step("a").task == "some.registered.task"
    assert wf.tasks == {}


def test_tasks_lists_task_objects_used() -> None:
    wf = Workflow("tasks")
    wf.step("a", noarg)
    wf.step("b", transform, rows=1)
    wf.step("c", noarg)
    assert wf.tasks == {"unit.noarg": noarg, "unit.transform": transform}


def test_spec_is_rebuilt_after_changes() -> None:
    wf = Workflow("rebuilt")
    wf.step("a", noarg)
    first = wf.spec
    assert wf.spec is first
    wf.step("b", noarg)
    assert [s.id for s in wf.spec.steps] == ["a", "b"]


# -- builder errors -------------------------------------------------------------------------------


def test_plain_function_is_not_a_task() -> None:
    wf = Workflow("plain")
    with pytest.raises(DefinitionError) as info:
        wf.step("a", plain)  # type: ignore[arg-type]
    assert str(info.value) == (
        "workflow 'plain' step 'a': plain is not a task; decorate it with @legato.task"
    )


def test_duplicate_step_id() -> None:
    wf = Workflow("dup")
    wf.step("a", noarg)
    with pytest.raises(DefinitionError, match="workflow 'dup': duplicate step id 'a'"):
        wf.step("a", noarg)


@pytest.mark.parametrize(
    ("retry", "message"),
    [
        ("x", "invalid retry: expected RetryPolicy, a number of retries or a dict, got 'x'"),
        (-1, "invalid retry: retries must be an int from 0 to 999, got -1"),
        (1000, "invalid retry: retries must be an int from 0 to 999, got 1000"),
        ({"nope": 1}, "invalid retry: nope: unknown field (found 1)"),
        ({"backoff": "sideways"}, "invalid retry: backoff: Input should be"),
        ({"delay": "soon"}, "invalid retry: delay: expected a duration such as '30s'"),
        (
            {"max_delay": "inf"},
            "invalid retry: max_delay: a duration must be a finite number of seconds, got 'inf'",
        ),
        (
            {"delay": float("nan")},
            "invalid retry: delay: a duration must be a finite number of seconds, got nan",
        ),
        ({"delay": -1}, "invalid retry: delay: a duration cannot be negative, got -1"),
        ({"max_attempts": True}, "invalid retry: max_attempts: expected a whole number, got True"),
        (True, "invalid retry: expected RetryPolicy"),
    ],
)
def test_bad_retry_values(retry: Any, message: str) -> None:
    wf = Workflow("retry")
    with pytest.raises(DefinitionError) as info:
        wf.step("a", noarg, retry=retry)
    assert str(info.value).startswith(f"workflow 'retry' step 'a': {message}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": "inf"}, "timeout: a duration must be a finite number of seconds, got 'inf'"),
        (
            {"timeout": float("inf")},
            "timeout: a duration must be a finite number of seconds, got inf",
        ),
        ({"timeout": "nan"}, "timeout: a duration must be a finite number of seconds, got 'nan'"),
        (
            {"timeout": "1e999"},
            "timeout: a duration must be a finite number of seconds, got '1e999'",
        ),
        ({"timeout": 0}, "timeout: a duration must be more than zero, got 0"),
        ({"timeout": "0s"}, "timeout: a duration must be more than zero, got '0s'"),
        ({"timeout": "-5"}, "timeout: a duration cannot be negative, got '-5'"),
        (
            {"timeout": "soon"},
            "timeout: expected a duration such as '30s', '5m', '1h30m' or a number of seconds, "
            "got 'soon'",
        ),
        ({"priority": 10}, "priority must be an int from 0 to 9, got 10"),
        ({"priority": True}, "priority must be an int from 0 to 9, got True"),
        ({"priority": 1.5}, "priority must be an int from 0 to 9, got 1.5"),
    ],
)
def test_bad_step_options_are_one_error_naming_the_step(
    options: dict[str, Any], message: str
) -> None:
    wf = Workflow("opts")
    with pytest.raises(DefinitionError) as info:
        wf.step("a", noarg, **options)
    assert str(info.value) == f"workflow 'opts' step 'a': {message}"
    assert info.value.problems == [str(info.value)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {1, 2},
            "step 'a' input 'rows': $ is of type set, which JSON cannot carry "
            "(convert it to a list)",
        ),
        (float("nan"), "step 'a' input 'rows': $ is nan, which JSON cannot represent"),
        ({"k": [1, b"x"]}, "step 'a' input 'rows': $.k[1] is of type bytes"),
        (object(), "step 'a' input 'rows': $ is of type object, which JSON cannot carry"),
        (
            {"a": {2: "x"}},
            "step 'a' input 'rows': $.a has a key 2 of type int; JSON object keys must be strings",
        ),
        ([ParamRef("p"), {"s": {3}}], "step 'a' input 'rows': $[1].s is of type set"),
    ],
)
def test_non_json_literal_inputs(value: Any, message: str) -> None:
    wf = Workflow("literal")
    with pytest.raises(DefinitionError) as info:
        wf.step("a", transform, rows=value)
    assert str(info.value).startswith(message)


def test_passing_a_step_instead_of_its_output() -> None:
    wf = Workflow("step_as_value")
    a = wf.step("a", noarg)
    with pytest.raises(
        DefinitionError, match=r"step 'b' input 'rows': pass a.output, not the step"
    ):
        wf.step("b", transform, rows=a)


def test_param_declarations() -> None:
    wf = Workflow("params")
    wf.param("n", 3, type="int", description="how many")
    wf.param("n")  # a bare reference again is fine
    wf.param("path")
    wf.step("a", load, path=wf.param("path"), limit=wf.param("n"))
    params = wf.spec.params
    assert params["n"].required is False and params["n"].default == 3
    assert params["n"].type == "int" and params["n"].description == "how many"
    assert params["path"].required is True
    with pytest.raises(DefinitionError, match="param 'n' is declared twice, differently"):
        wf.param("n", 4)
    with pytest.raises(DefinitionError, match="param 'bad' default: \\$ is of type set"):
        wf.param("bad", {1})
    with pytest.raises(DefinitionError) as info:
        wf.param("typed", type="number")
    assert str(info.value) == (
        "workflow 'params': param 'typed': type: Input should be 'any', 'str', 'int', 'float', "
        "'bool', 'list', 'dict', 'date', 'datetime' or 'choice' (found 'number')"
    )


# -- check_calls --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda wf: wf.step("a", load),
            "workflow 'calls': step 'a' cannot call task unit.load: missing a required "
            "argument: 'path' (its parameters: path, limit, flag)",
        ),
        (
            lambda wf: wf.step("a", load, path="p", bogus=1),
            "workflow 'calls': step 'a' cannot call task unit.load: got an unexpected keyword "
            "argument 'bogus' (its parameters: path, limit, flag)",
        ),
        (
            lambda wf: wf.step("a", noarg, x=1),
            "workflow 'calls': step 'a' cannot call task unit.noarg: got an unexpected keyword "
            "argument 'x' (its parameters: none)",
        ),
        (
            lambda wf: wf.step("a", posonly, a=1),
            "workflow 'calls': step 'a' cannot call task unit.posonly: 'a' parameter is "
            "positional only, but was passed as a keyword (its parameters: a)",
        ),
    ],
)
def test_check_calls_refuses_arguments_that_do_not_fit(build: Any, message: str) -> None:
    wf = Workflow("calls")
    build(wf)
    with pytest.raises(DefinitionError) as info:
        wf.spec  # noqa: B018
    assert str(info.value) == message


def test_check_calls_lists_every_bad_step() -> None:
    wf = Workflow("calls")
    wf.step("a", load)
    wf.step("b", noarg, y=2)
    wf.step("c", anykw, a=1, anything=2)  # **kwargs takes any keyword
    with pytest.raises(DefinitionError) as info:
        wf.spec  # noqa: B018
    assert len(info.value.problems) == 2
    assert info.value.problems[0].startswith("step 'a' cannot call task unit.load")
    assert info.value.problems[1].startswith("step 'b' cannot call task unit.noarg")


# -- Sequence -------------------------------------------------------------------------------------


def test_sequence_first_task_takes_params_later_ones_the_previous_output() -> None:
    seq = Sequence("seq", [load, transform, noarg, transform])
    spec = seq.spec
    assert [s.id for s in spec.steps] == ["load", "transform", "noarg", "transform_2"]
    assert {k: p.model_dump(exclude_defaults=True) for k, p in spec.params.items()} == {
        "path": {"type": "str"},
        "limit": {"type": "int", "required": False, "default": 10},
        "flag": {"type": "bool", "required": False, "default": False},
    }
    assert spec.extra_params is False
    first, second, third, fourth = (spec.task_step(s.id) for s in spec.steps)
    assert first.inputs == "${{ params }}" and first.args == [] and first.needs == []
    assert second.args == ["${{ steps.load.output }}"] and second.needs == ["load"]
    assert third.args == [] and third.inputs == {} and third.needs == ["transform"]
    assert fourth.args == ["${{ steps.noarg.output }}"] and fourth.needs == ["noarg"]
    assert spec.outputs == {"result": "${{ steps.transform_2.output }}"}
    assert spec.bind_params({"path": "p"}) == {"path": "p", "limit": 10, "flag": False}


def test_sequence_first_task_with_kwargs_accepts_extra_params() -> None:
    spec = Sequence("seq_kw", [anykw, transform]).spec
    assert spec.extra_params is True
    assert list(spec.params) == ["a"] and spec.params["a"].type == "int"
    assert spec.bind_params({"a": 1, "more": 2}) == {"a": 1, "more": 2}


def test_sequence_first_task_without_arguments() -> None:
    spec = Sequence("seq_none", [noarg, tuned]).spec
    assert spec.params == {}
    assert spec.task_step("noarg").inputs == {}
    assert spec.task_step("tuned").args == ["${{ steps.noarg.output }}"]


def test_sequence_param_types_from_annotations() -> None:
    from legato import task

    from .tasks import registry

    @task(name="unit.seq_typed", registry=registry)
    def typed(a: list[int], b: dict[str, int], c: float, d: object, e="x") -> None: ...

    spec = Sequence("seq_typed", [typed]).spec
    assert {k: p.type for k, p in spec.params.items()} == {
        "a": "list",
        "b": "dict",
        "c": "float",
        "d": "any",
        "e": "any",
    }
    assert spec.params["e"].default == "x" and not spec.params["e"].required


def test_sequence_errors() -> None:
    with pytest.raises(DefinitionError, match="sequence 'empty' needs at least one task"):
        Sequence("empty", [])
    with pytest.raises(DefinitionError, match=r"sequence 's' item 1: .* is not a task"):
        Sequence("s", [noarg, plain])  # type: ignore[list-item]
    with pytest.raises(
        DefinitionError,
        match=r"first task unit.posonly takes positional-only parameter 'a'; params are passed",
    ):
        Sequence("s", [posonly])
    with pytest.raises(DefinitionError, match=r"step 'pair' cannot call task unit.pair: missing"):
        Sequence("s", [noarg, pair]).spec  # noqa: B018
