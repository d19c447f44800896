"""The graph of a spec and the planner's pure decisions."""

from __future__ import annotations

from typing import Any

import pytest

from legato.engine.planner import (
    StepPolicy,
    TaskDefaults,
    condition_holds,
    expression_context,
    plan_new_run,
    resolve_call,
    resolve_outputs,
    shard_of,
    shards_for,
    truthy,
)
from legato.errors import TemplateError
from legato.expressions import evaluate
from legato.model.graph import Graph
from legato.model.spec import RetryPolicy, StepSpec, WorkflowSpec
from legato.model.states import StepStatus

T = "unit.t"


def spec_of(*steps: dict[str, Any], **extra: Any) -> WorkflowSpec:
    return WorkflowSpec.parse({"name": "g", "steps": list(steps), **extra})


def diamond() -> WorkflowSpec:
    return spec_of(
        {"id": "a", "task": T},
        {"id": "b", "task": T, "needs": ["a"]},
        {"id": "c", "task": T, "inputs": {"x": "${{ steps.a.output }}"}},
        {"id": "d", "task": T, "needs": ["b"], "inputs": {"y": "${{ steps.c.output.v }}"}},
        outputs={"r": "${{ steps.d.output }}", "first": "${{ steps.a.output }}"},
    )


DEFAULTS = {
    T: TaskDefaults(retry=RetryPolicy(max_attempts=3), timeout=10.0, queue="q1", priority=2)
}


# -- graph ------------------------------------------------------------------------


def test_graph_dependencies_successors_and_reads() -> None:
    graph = Graph.of(diamond())
    assert graph.deps == {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}
    assert graph.successors == {"a": ("b", "c"), "b": ("d",), "c": ("d",), "d": ()}
    assert graph.reads == {
        "a": frozenset(),
        "b": frozenset(),
        "c": frozenset({"a"}),
        "d": frozenset({"c"}),
    }
    assert graph.output_reads == frozenset({"a", "d"})
    assert graph.order == ("a", "b", "c", "d")
    assert graph.roots == ("a",)


def test_a_need_that_is_also_read_counts_once() -> None:
    graph = Graph.of(
        spec_of(
            {"id": "a", "task": T},
            {"id": "b", "task": T, "needs": ["a", "a"], "args": ["${{ steps.a.output }}"]},
        )
    )
    assert graph.deps["b"] == ("a",)
    assert graph.successors["a"] == ("b",)
    assert graph.reads["b"] == frozenset({"a"})


def test_topological_order_follows_dependencies_then_spec_order() -> None:
    graph = Graph.of(
        spec_of(
            {"id": "late", "task": T, "needs": ["mid"]},
            {"id": "x", "task": T},
            {"id": "mid", "task": T, "needs": ["root"]},
            {"id": "root", "task": T},
            {"id": "y", "task": T},
        )
    )
    assert graph.order == ("x", "root", "y", "mid", "late")
    assert graph.roots == ("x", "root", "y")
    position = {step_id: i for i, step_id in enumerate(graph.order)}
    for step_id, deps in graph.deps.items():
        assert all(position[d] < position[step_id] for d in deps)


# -- plan_new_run -------------------------------------------------------------------


def test_plan_new_run_creates_every_top_level_instance_waiting_on_its_dependencies() -> None:
    rows = plan_new_run(Graph.of(diamond()), DEFAULTS)
    assert [(r.key, r.position, r.status, r.deps_remaining) for r in rows] == [
        ("a", 0, StepStatus.WAITING, 0),  # ready at once: the store decides it in the same
        ("b", 1, StepStatus.WAITING, 1),  # transaction (a task is queued)
        ("c", 2, StepStatus.WAITING, 1),
        ("d", 3, StepStatus.WAITING, 2),
    ]
    assert {(r.task, r.scope, r.kind) for r in rows} == {(T, "", "task")}
    assert all(r.policy == StepPolicy.of(diamond().task_step(r.step_id), DEFAULTS[T]) for r in rows)


def test_plan_new_run_with_several_roots() -> None:
    spec = spec_of({"id": "a", "task": T}, {"id": "b", "task": T}, {"id": "c", "task": T})
    rows = plan_new_run(Graph.of(spec), DEFAULTS)
    assert [r.deps_remaining for r in rows] == [0, 0, 0]


def test_a_task_without_known_defaults_leaves_them_to_the_worker() -> None:
    [row] = plan_new_run(Graph.of(spec_of({"id": "a", "task": T, "priority": 4})), {})
    assert row.policy == StepPolicy(
        retry=None, timeout=None, queue="default", priority=4, max_lost_attempts=None
    )
    assert row.policy is not None and not row.policy.resolved


# -- StepPolicy -----------------------------------------------------------------------


def test_step_policy_takes_task_defaults_when_the_step_says_nothing() -> None:
    step = StepSpec(id="s", task=T)
    policy = StepPolicy.of(step, DEFAULTS[T])
    assert policy == StepPolicy(
        retry=RetryPolicy(max_attempts=3), timeout=10.0, queue="q1", priority=2
    )


def test_step_policy_step_overrides_win_including_zero_priority() -> None:
    retry = RetryPolicy(max_attempts=7, backoff="fixed")
    step = StepSpec.model_validate(
        {"id": "s", "task": T, "retry": retry, "timeout": "2m", "queue": "fast", "priority": 0}
    )
    policy = StepPolicy.of(step, DEFAULTS[T])
    assert policy.retry == retry
    assert policy.timeout == 120.0
    assert policy.queue == "fast"
    assert policy.priority == 0  # 0 is an override, not "unset"


