"""The group step: steps of its own run once, as one step, on each backend.

A group is a scope like a switch's branch: its steps are keyed by their own ids
(the group adds nothing to keys), its output is its ``output`` or its last
step's, and a failed step inside fails it as a failed branch fails its switch.
"""

from __future__ import annotations

from typing import Any

import legato
from legato import Client, DefinitionError, Run, RunStatus, StepStatus, Workflow
from store.helpers import claim, ok, report

from .tasks_conditions import add, echo, fail, tag


def statuses(run: Run) -> dict[str, str]:
    return {key: step.status.value for key, step in run.steps.items()}


def run_of(wf: Workflow, db_url: str, params: dict[str, Any] | None = None) -> Run:
    return legato.run(wf, params, url=db_url, timeout=30)


def test_a_group_runs_its_steps_once_and_outputs_its_last_steps_output(db_url: str) -> None:
    wf = Workflow("grouped")
    first = wf.step("first", echo, x=2)
    job = wf.group("job")
    load = job.step("load", add, a=first.output, b=1)
    job.step("save", add, a=load.output, b=10)
    after = wf.step("after", tag, label="after", x=job.output)
    wf.outputs(job=job.output, after=after.output)
    run = run_of(wf, db_url)

    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"job": 13, "after": {"label": "after", "x": 13}}
    assert statuses(run) == {
        "first": "completed",
        "job": "completed",
        "load": "completed",
        "save": "completed",
        "after": "completed",
    }
    assert run.steps["job"].kind == "group"
    assert (run.steps["load"].scope, run.steps["save"].scope) == ("job", "job")
    assert run.steps["after"].scope == ""
    keys = list(run.steps)
    assert keys.index("job") < keys.index("load") < keys.index("after")  # listed inside


def test_a_groups_output_expression_reads_its_steps(db_url: str) -> None:
    wf = Workflow("group_output")
    job = wf.group("job", output={"sum": "${{ steps.a.output + steps.b.output }}"})
    job.step("a", echo, x=1)
    job.step("b", echo, x=2)
    wf.outputs(job=job.output)
    assert run_of(wf, db_url).outputs == {"job": {"sum": 3}}


def test_a_group_with_several_last_steps_outputs_them_by_id(db_url: str) -> None:
    wf = Workflow("group_sinks")
    job = wf.group("job")
    job.step("a", echo, x="A")
    job.step("b", echo, x="B")
    wf.outputs(job=job.output)
    assert run_of(wf, db_url).outputs == {"job": {"a": "A", "b": "B"}}


def failing_group(**group: Any) -> Workflow:
    wf = Workflow("failing_group")
    job = wf.group("job", **group)
    broken = job.step("broken", fail, message="inside broke")
    job.step("rest", tag, label="rest", needs=[broken])
    job.step("undo", tag, label="undo", needs=[broken], when="${{ failure() }}")
    wf.step("after", tag, label="after", needs=[job])
    wf.step("after_always", tag, label="after_always", needs=[job], when="${{ always() }}")
    return wf


def test_a_failed_step_inside_fails_the_group_and_the_run(client: Client, db_url: str) -> None:
    run = run_of(failing_group(), db_url)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.type, run.error.message, run.error.step) == ("Boom", "inside broke", "broken")
    assert statuses(run) == {
        "job": "failed",
        "broken": "failed",
        "rest": "cancelled",
        "undo": "completed",  # the group's own reactor ran before it failed
        "after": "cancelled",
        "after_always": "completed",
    }
    job = run.steps["job"]
    assert job.error is not None and job.error.step == "broken"
    history = [(e.type, e.step_id) for e in client.history(run.id)]
    assert history.index(("step.completed", "undo")) < history.index(("step.failed", "job"))


def test_a_group_that_continues_on_error_fails_and_the_run_completes(db_url: str) -> None:
    run = run_of(failing_group(continue_on_error=True), db_url)
    assert run.status is RunStatus.COMPLETED
    steps = statuses(run)
    assert (steps["job"], steps["broken"], steps["undo"]) == ("failed", "failed", "completed")
    assert (steps["after"], steps["after_always"]) == ("skipped", "completed")


def test_a_step_inside_that_continues_on_error_lets_the_group_complete(db_url: str) -> None:
    wf = Workflow("group_tolerates")
    job = wf.group("job")
    job.step("broken", fail, continue_on_error=True)
    job.step("fine", echo, x="fine")
    wf.outputs(job=job.output)
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["job"].status is StepStatus.COMPLETED
    assert run.outputs == {"job": {"broken": None, "fine": "fine"}}


