"""``after``: a step starts after others whatever became of them, on each backend.

An ``after`` step orders without being needed: a skipped or failed one does not
skip the step (the default ``success()`` looks at ``needs`` and data only), while
the status functions see it like any dependency.
"""

from __future__ import annotations

from typing import Any

import legato
from legato import Client, Run, RunStatus, Workflow
from store.helpers import claim, ok, report

from .tasks_conditions import echo, fail, tag


def statuses(run: Run) -> dict[str, str]:
    return {key: step.status.value for key, step in run.steps.items()}


def run_of(wf: Workflow, db_url: str, params: dict[str, Any] | None = None) -> Run:
    return legato.run(wf, params, url=db_url, timeout=30)


def test_a_step_starts_only_once_the_steps_it_runs_after_have_finished(client: Client) -> None:
    wf = Workflow("ordered")
    first = wf.step("first", echo, x=1)
    wf.step("second", echo, x=2, after=[first])
    client.start(wf)
    [claimed] = claim(client, tasks=("flow_conditions.echo",))
    assert claimed.step_id == "first"
    assert claim(client, tasks=("flow_conditions.echo",)) == []  # second waits
    report(client, [ok(claimed, 1)])
    [claimed] = claim(client, tasks=("flow_conditions.echo",))
    assert claimed.step_id == "second"


def test_a_skipped_step_does_not_skip_the_steps_that_run_after_it(db_url: str) -> None:
    wf = Workflow("after_skipped")
    maybe = wf.step("maybe", echo, x="maybe", when=wf.param("go"))
    wf.step("after", tag, label="after", after=[maybe])
    wf.step("needing", tag, label="needing", needs=[maybe])
    wf.set_vars("noted", after=[maybe], done=True)  # a kind the engine decides
    wf.step(
        "seen", tag, label="seen", after=[maybe], when="${{ steps.maybe.status == 'completed' }}"
    )
    wf.step("read", tag, label="read", after=[maybe], when="${{ steps.maybe.status == 'skipped' }}")
    run = run_of(wf, db_url, {"go": False})
    assert run.status is RunStatus.COMPLETED
    assert statuses(run) == {
        "maybe": "skipped",
        "after": "completed",
        "needing": "skipped",
        "noted": "completed",
        "seen": "skipped",  # its condition is false
        "read": "completed",  # reading its status, it still only runs after it
    }


def test_a_failed_step_that_continues_does_not_skip_them_and_failure_sees_it(
    db_url: str,
) -> None:
    wf = Workflow("after_failed")
    broken = wf.step("broken", fail, continue_on_error=True)
    wf.step("after", tag, label="after", after=[broken])
    wf.step("on_failure", tag, label="on_failure", after=[broken], when="${{ failure() }}")
    wf.step("on_success", tag, label="on_success", after=[broken], when="${{ success() }}")
    wf.group("grouped", after=[broken]).step("inside", echo, x="inside")
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert statuses(run) == {
        "broken": "failed",
        "after": "completed",
        "on_failure": "completed",
        "on_success": "skipped",
        "grouped": "completed",
        "inside": "completed",
    }


def test_stages_in_order_run_a_failure_handler_after_an_earlier_stage_failed(
    client: Client, db_url: str
) -> None:
    # What "stages run in order" compiles to: each stage after the one before, and
    # one whose condition calls a status function after every earlier stage.
    wf = Workflow("stages")
    one = wf.step("one", fail, message="stage one broke")
    two = wf.step("two", tag, label="two", after=[one])
    wf.step("three", tag, label="three", after=[one, two], when="${{ failure() }}")
    run = run_of(wf, db_url)
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.message == "stage one broke"
    assert statuses(run) == {"one": "failed", "two": "cancelled", "three": "completed"}
    history = [(e.type, e.step_id) for e in client.history(run.id)]
    assert history.index(("step.completed", "three")) < history.index(("run.failed", None))


def test_a_failed_step_without_continue_on_error_still_fails_the_run(db_url: str) -> None:
    wf = Workflow("after_fails")
    one = wf.step("one", fail)
    wf.step("two", tag, label="two", after=[one])
    run = run_of(wf, db_url)
    assert run.status is RunStatus.FAILED
    assert statuses(run) == {"one": "failed", "two": "cancelled"}


def test_inside_a_group_after_orders_its_steps(db_url: str) -> None:
    wf = Workflow("after_in_group")
    job = wf.group("job")
    one = job.step("one", fail, continue_on_error=True)
    job.step("two", echo, x="two", after=[one])
    wf.outputs(job=job.output)
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"job": "two"}
