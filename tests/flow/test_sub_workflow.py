"""Sub-workflow steps on each backend: another workflow run as one step of this one.

The child is a run of its own, linked to its parent's run and step; its outputs
are the step's output, its failure fails the step (which ``retry`` may try
again with a new child), and a parent that ends early takes its running child
with it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import legato
from legato import Client, Run, RunStatus, StepStatus, Workflow
from legato.errors import ConflictError
from store.helpers import claim, failed, ok, report

from .tasks_loops import ALL_TASKS, add, echo, fail, fails_first_call, square, tag


def run_of(wf: Workflow, db_url: str, params: dict[str, Any] | None = None) -> Run:
    return legato.run(wf, params, url=db_url, timeout=30)


def events(client: Client, run_id: str) -> list[tuple[str, str | None]]:
    return [(e.type, e.step_id) for e in client.history(run_id)]


def children_of(client: Client, run_id: str) -> list[Run]:
    """The run's child runs, oldest first."""
    runs = [r for r in client.list_runs(limit=1000) if r.parent_run_id == run_id]
    return sorted(runs, key=lambda r: r.created_at)


def doubling_child() -> Workflow:
    child = Workflow("doubling_child")
    doubled = child.step("double", add, a=child.param("x"), b=child.param("x"))
    child.outputs(doubled=doubled.output)
    return child


# -- a child run, linked ------------------------------------------------------------------------


def test_the_child_run_is_linked_and_its_outputs_are_the_step_output(
    client: Client, db_url: str
) -> None:
    wf = Workflow("parent")
    pre = wf.step("pre", echo, x=21)
    sub = wf.sub_workflow("sub", doubling_child(), params={"x": pre.output})
    after = wf.step("after", echo, x=sub.output["doubled"])
    wf.outputs(result=sub.output, after=after.output)
    run = run_of(wf, db_url)

    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": {"doubled": 42}, "after": 42}
    assert (run.parent_run_id, run.parent_step, run.root_run_id) == (None, None, run.id)
    step = run.steps["sub"]
    assert (step.kind, step.status, step.output) == (
        "sub_workflow",
        StepStatus.COMPLETED,
        {"doubled": 42},
    )
    assert step.child_run_id is not None
    [child] = children_of(client, run.id)
    assert child.id == step.child_run_id
    child = client.get(child.id)
    assert child.workflow == "doubling_child"
    assert child.status is RunStatus.COMPLETED
    assert (child.parent_run_id, child.parent_step, child.root_run_id) == (run.id, "sub", run.id)
    assert child.params == {"x": 21}  # templated from the parent's step output
    assert child.outputs == {"doubled": 42}
    assert child.steps["double"].inputs == {"a": 21, "b": 21}
    assert run.steps["after"].inputs == {"x": 42}

    suspended = [e for e in client.history(run.id) if e.type == "step.suspended"]
    assert [(e.step_id, (e.details or {}).get("run")) for e in suspended] == [("sub", child.id)]
    created = client.history(child.id)[0]
    assert created.type == "run.created"
    assert created.details is not None
    assert (created.details["parent_run"], created.details["parent_step"]) == (run.id, "sub")
    history = events(client, run.id)
    assert history.index(("step.completed", "pre")) < history.index(("step.suspended", "sub"))
    assert history.index(("step.completed", "sub")) < history.index(("step.queued", "after"))


def test_the_child_is_started_only_when_its_step_is_reached(client: Client) -> None:
    wf = Workflow("reached")
    pre = wf.step("pre", echo, x=4)
    wf.sub_workflow("sub", doubling_child(), params={"x": pre.output})
    run_id = client.start(wf)
    assert children_of(client, run_id) == []
    [step] = claim(client, tasks=ALL_TASKS)
    assert step.step_id == "pre"
    assert report(client, [ok(step, 4)]).accepted == 1
    [child] = children_of(client, run_id)
    assert client.get(run_id).steps["sub"].status is StepStatus.SUSPENDED
    assert client.get(run_id).steps["sub"].waiting_for == f"run:{child.id}"
    [inner] = claim(client, tasks=ALL_TASKS)
    assert (inner.run_id, inner.step_id, inner.kwargs) == (child.id, "double", {"a": 4, "b": 4})
    assert report(client, [ok(inner, 8)]).accepted == 1
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["sub"].output == {"doubled": 8}