def test_a_skipped_group_makes_none_of_its_steps(db_url: str) -> None:
    wf = Workflow("group_skipped")
    job = wf.group("job", when=wf.param("go"))
    job.step("inside", echo, x=1)
    wf.step("after", echo, x=job.output)
    wf.step("anyway", echo, x=job.output, when="${{ always() }}")
    run = run_of(wf, db_url, {"go": False})
    assert run.status is RunStatus.COMPLETED
    assert statuses(run) == {"job": "skipped", "after": "skipped", "anyway": "completed"}


def test_a_group_inside_a_map_runs_once_per_item(db_url: str) -> None:
    wf = Workflow("group_in_map")
    per = wf.map("per", over=[1, 2, 3])
    job = per.group("job", output="${{ steps.double.output }}")
    job.step("double", add, a=legato.item, b="${{ item }}")
    per.step("label", tag, label="${{ index }}", x=job.output)
    wf.outputs(per=per.output)
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"per": [{"label": i, "x": 2 * (i + 1)} for i in range(3)]}
    assert run.steps["per[1].job"].scope == "per[1]"
    assert run.steps["per[1].double"].scope == "per[1].job"
    assert run.steps["per[1].double"].output == 4


def test_a_map_inside_a_group(db_url: str) -> None:
    wf = Workflow("map_in_group")
    job = wf.group("job")
    listed = job.step("listed", echo, x=[1, 2])
    job.map("each", add, over=listed.output, a=legato.item, b=100)
    wf.outputs(job=job.output)
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"job": [101, 102]}
    assert run.steps["each"].scope == "job"
    assert run.steps["each[1]"].scope == "each"


def test_a_failed_item_inside_a_group_inside_a_map_fails_them_all(db_url: str) -> None:
    wf = Workflow("deep_failure")
    per = wf.map("per", over=[0, 1], max_parallel=1)  # item 0 is done before item 1 starts
    job = per.group("job")
    job.step("pick", echo, x=legato.item)
    job.step("bad", fail, message="${{ 'item ' ~ item }}", when="${{ item == 1 }}")
    run = run_of(wf, db_url)
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.message == "item 1"
    assert run.steps["per[0].job"].status is StepStatus.COMPLETED
    assert run.steps["per[1].job"].status is StepStatus.FAILED
    assert run.steps["per"].status is StepStatus.FAILED


def test_cancelling_a_run_reaches_inside_its_group(client: Client) -> None:
    wf = Workflow("cancel_group")
    job = wf.group("job")
    first = job.step("first", echo, x=1)
    job.step("second", echo, x=first.output)
    wf.step("after", echo, x=job.output)
    run_id = client.start(wf)
    [running] = claim(client, tasks=("flow_conditions.echo",))
    assert running.step_id == "first"
    client.cancel(run_id, "stop")

    assert report(client, [ok(running, 1)]).accepted == 1  # a running task finishes
    assert claim(client, tasks=("flow_conditions.echo",)) == []
    run = client.get(run_id)
    assert run.status is RunStatus.CANCELLED
    assert statuses(run) == {
        "job": "cancelled",
        "first": "completed",
        "second": "cancelled",
        "after": "cancelled",
    }


def test_a_terminate_inside_a_group_ends_the_run_and_what_the_group_holds(
    db_url: str,
) -> None:
    wf = Workflow("group_terminate")
    job = wf.group("job")
    stop = job.terminate("stop", reason="enough", outputs={"done": True})
    job.step("never", echo, x=1, needs=[stop])
    wf.step("later", echo, x=job.output)
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"done": True}
    assert statuses(run) == {
        "job": "cancelled",
        "stop": "completed",
        "never": "cancelled",
        "later": "cancelled",
    }


def test_steps_outside_read_a_group_only_through_its_output() -> None:
    wf = Workflow("group_hidden")
    job = wf.group("job")
    inner = job.step("inner", echo, x=1)
    wf.step("outside", echo, x=inner.output)
    try:
        wf.spec  # noqa: B018
    except DefinitionError as exc:
        message = str(exc)
    else:  # pragma: no cover
        raise AssertionError("reading a step inside a group from outside was accepted")
    assert "refers to step 'inner', which is inside another step" in message


def test_a_group_needs_a_step() -> None:
    wf = Workflow("group_empty")
    wf.group("job")
    try:
        wf.spec  # noqa: B018
    except DefinitionError as exc:
        assert "step 'job': a group needs at least one step" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("an empty group was accepted")
