"""Groups, ``after`` edges and the ``matrix``/``jobs`` contexts in the spec, graph and planner."""

from __future__ import annotations

from typing import Any

import pytest

from legato import Workflow
from legato.engine.planner import condition_holds, plan_new_run, plan_scope
from legato.errors import CycleError, DefinitionError
from legato.model.instances import Place
from legato.model.spec import TaskStep, WorkflowSpec
from legato.model.steps import GroupStep

from .tasks import noarg, pair, transform

T = "unit.t"


def parse(*steps: dict[str, Any], **extra: Any) -> WorkflowSpec:
    return WorkflowSpec.parse({"name": "wf", "steps": list(steps), **extra})


def problems(*steps: dict[str, Any], **extra: Any) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse(*steps, **extra)
    return info.value.problems


# -- group -------------------------------------------------------------------------------


def grouped() -> WorkflowSpec:
    return parse(
        {"id": "first", "task": T},
        {
            "id": "job",
            "kind": "group",
            "output": "${{ steps.save.output }}",
            "steps": [
                {"id": "load", "task": T, "inputs": {"x": "${{ steps.first.output }}"}},
                {"id": "save", "task": T, "needs": ["load"]},
            ],
        },
        {"id": "last", "task": T, "inputs": {"x": "${{ steps.job.output }}"}},
    )


def test_a_group_is_a_scope_whose_steps_are_keyed_by_their_own_ids() -> None:
    spec = grouped()
    graph = spec.graph
    assert isinstance(spec.step("job"), GroupStep)
    assert graph.info["load"].scope == "job"
    assert graph.info["load"].chain == ("job",)
    assert graph.info["load"].repeats == ()  # it runs once: no [n] in its key
    # what a step inside reads from outside, its group waits for
    assert graph.deps == {
        "first": (),
        "job": ("first",),
        "last": ("job",),
        "load": (),
        "save": ("load",),
    }
    assert graph.scopes["job"].sinks == ("save",)
    rows = plan_scope(graph, "job", Place(), "job", {}, position=4)
    assert [(r.key, r.scope, r.position, r.deps_remaining) for r in rows] == [
        ("load", "job", 4, 0),
        ("save", "job", 4, 1),
    ]
    assert [r.kind for r in plan_new_run(graph, {})] == ["task", "group", "task"]


def test_a_group_round_trips_and_leaves_no_trace_in_specs_without_one() -> None:
    spec = grouped()
    assert WorkflowSpec.parse(spec.to_json()).content_hash == spec.content_hash
    assert "after" not in parse({"id": "a", "task": T}).to_json()


def test_a_groups_problems_are_named() -> None:
    assert problems({"id": "job", "kind": "group", "steps": []}) == [
        "step 'job': a group needs at least one step"
    ]
    found = problems(
        {"id": "job", "kind": "group", "steps": [{"id": "inner", "task": T}]},
        {"id": "outside", "task": T, "inputs": {"x": "${{ steps.inner.output }}"}},
    )
    assert found == [
        "step 'outside' inputs refers to step 'inner', which is inside another step; refer "
        "to that step's output instead"
    ]


def test_the_builder_makes_groups_whose_output_is_a_reference() -> None:
    wf = Workflow("built")
    job = wf.group("job", output={"n": "${{ steps.inner.output }}"}, description="a job")
    job.step("inner", pair, a=1, b=2)
    wf.step("use", transform, rows=job.output)
    spec = wf.spec
    group = spec.step("job")
    assert isinstance(group, GroupStep)
    assert [s.id for s in group.steps] == ["inner"]
    assert group.output == {"n": "${{ steps.inner.output }}"}
    assert spec.step("use").inputs == {"rows": "${{ steps.job.output }}"}  # type: ignore[union-attr]


# -- after --------------------------------------------------------------------------------


def test_after_edges_are_dependencies_that_only_order() -> None:
    spec = parse(
        {"id": "a", "task": T},
        {"id": "b", "task": T},
        {"id": "c", "task": T, "needs": ["a"], "after": ["a", "b"]},
        {"id": "d", "task": T, "after": ["b"], "inputs": {"x": "${{ steps.b.output }}"}},
    )
    graph = spec.graph
    assert graph.deps["c"] == ("a", "b")
    assert graph.deps["d"] == ("b",)
    assert graph.successors["b"] == ("c", "d")
    # needed or read, a step is more than an order: only c's b is after-only
    assert graph.ordering == {"c": frozenset({"b"})}
    assert graph.ordering_successors == {"b": frozenset({"c"})}
    assert [r.deps_remaining for r in plan_new_run(graph, {})] == [0, 0, 2, 1]


def test_a_step_it_runs_after_and_reads_the_status_of_only_stays_an_order() -> None:
    graph = parse(
        {"id": "a", "task": T},
        {"id": "b", "task": T, "after": ["a"], "when": "${{ steps.a.status == 'failed' }}"},
        {"id": "c", "task": T, "after": ["a"], "when": "${{ jobs.a.status != 'skipped' }}"},
        {"id": "d", "task": T, "after": ["a"], "inputs": {"x": "${{ jobs.a.outputs }}"}},
        {"id": "e", "task": T, "when": "${{ steps.a.status == 'completed' }}"},
    ).graph
    assert graph.ordering == {"b": frozenset({"a"}), "c": frozenset({"a"})}
    assert all(graph.deps[s] == ("a",) for s in "bcde")
    assert graph.reads["b"] == frozenset({"a"})  # its status is fetched to decide it