def test_a_child_in_each_iteration_of_a_loop(client: Client, db_url: str) -> None:
    child = Workflow("squaring_child")
    squared = child.step("sq", square, x=child.param("x"))
    child.outputs(sq=squared.output)
    wf = Workflow("loop_of_children")
    lp = wf.loop("lp", max_iterations=5, until="${{ steps.sub.output.sq >= 4 }}")
    lp.sub_workflow("sub", child, params={"x": legato.iteration})
    wf.outputs(result=lp.output)
    run = run_of(wf, db_url)

    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": {"sq": 4}}
    children = children_of(client, run.id)
    assert [(c.parent_step, c.params, c.outputs) for c in children] == [
        ("lp[0].sub", {"x": 0}, {"sq": 0}),
        ("lp[1].sub", {"x": 1}, {"sq": 1}),
        ("lp[2].sub", {"x": 2}, {"sq": 4}),
    ]
    for i, c in enumerate(children):
        assert run.steps[f"lp[{i}].sub"].child_run_id == c.id
        assert c.root_run_id == run.id


# -- failures and retries ------------------------------------------------------------------------


def test_a_failed_child_fails_its_step_and_the_parent(client: Client, db_url: str) -> None:
    bad = Workflow("failing_child")
    bad.step("f", fail, message="child broke")
    wf = Workflow("failing_parent")
    sub = wf.sub_workflow("sub", bad)
    wf.step("after", echo, x=sub.output)
    run = run_of(wf, db_url)

    assert run.status is RunStatus.FAILED
    [child] = children_of(client, run.id)
    assert child.status is RunStatus.FAILED
    assert child.error is not None
    assert (child.error.type, child.error.message, child.error.step) == ("Boom", "child broke", "f")
    step = run.steps["sub"]
    assert step.status is StepStatus.FAILED
    assert step.child_run_id == child.id
    assert step.error is not None
    assert step.error.type == "Boom"
    assert step.error.message == f"child run {child.id}: child broke"
    assert run.error is not None
    assert (run.error.type, run.error.step) == ("Boom", "sub")
    assert "child broke" in run.error.message
    assert run.steps["after"].status is StepStatus.CANCELLED


def test_a_failed_child_that_continues_on_error_lets_the_parent_complete(db_url: str) -> None:
    bad = Workflow("failing_child")
    bad.step("f", fail, message="child broke")
    wf = Workflow("tolerant_parent")
    sub = wf.sub_workflow("sub", bad, continue_on_error=True)
    wf.step("on_failure", echo, x="handled", needs=[sub], when="${{ failure() }}")
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["sub"].status is StepStatus.FAILED
    assert run.steps["on_failure"].output == "handled"


def flaky_parent(counter: Path) -> Workflow:
    child = Workflow("flaky_child")
    called = child.step("f", fails_first_call, path=str(counter), x=child.param("x"))
    child.outputs(calls=called.output["calls"], x=called.output["x"])
    wf = Workflow("retrying_parent")
    sub = wf.sub_workflow(
        "sub", child, params={"x": "given"}, retry={"max_attempts": 2, "delay": 0}
    )
    wf.outputs(result=sub.output)
    return wf