def test_step_policy_mixes_overrides_and_defaults_field_by_field() -> None:
    step = StepSpec(id="s", task=T, priority=9)
    policy = StepPolicy.of(step, DEFAULTS[T])
    assert policy.retry is not None
    assert (policy.retry.max_attempts, policy.timeout, policy.queue, policy.priority) == (
        3,
        10.0,
        "q1",
        9,
    )


# -- resolving calls and outputs --------------------------------------------------------


def context(**outputs: Any) -> dict[str, Any]:
    return expression_context(
        {"n": 3, "name": "ada", "opts": {"k": 1}}, outputs, {"id": "run-1"}, {"v": "x"}
    )


def test_expression_context_shape() -> None:
    ctx = expression_context({"p": 1}, {"a": [1]}, {"id": "r"})
    assert ctx == {
        "params": {"p": 1},
        "steps": {"a": {"output": [1]}},
        "jobs": {"a": {"outputs": [1]}},
        "run": {"id": "r"},
        "vars": {},
    }


def test_jobs_read_what_steps_read_and_matrix_its_own_item() -> None:
    ctx = expression_context(
        {},
        {"a": {"n": 2}},
        {},
        statuses={"a": "completed", "b": "failed"},
        item=3,
        matrix={"os": "linux"},
    )
    assert evaluate("${{ jobs.a.outputs.n }}", ctx) == 2
    assert evaluate("${{ jobs.a.status }}/${{ jobs.b.status }}", ctx) == "completed/failed"
    assert evaluate("${{ jobs.b.outputs }}", ctx) is None
    assert evaluate("${{ matrix.os }}-${{ item }}", ctx) == "linux-3"
    assert "matrix" not in expression_context({}, {}, {}, item=1)  # only inside a matrix


def test_resolve_call_args_and_kwargs() -> None:
    step = StepSpec(
        id="s",
        task=T,
        args=["${{ steps.a.output }}", 5, "run ${{ run.id }}"],
        inputs={"n": "${{ params.n }}", "label": "hi ${{ params.name }}", "v": "${{ vars.v }}"},
    )
    args, kwargs = resolve_call(step, context(a={"rows": [1, 2]}))
    assert args == [{"rows": [1, 2]}, 5, "run run-1"]
    assert kwargs == {"n": 3, "label": "hi ada", "v": "x"}


def test_resolve_call_whole_expression_inputs() -> None:
    step = StepSpec(id="s", task=T, inputs="${{ params }}")
    args, kwargs = resolve_call(step, context())
    assert args == []
    assert kwargs == {"n": 3, "name": "ada", "opts": {"k": 1}}
    assert isinstance(kwargs, dict)


def test_resolve_call_whole_expression_must_yield_a_mapping() -> None:
    step = StepSpec(id="s", task=T, inputs="${{ steps.a.output }}")
    with pytest.raises(
        TemplateError, match="step 's': inputs must evaluate to a mapping, got list"
    ):
        resolve_call(step, context(a=[1, 2]))


def test_resolve_call_input_names_must_be_identifiers() -> None:
    step = StepSpec(id="s", task=T, inputs="${{ steps.a.output }}")
    with pytest.raises(TemplateError, match=r"input names must be identifiers, got \['not ok'\]"):
        resolve_call(step, context(a={"not ok": 1, "fine": 2}))


def test_resolve_call_reports_missing_data() -> None:
    step = StepSpec(id="s", task=T, inputs={"x": "${{ steps.a.output.nope }}"})
    with pytest.raises(TemplateError, match="nope"):
        resolve_call(step, context(a={"rows": 1}))


def test_resolve_outputs() -> None:
    graph = Graph.of(diamond())
    outputs = resolve_outputs(graph, context(a=[1], d={"done": True}))
    assert outputs == {"r": {"done": True}, "first": [1]}


def test_conditions_default_to_success_and_status_functions_say_otherwise() -> None:
    step = StepSpec(id="s", task=T)
    assert condition_holds(step, {}, ["completed", "completed"])
    assert not condition_holds(step, {}, ["completed", "skipped"])
    assert not condition_holds(step, {}, ["failed"])
    when = StepSpec(id="s", task=T, when="${{ params.go }}")
    assert condition_holds(when, {"params": {"go": True}}, ["completed"])
    assert not condition_holds(when, {"params": {"go": True}}, ["failed"])  # success() implied
    for text, statuses, expected in [
        ("${{ always() }}", ["failed", "skipped"], True),
        ("${{ failure() }}", ["completed", "failed"], True),
        ("${{ failure() }}", ["completed"], False),
        ("${{ cancelled() }}", ["cancelled"], True),
        ("${{ success() and params.go }}", ["completed"], False),
        ("${{ not failure() }}", ["skipped"], True),
    ]:
        step = StepSpec(id="s", task=T, when=text)
        assert condition_holds(step, {"params": {"go": False}}, statuses) is expected, text


def test_truthy_reads_text_as_people_write_it() -> None:
    assert [truthy(v) for v in ("false", "False ", "0", "", "no", "null", "yes", "1")] == [
        False,
        False,
        False,
        False,
        False,
        False,
        True,
        True,
    ]
    assert truthy([1]) and not truthy([]) and not truthy(None)


def test_shards_spread_large_scopes_and_keep_small_ones_on_one_row() -> None:
    assert shards_for(3) == 1 and shards_for(63) == 1 and shards_for(64) == 16
    keys = [f"m[{i}]" for i in range(1000)]
    assert {shard_of(k, 1) for k in keys} == {0}
    assert {shard_of(k, 16) for k in keys} == set(range(16))
    assert shard_of("m[7]", 16) == shard_of("m[7]", 16)
