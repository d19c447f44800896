"""What files compile to: jobs, stages in order, parallel branches, matrices, ids."""

from __future__ import annotations

from typing import Any

import pytest

from legato.errors import DefinitionError
from legato.files import load_text
from legato.files.compile import matrix_combinations


def compiled(text: str) -> dict[str, Any]:
    (spec,) = load_text(text, "t.yaml")
    return spec.to_dict()


def steps_by_id(steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {}
    for step in steps:
        found[step["id"]] = step
        for key in ("steps", "default"):
            found.update(steps_by_id(step.get(key) or []))
        for branch in (step.get("cases") or {}).values():
            found.update(steps_by_id(branch))
    return found


def test_stages_run_in_order_after_one_another() -> None:
    spec = compiled(
        """
name: ordered
stages:
  - {id: a, uses: files.echo}
  - {id: b, uses: files.echo, if: params.go}
  - {id: c, uses: files.echo}
  - {id: d, uses: files.echo, if: failure()}
params: {go: bool}
"""
    )
    steps = steps_by_id(spec["steps"])
    assert "after" not in steps["a"]
    assert steps["b"]["after"] == ["a"]
    assert steps["b"]["when"] == "${{ params.go }}"
    assert steps["c"]["after"] == ["b"]
    # A stage reacting to failures runs after every stage before it, so it sees them.
    assert steps["d"]["after"] == ["a", "b", "c"]


def test_steps_are_a_graph_with_nothing_added() -> None:
    spec = compiled(
        """
name: graph
steps:
  - {id: a, uses: files.echo}
  - {id: b, uses: files.echo}
  - {id: c, uses: files.echo, needs: [a, b]}
"""
    )
    steps = steps_by_id(spec["steps"])
    assert "after" not in steps["b"]
    assert steps["c"]["needs"] == ["a", "b"]


def test_a_job_is_a_group_and_a_matrix_job_a_map() -> None:
    spec = compiled(
        """
name: jobs
jobs:
  extract:
    strategy:
      matrix: {region: [eu, us], size: [s]}
      max_parallel: 1
    stages:
      - {id: fetch, uses: files.echo, with: {x: "${{ matrix.region }}"}}
    outputs: {region: "${{ matrix.region }}", got: "${{ steps.fetch.output }}"}
  report:
    needs: extract
    if: "${{ always() }}"
    stages:
      - {id: sum, uses: files.echo, with: {x: "${{ jobs.extract.outputs }}"}}
"""
    )
    extract, report = spec["steps"]
    assert extract["kind"] == "map"
    assert extract["for_each"] == [{"region": "eu", "size": "s"}, {"region": "us", "size": "s"}]
    assert extract["max_parallel"] == 1
    assert extract["matrix"] is True  # matrix.<axis> reads it at any depth inside
    assert extract["output"] == {
        "region": "${{ matrix.region }}",
        "got": "${{ steps.fetch.output }}",
    }
    assert [s["id"] for s in extract["steps"]] == ["fetch"]
    assert report["kind"] == "group"
    assert report["needs"] == ["extract"]
    assert report["when"] == "${{ always() }}"


def test_parallel_branches_are_groups_in_a_group() -> None:
    spec = compiled(
        """
name: branches
stages:
  - id: both
    parallel:
      left: [{id: l1, uses: files.echo}, {id: l2, uses: files.echo}]
      right: {steps: [{id: r1, uses: files.echo}]}
"""
    )
    (both,) = spec["steps"]
    assert both["kind"] == "group"
    left, right = both["steps"]
    assert (left["id"], right["id"]) == ("both_left", "both_right")
    assert left["steps"][1]["after"] == ["l1"]
    assert "after" not in right["steps"][0]
    assert both["output"] == {
        "left": '${{ steps["both_left"].output }}',
        "right": '${{ steps["both_right"].output }}',
    }


def test_ids_are_made_from_names_or_places_and_never_taken_twice() -> None:
    spec = compiled(
        """
name: ids
jobs:
  load:
    stages:
      - {name: Retrieve API data, uses: files.echo}
      - {name: Retrieve API data, uses: files.echo}
      - {uses: files.echo}
      - {id: load_4, uses: files.echo}
      - {uses: files.echo}
"""
    )
    (load,) = spec["steps"]
    assert [s["id"] for s in load["steps"]] == [
        "retrieve_api_data",
        "retrieve_api_data_2",
        "load_3",
        "load_4",
        "load_5",
    ]
    assert load["steps"][0]["description"] == "Retrieve API data"


def test_ddeutil_case_and_match() -> None:
    spec = compiled(
        """
name: cases
params: {n: int}
stages:
  - id: pick
    case: "${{ params.n }}"
    match:
      - {case: 1, stages: [{id: one, uses: files.echo}]}
      - {case: _, stages: [{id: other, uses: files.echo}]}
"""
    )
    (pick,) = spec["steps"]
    assert pick["kind"] == "switch"
    assert list(pick["cases"]) == ["1"]
    assert pick["default"][0]["id"] == "other"


def test_a_version_written_as_a_number_is_kept_as_written() -> None:
    spec = compiled("name: v\nversion: 1.10\nsteps: [{id: a, uses: files.echo}]\n")
    assert spec["version"] == "1.10"


def test_params_short_and_long() -> None:
    spec = compiled(
        """
name: params
params:
  a: str
  b: {type: int, default: 3}
  c: {type: choice, options: [x, y], default: x}
  d: {type: date, required: false}
steps: [{id: s, uses: files.echo}]
"""
    )
    assert spec["params"] == {
        "a": {"type": "str"},
        "b": {"type": "int", "required": False, "default": 3},
        "c": {"type": "choice", "required": False, "default": "x", "options": ["x", "y"]},
        "d": {"type": "date", "required": False},
    }


def test_triggers_are_kept_with_the_workflow() -> None:
    spec = compiled(
        """
name: scheduled
on:
  - cron: "*/5 * * * *"
    timezone: Asia/Bangkok
  - cronjob: "0 6 * * 1"
steps: [{id: s, uses: files.echo}]
"""
    )
    assert spec["triggers"][0] == {"cron": "*/5 * * * *", "timezone": "Asia/Bangkok"}
    assert spec["triggers"][1]["cron"] == "0 6 * * 1"


def test_a_bad_cron_is_named_at_its_place() -> None:
    with pytest.raises(DefinitionError, match=r"t.yaml:\d+:\d+: .*cron"):
        load_text(
            "name: c\non: {cron: 'every day'}\nsteps: [{id: s, uses: files.echo}]\n", "t.yaml"
        )


def test_matrix_combinations_expand_as_github_actions_does() -> None:
    combos = matrix_combinations(
        {"os": ["linux", "mac"], "py": [3.11, 3.12]},
        include=[{"os": "mac", "py": 3.12, "experimental": True}, {"os": "win", "py": 3.11}],
        exclude=[{"os": "linux", "py": 3.11}],
    )
    assert combos == [
        {"os": "linux", "py": 3.12},
        {"os": "mac", "py": 3.11},
        {"os": "mac", "py": 3.12, "experimental": True},
        {"os": "win", "py": 3.11},
    ]


def test_flow_limits_are_carried_to_the_step() -> None:
    spec = compiled(
        """
name: limited
steps:
  - {id: a, uses: files.echo, concurrency: 2, concurrency_key: x, rate_limit: 10/1m}
  - {id: b, uses: files.echo, priority: 3}
"""
    )
    steps = steps_by_id(spec["steps"])
    assert (steps["a"]["concurrency"], steps["a"]["concurrency_key"]) == (2, "x")
    assert steps["a"]["rate_limit"] == "10/1m"
    assert "concurrency" not in steps["b"]