def test_a_retried_step_starts_a_new_child_and_the_second_succeeds(
    client: Client, db_url: str, tmp_path: Path
) -> None:
    counter = tmp_path / f"calls-{uuid.uuid4().hex}"
    run = run_of(flaky_parent(counter), db_url)

    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": {"calls": 2, "x": "given"}}
    assert counter.read_text() == "2"
    first, second = children_of(client, run.id)
    assert (first.status, second.status) == (RunStatus.FAILED, RunStatus.COMPLETED)
    for c in (first, second):
        assert (c.parent_run_id, c.parent_step, c.root_run_id) == (run.id, "sub", run.id)
        assert c.params == {"x": "given"}
    assert first.error is not None and first.error.message == "call 1 failed"
    step = run.steps["sub"]
    assert step.status is StepStatus.COMPLETED
    assert step.child_run_id == second.id  # the latest child
    assert step.attempt == 2
    assert step.output == {"calls": 2, "x": "given"}
    history = client.history(run.id)
    retrying = [e for e in history if e.type == "step.retrying"]
    assert [e.step_id for e in retrying] == ["sub"]
    assert retrying[0].details is not None
    assert first.id in retrying[0].details["error"]["message"]
    suspended = [(e.details or {}).get("run") for e in history if e.type == "step.suspended"]
    assert suspended == [first.id, second.id]


def test_a_child_retried_without_delay_starts_at_once(
    client: Client, db_url: str, tmp_path: Path
) -> None:
    """With ``delay: 0`` the next child starts as soon as the first has failed, not at
    the worker's next sweep of timers (every 2 s)."""
    run = run_of(flaky_parent(tmp_path / f"calls-{uuid.uuid4().hex}"), db_url)
    assert run.status is RunStatus.COMPLETED
    first, second = children_of(client, run.id)
    assert first.finished_at is not None
    waited = (second.created_at - first.finished_at).total_seconds()
    assert waited < 1.0, f"the second child started {waited:.2f}s after the first failed"


def test_a_step_out_of_retries_fails_with_the_last_childs_error(
    client: Client, db_url: str
) -> None:
    bad = Workflow("always_failing_child")
    bad.step("f", fail, message="still broken")
    wf = Workflow("giving_up")
    wf.sub_workflow("sub", bad, retry={"max_attempts": 2, "delay": 0})
    run = run_of(wf, db_url)
    assert run.status is RunStatus.FAILED
    children = children_of(client, run.id)
    assert [c.status for c in children] == [RunStatus.FAILED, RunStatus.FAILED]
    step = run.steps["sub"]
    assert step.child_run_id == children[1].id
    assert step.error is not None
    assert step.error.message == f"child run {children[1].id}: still broken"


# -- a parent that ends takes its child with it ----------------------------------------------------


def held_child_parent(*, sibling: bool) -> Workflow:
    child = Workflow("held_child")
    work = child.step("work", tag, label="child", x=child.param("x"))
    child.step("later", echo, x=work.output)
    wf = Workflow("holding_parent")
    sub = wf.sub_workflow("sub", child, params={"x": 1})
    wf.step("after", echo, x=sub.output)
    if sibling:
        wf.step("sibling", fail, message="sibling broke")
    return wf


def test_cancelling_the_parent_cancels_its_running_child(client: Client) -> None:
    run_id = client.start(held_child_parent(sibling=False))
    [work] = claim(client, tasks=ALL_TASKS)  # the child's first step is now running
    [child] = children_of(client, run_id)
    assert work.run_id == child.id

    client.cancel(run_id, "stopped by the operator")

    run = client.get(run_id)
    assert run.status is RunStatus.CANCELLED
    assert run.steps["sub"].status is StepStatus.CANCELLED
    assert run.steps["after"].status is StepStatus.CANCELLED
    child = client.get(child.id)
    assert child.status is RunStatus.CANCELLED
    assert child.error is not None
    assert child.error.message == "its parent run was cancelled"
    assert child.steps["later"].status is StepStatus.CANCELLED  # not started: never will
    assert ("run.cancelled", None) in events(client, child.id)
    # the step that was running finishes and is recorded; nothing starts after it
    assert report(client, [ok(work, "late")]).accepted == 1
    assert claim(client, tasks=ALL_TASKS) == []
    child = client.get(child.id)
    assert child.status is RunStatus.CANCELLED
    assert child.steps["work"].status is StepStatus.COMPLETED
    assert child.steps["later"].status is StepStatus.CANCELLED
    assert client.get(run_id).status is RunStatus.CANCELLED
    with pytest.raises(
        ConflictError, match="is cancelled: only a pending, running or paused run can be cancelled"
    ):
        client.cancel(run_id, "again")


