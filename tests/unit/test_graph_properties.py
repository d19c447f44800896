"""Properties of the graph on random DAGs and cycles."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from legato.engine.planner import TaskDefaults, plan_new_run
from legato.errors import CycleError
from legato.model.graph import Graph
from legato.model.spec import RetryPolicy, WorkflowSpec

T = "unit.t"
DEFAULTS = {T: TaskDefaults(retry=RetryPolicy(), timeout=None, queue="default", priority=0)}


@st.composite
def dags(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Steps s0..sN in a random order, each depending only on earlier-numbered steps."""
    n = draw(st.integers(min_value=1, max_value=12))
    steps = []
    for i in range(n):
        earlier = [f"s{j}" for j in range(i)]
        needs = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        reads = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        step: dict[str, Any] = {"id": f"s{i}", "task": T, "needs": needs}
        if reads:
            step["inputs"] = {f"in{k}": f"${{{{ steps.{r}.output }}}}" for k, r in enumerate(reads)}
        steps.append(step)
    return draw(st.permutations(steps))


@settings(max_examples=100, deadline=None)
@given(dags())
def test_order_respects_every_dependency(steps: list[dict[str, Any]]) -> None:
    graph = Graph.of(WorkflowSpec.parse({"name": "g", "steps": steps}))
    assert sorted(graph.order) == sorted(s["id"] for s in steps)
    position = {step_id: i for i, step_id in enumerate(graph.order)}
    for step in steps:
        expected = set(step["needs"]) | {v.split(".")[1] for v in step.get("inputs", {}).values()}
        assert set(graph.deps[step["id"]]) == expected
        assert len(graph.deps[step["id"]]) == len(expected)  # no duplicates
        for dep in expected:
            assert position[dep] < position[step["id"]]
            assert step["id"] in graph.successors[dep]


@settings(max_examples=100, deadline=None)
@given(dags(), st.randoms(use_true_random=False))
def test_counters_release_every_step_exactly_once(steps: list[dict[str, Any]], rnd: Any) -> None:
    """Complete ready steps in a random order, as the store does with its counters."""
    graph = Graph.of(WorkflowSpec.parse({"name": "g", "steps": steps}))
    rows = plan_new_run(graph, DEFAULTS)
    remaining = {r.step_id: r.deps_remaining for r in rows}
    ready = [r.step_id for r in rows if r.deps_remaining == 0]
    assert ready == list(graph.roots)
    released: list[str] = list(ready)
    done: set[str] = set()
    while ready:
        step_id = ready.pop(rnd.randrange(len(ready)))
        assert all(dep in done for dep in graph.deps[step_id])  # never run early
        done.add(step_id)
        for nxt in graph.successors[step_id]:
            remaining[nxt] -= 1
            if remaining[nxt] == 0:
                ready.append(nxt)
                released.append(nxt)
    assert sorted(released) == sorted(graph.order)
    assert len(released) == len(set(released))
    assert set(remaining.values()) <= {0}


@st.composite
def cyclic(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A DAG with one back edge added, which closes a cycle."""
    n = draw(st.integers(min_value=2, max_value=10))
    steps: list[dict[str, Any]] = [{"id": f"s{i}", "task": T, "needs": []} for i in range(n)]
    for i in range(1, n):
        steps[i]["needs"] = draw(
            st.lists(st.sampled_from([f"s{j}" for j in range(i)]), unique=True)
        )
    # make s_low need s_high where s_high already (transitively) needs s_low
    high = draw(st.integers(min_value=1, max_value=n - 1))
    low = draw(st.integers(min_value=0, max_value=high - 1))
    chain = [f"s{k}" for k in range(low, high + 1)]
    for a, b in itertools.pairwise(chain):
        if a not in steps[int(b[1:])]["needs"]:
            steps[int(b[1:])]["needs"].append(a)
    steps[low]["needs"].append(f"s{high}")
    return draw(st.permutations(steps))


@settings(max_examples=100, deadline=None)
@given(cyclic())
def test_cycles_are_reported_as_real_cycles(steps: list[dict[str, Any]]) -> None:
    with pytest.raises(CycleError) as info:
        WorkflowSpec.parse({"name": "g", "steps": steps})
    cycle = info.value.cycle
    needs = {s["id"]: set(s["needs"]) for s in steps}
    assert cycle[0] == cycle[-1] and len(cycle) >= 2
    assert len(set(cycle[:-1])) == len(cycle) - 1  # each step once
    for before, after in itertools.pairwise(cycle):
        assert before in needs[after]  # read in execution direction
    assert str(info.value) == "workflow 'g': steps form a cycle: " + " -> ".join(cycle)