def test_after_is_checked_like_needs() -> None:
    found = problems(
        {"id": "a", "task": T, "after": ["a", "nowhere"]},
        {
            "id": "sw",
            "kind": "switch",
            "value": "x",
            "cases": {"x": [{"id": "inside", "task": T, "after": ["a"]}]},
        },
    )
    assert found == [
        "step 'a' runs after itself",
        "step 'a' runs after unknown step 'nowhere'",
        "step 'inside' runs after step 'a', which is in another scope; a step can run after "
        "only steps beside it (its compound step can run after the others)",
    ]


def test_a_cycle_through_after_is_named() -> None:
    with pytest.raises(CycleError) as info:
        parse(
            {"id": "a", "task": T, "after": ["c"]},
            {"id": "b", "task": T, "needs": ["a"]},
            {"id": "c", "task": T, "inputs": {"x": "${{ steps.b.output }}"}},
        )
    assert str(info.value) == "workflow 'wf': steps form a cycle: a -> b -> c -> a"


def test_every_builder_method_takes_after() -> None:
    wf = Workflow("ordered")
    first = wf.step("first", noarg)
    made = [
        wf.step("task", noarg, after=[first]),
        wf.switch("switch", on="x", after=[first]),
        wf.group("group", after=[first]),
        wf.map("map", transform, over=[1], rows=1, after=[first]),
        wf.loop("loop", until="${{ true }}", after=[first]),
        wf.sub_workflow("sub", "other", after=[first]),
        wf.sleep("sleep", 1, after=[first]),
        wf.wait_for_signal("signal", after=[first]),
        wf.terminate("terminate", after=[first]),
        wf.set_vars("vars", after=["first"], a=1),
        *wf.add_group([("grouped", noarg)], after=[first]),
    ]
    made[1].case("x").step("in_case", noarg)  # type: ignore[attr-defined]
    made[2].step("in_group", noarg)  # type: ignore[attr-defined]
    made[4].step("in_loop", noarg)  # type: ignore[attr-defined]
    spec = wf.spec
    assert all(spec.step(ref.id).after == ["first"] for ref in made)
    assert all(spec.graph.ordering[ref.id] == {"first"} for ref in made)
    with pytest.raises(DefinitionError, match="after takes steps or step ids, got 3"):
        wf.step("bad", noarg, after=[3])  # type: ignore[list-item]


# -- conditions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "needed", "after", "runs"),
    [
        (None, [], ["skipped"], True),  # the default success() looks at needs only
        (None, [], ["failed"], True),
        (None, ["skipped"], ["completed"], False),
        ("${{ success() }}", [], ["failed"], False),  # status functions see every one
        ("${{ failure() }}", ["completed"], ["failed"], True),
        ("${{ cancelled() }}", [], ["cancelled"], True),
        ("${{ always() }}", ["failed"], [], True),
        ("${{ params.go }}", [], ["failed"], True),
        ("${{ params.go }}", ["failed"], [], False),
    ],
)
def test_status_functions_see_after_dependencies_and_the_default_does_not(
    when: str | None, needed: list[str], after: list[str], runs: bool
) -> None:
    step = TaskStep(id="s", task=T, when=when)
    assert condition_holds(step, {"params": {"go": True}}, needed, after) is runs


# -- matrix and jobs -------------------------------------------------------------------------


def test_jobs_references_are_dependencies_like_steps_references() -> None:
    spec = parse(
        {"id": "build", "task": T},
        {"id": "test", "task": T, "when": "${{ jobs.build.status == 'completed' }}"},
        {"id": "ship", "task": T, "inputs": {"x": "${{ jobs.build.outputs.artifact }}"}},
    )
    assert spec.graph.deps == {"build": (), "test": ("build",), "ship": ("build",)}


def test_jobs_offers_outputs_and_status_only() -> None:
    assert problems(
        {"id": "build", "task": T},
        {"id": "ship", "task": T, "inputs": {"x": "${{ jobs.build.output }}"}},
    ) == [
        "step 'ship' inputs: expression '${{ jobs.build.output }}': use jobs.build.outputs or "
        "jobs.build.status; jobs.build offers nothing else"
    ]


def test_matrix_exists_only_inside_a_map_over_a_matrix() -> None:
    assert problems({"id": "a", "task": T, "inputs": {"os": "${{ matrix.os }}"}}) == [
        "step 'a' inputs: matrix exists only inside a job with a strategy.matrix"
    ]
    # A plain map's items are items, not matrix combinations.
    assert problems(
        {"id": "m", "kind": "map", "for_each": [1], "task": T, "inputs": {"x": "${{ matrix }}"}}
    ) == ["step 'm' inputs: matrix exists only inside a job with a strategy.matrix"]
    spec = parse(
        {
            "id": "m",
            "kind": "map",
            "matrix": True,
            "for_each": [{"os": "linux"}],
            "task": T,
            "inputs": {"os": "${{ matrix.os }}"},
        },
        {
            "id": "per",
            "kind": "map",
            "matrix": True,
            "for_each": [{"os": "linux"}],
            "steps": [
                {
                    "id": "inner",
                    "kind": "map",
                    "for_each": [1, 2],
                    "task": T,
                    "inputs": {"os": "${{ matrix.os }}", "n": "${{ item }}"},
                }
            ],
        },
    )
    assert spec.graph.deps["m"] == ()