def test_a_parent_that_fails_cancels_its_running_child(client: Client) -> None:
    run_id = client.start(held_child_parent(sibling=True))
    held = {s.step_id: s for s in claim(client, tasks=ALL_TASKS)}
    assert sorted(held) == ["sibling", "work"]
    [child] = children_of(client, run_id)

    outcome = report(client, [failed(held["sibling"], "sibling broke", retryable=False)])
    assert outcome.accepted == 1
    assert outcome.finished_runs == {run_id: RunStatus.FAILED, child.id: RunStatus.CANCELLED}

    run = client.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.step == "sibling"
    assert run.steps["sub"].status is StepStatus.CANCELLED
    child = client.get(child.id)
    assert child.status is RunStatus.CANCELLED
    assert child.error is not None and child.error.message == "its parent run failed"
    assert report(client, [ok(held["work"], "late")]).accepted == 1
    assert claim(client, tasks=ALL_TASKS) == []
    assert client.get(child.id).steps["later"].status is StepStatus.CANCELLED


# -- a stored workflow, by name -------------------------------------------------------------


def named_child(version: str) -> Workflow:
    child = Workflow("named_child", version=version)
    said = child.step("say", tag, label=f"v{version}", x=child.param("x"))
    child.outputs(said=said.output)
    return child


def store_named_children(client: Client) -> None:
    """Start versions 1 and 2 of ``named_child`` once each, so their specs are stored."""
    for version in ("1", "2"):
        run_id = client.start(named_child(version), {"x": 0})
        [step] = claim(client, tasks=ALL_TASKS)
        assert report(client, [ok(step, None)]).accepted == 1
        assert client.get(run_id).status is RunStatus.COMPLETED


def test_a_stored_workflow_is_run_by_name_newest_version_unless_one_is_given(
    client: Client, db_url: str
) -> None:
    store_named_children(client)
    wf = Workflow("by_name")
    newest = wf.sub_workflow("newest", "named_child", params={"x": 1})
    pinned = wf.sub_workflow("pinned", "named_child", version="1", params={"x": 2})
    wf.outputs(newest=newest.output, pinned=pinned.output)
    run = run_of(wf, db_url)

    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {
        "newest": {"said": {"label": "v2", "x": 1}},
        "pinned": {"said": {"label": "v1", "x": 2}},
    }
    children = {c.parent_step: c for c in children_of(client, run.id)}
    assert {k: (c.workflow, c.version) for k, c in children.items()} == {
        "newest": ("named_child", "2"),
        "pinned": ("named_child", "1"),
    }
    assert run.steps["newest"].child_run_id == children["newest"].id


def test_an_unknown_workflow_name_fails_the_step_naming_it(client: Client, db_url: str) -> None:
    wf = Workflow("unknown_child")
    wf.sub_workflow("sub", "no_such_workflow")
    wf.step("after", echo, x="after", needs=["sub"])
    run = run_of(wf, db_url)
    assert run.status is RunStatus.FAILED
    step = run.steps["sub"]
    assert step.status is StepStatus.FAILED
    assert step.child_run_id is None
    assert step.error is not None
    assert "no workflow 'no_such_workflow' is stored" in step.error.message
    assert step.error.message.startswith("step 'sub'")
    assert run.error is not None and run.error.step == "sub"
    assert run.steps["after"].status is StepStatus.CANCELLED
    assert children_of(client, run.id) == []


@pytest.mark.parametrize(
    ("params", "problem"),
    [({}, "missing required param 'x'"), ({"x": 1, "y": 2}, "unknown param 'y'")],
)
def test_params_the_child_does_not_accept_fail_the_step(
    client: Client, db_url: str, params: dict[str, Any], problem: str
) -> None:
    wf = Workflow("bad_params")
    wf.sub_workflow("sub", doubling_child(), params=params)
    run = run_of(wf, db_url)
    assert run.status is RunStatus.FAILED
    error = run.steps["sub"].error
    assert error is not None
    assert error.type == "ParamError"
    assert error.message.startswith("step 'sub'")
    assert problem in error.message
    assert children_of(client, run.id) == []  # nothing half-started
