"""Schedule-to-start and heartbeat timeouts: checked where they are written, carried to steps."""

from __future__ import annotations

from typing import Any

import pytest

import legato
from legato import Context, DefinitionError, TaskRegistry, Workflow
from legato.client import task_defaults
from legato.engine.planner import StepPolicy, TaskDefaults
from legato.files import load_text

BAD = [0, "0s", float("nan"), float("inf"), "1e999", -1, "-1s", "soon", True]
FIELDS = ["schedule_to_start_timeout", "heartbeat_timeout"]


def beat(ctx: Context, x: Any = None) -> Any:
    return x


def mute(x: Any = None) -> Any:
    return x


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", BAD, ids=repr)
def test_a_task_refuses_a_timeout_that_is_no_positive_finite_duration(
    field: str, value: Any
) -> None:
    with pytest.raises(DefinitionError) as caught:
        legato.task(name="t.bad", registry=TaskRegistry(), **{field: value})(beat)
    assert str(caught.value).startswith(f"task t.bad: {field}: ")


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", BAD, ids=repr)
def test_a_step_refuses_a_timeout_that_is_no_positive_finite_duration(
    field: str, value: Any
) -> None:
    registry = TaskRegistry()
    task = legato.task(name="t.beat", registry=registry)(beat)
    wf = Workflow("w")
    with pytest.raises(DefinitionError) as caught:
        wf.step("a", task, **{field: value})
    assert "step 'a'" in str(caught.value) and f"{field}: " in str(caught.value)


def test_a_heartbeat_timeout_needs_a_task_that_can_heartbeat() -> None:
    registry = TaskRegistry()
    with pytest.raises(DefinitionError, match=r"take a legato\.Context"):
        legato.task(name="t.mute", heartbeat_timeout="5s", registry=registry)(mute)
    quiet = legato.task(name="t.mute", registry=registry)(mute)
    wf = Workflow("w")
    wf.step("a", quiet, heartbeat_timeout=5)
    with pytest.raises(DefinitionError, match=r"step 'a' has a heartbeat_timeout.*t\.mute"):
        wf.spec  # noqa: B018  (the spec is checked when it is made)
    fine = Workflow("w")
    fine.step("b", quiet, schedule_to_start_timeout="1m")  # any task may time out unclaimed
    assert fine.spec.graph.steps["b"].schedule_to_start_timeout == 60.0  # type: ignore[union-attr]


def test_the_task_s_timeouts_are_its_steps_defaults_and_a_step_overrides_them() -> None:
    registry = TaskRegistry()
    task = legato.task(
        name="t.beat", schedule_to_start_timeout="2m", heartbeat_timeout="15s", registry=registry
    )(beat)
    defaults = task_defaults(task)
    assert (defaults.schedule_to_start_timeout, defaults.heartbeat_timeout) == (120.0, 15.0)
    assert TaskDefaults.from_json(defaults.to_json()) == defaults
    wf = Workflow("w")
    wf.step("plain", task)
    wf.step("own", task, schedule_to_start_timeout=5, heartbeat_timeout="1m")
    steps = wf.spec.graph.steps
    plain = StepPolicy.of(steps["plain"], defaults)  # type: ignore[arg-type]
    own = StepPolicy.of(steps["own"], defaults)  # type: ignore[arg-type]
    assert (plain.schedule_to_start_timeout, plain.heartbeat_timeout) == (120.0, 15.0)
    assert (own.schedule_to_start_timeout, own.heartbeat_timeout) == (5.0, 60.0)


def test_a_definition_file_carries_the_timeouts_and_refuses_bad_ones() -> None:
    text = """
name: timed
jobs:
  main:
    stages:
      - id: a
        uses: files.echo
        schedule_to_start_timeout: 1m30s
"""
    [spec] = load_text(text)
    assert spec.graph.steps["a"].schedule_to_start_timeout == 90.0  # type: ignore[union-attr]
    with pytest.raises(DefinitionError, match="schedule_to_start_timeout") as caught:
        load_text(text.replace("1m30s", "0s"))
    assert "a duration must be more than zero" in str(caught.value)
    with pytest.raises(DefinitionError, match="heartbeat_timeout"):
        load_text(text.replace("schedule_to_start_timeout: 1m30s", "heartbeat_timeout: .nan"))
