"""The specs of standalone task calls: names any task name maps to, and their shape."""

from __future__ import annotations

import pytest

from legato.model.steps import SleepStep, TaskStep
from legato.standalone import CallShape, call_spec, step_id_for, workflow_name_for


@pytest.mark.parametrize(
    ("task", "workflow", "step"),
    [
        ("etl.load", "etl_load", "load"),
        ("Etl.Load@v2", "etl_load_v2", "Load_v2"),
        ("9lives.run", "task_9lives_run", "run"),
        ("a..b__c", "a_b_c", "b_c"),
        ("pkg.wait", "pkg_wait", "call"),
        ("pkg.-x", "pkg_x", "x"),
        ("pkg.9", "pkg_9", "call"),
        ("___", "task", "call"),
    ],
)
def test_every_task_name_gives_a_valid_workflow_and_step(
    task: str, workflow: str, step: str
) -> None:
    assert (workflow_name_for(task), step_id_for(task)) == (workflow, step)
    spec = call_spec(CallShape(task=task, args=2))
    assert (spec.name, spec.version) == (workflow, "task")
    [call] = spec.steps
    assert isinstance(call, TaskStep)
    assert call.args == ["${{ params.args[0] }}", "${{ params.args[1] }}"]
    assert call.inputs == "${{ params.kwargs }}"
    assert spec.outputs == {"result": f"${{{{ steps.{step}.output }}}}"}


def test_a_delay_is_a_sleep_before_the_call_and_the_shape_sets_the_policy() -> None:
    spec = call_spec(CallShape(task="etl.load", args=0, queue="q", priority=4, wait="eta"))
    wait, call = spec.steps
    assert isinstance(wait, SleepStep) and wait.until == "${{ params.eta }}"
    assert isinstance(call, TaskStep) and call.needs == ["wait"]
    assert (call.queue, call.priority) == ("q", 4)
    assert set(spec.params) == {"args", "kwargs", "eta"}
    assert call_spec(CallShape(task="etl.load", args=0)).content_hash != spec.content_hash
