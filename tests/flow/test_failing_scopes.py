"""What a failure does to the rest of its scope, on each backend.

As in GitHub Actions: a failed step stops everything of its scope that has not
started, except the steps that asked to run after a failure (``always()``,
``failure()``, ``cancelled()``). Those run as their dependencies finish, steps
already running finish and keep their results, and the scope (a run, a map's
item, a switch's branch) fails with the first error once they are done.
"""

from __future__ import annotations

from typing import Any

import legato
from legato import Client, Run, RunStatus, StepStatus, Workflow

from .tasks_conditions import fail, fail_at, hold, tag


def statuses(run: Run) -> dict[str, str]:
    return {key: step.status.value for key, step in run.steps.items()}


def run_of(wf: Workflow, db_url: str, params: dict[str, Any] | None = None) -> Run:
    return legato.run(wf, params, url=db_url, timeout=60)


def event_order(client: Client, run_id: str) -> list[tuple[str, str | None]]:
    return [(e.type, e.step_id) for e in client.history(run_id)]


def test_steps_that_react_run_after_a_failure_and_the_run_fails_with_its_error(
    client: Client, db_url: str
) -> None:
    wf = Workflow("reacting")
    bad = wf.step("bad", fail, message="the first error")
    wf.step("after", tag, label="after", x=bad.output)
    wf.step("cleanup", tag, label="cleanup", needs=[bad], when="${{ always() }}")
    wf.step("on_failure", tag, label="on_failure", needs=[bad], when="${{ failure() }}")
    wf.step("on_success", tag, label="on_success", needs=[bad], when="${{ success() }}")
    run = run_of(wf, db_url)

    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error.step == "bad"
    assert "the first error" in run.error.message
    assert statuses(run) == {
        "bad": "failed",
        "after": "cancelled",
        "cleanup": "completed",
        "on_failure": "completed",
        "on_success": "cancelled",
    }
    history = event_order(client, run.id)
    failed_at = history.index(("run.failed", None))
    assert history.index(("step.completed", "cleanup")) < failed_at
    assert history.index(("step.completed", "on_failure")) < failed_at
    assert ("scope.failing", None) in history
    assert ("step.queued", "after") not in history


def test_a_reactor_that_fails_too_leaves_the_first_error_on_the_run(db_url: str) -> None:
    wf = Workflow("reactor_fails")
    bad = wf.step("bad", fail, message="first")
    wf.step("cleanup", fail, message="second", needs=[bad], when="${{ always() }}")
    run = run_of(wf, db_url)
    assert run.status is RunStatus.FAILED
    assert statuses(run) == {"bad": "failed", "cleanup": "failed"}
    assert run.error is not None and "first" in run.error.message


def test_a_step_already_running_finishes_and_keeps_its_result(db_url: str) -> None:
    # "slow" starts with "bad"; "bad" fails at once, and a reactor waits on "slow".
    wf = Workflow("running_beside")
    bad = wf.step("bad", fail)
    slow = wf.step("slow", hold, seconds=0.5, label="slow")
    wf.step("report", tag, label="report", needs=[bad, slow], when="${{ always() }}")
    wf.step("next", tag, label="next", needs=[slow])
    run = run_of(wf, db_url)
    assert run.status is RunStatus.FAILED
    assert statuses(run) == {
        "bad": "failed",
        "slow": "completed",
        "report": "completed",
        "next": "cancelled",  # it had not started when the run began failing
    }
    assert run.steps["slow"].output == "slow"


def test_without_reactors_a_failure_fails_the_run_at_once(db_url: str) -> None:
    wf = Workflow("fail_fast")
    bad = wf.step("bad", fail)
    wf.step("after", tag, label="after", needs=[bad])
    wf.step("other", hold, seconds=5, label="other", needs=[bad])
    run = run_of(wf, db_url)
    assert run.status is RunStatus.FAILED
    assert statuses(run) == {"bad": "failed", "after": "cancelled", "other": "cancelled"}


def test_a_running_map_beside_a_failure_is_cancelled_and_its_items_stop(
    db_url: str,
) -> None:
    # The map runs one slow item at a time; "bad" fails after a short sleep, while
    # the map is still going. Nothing of the map starts after that.
    wf = Workflow("map_beside")
    nap = wf.sleep("nap", 0.3)
    bad = wf.step("bad", fail, needs=[nap])
    slow = wf.map("slow", hold, over=list(range(30)), max_parallel=1, seconds=0.2)
    wf.step("cleanup", tag, label="cleanup", needs=[bad, slow], when="${{ always() }}")
    run = run_of(wf, db_url)

    assert run.status is RunStatus.FAILED
    assert run.steps["cleanup"].status is StepStatus.COMPLETED
    assert run.steps["slow"].status is StepStatus.CANCELLED
    items = [run.steps[f"slow[{i}]"] for i in range(30) if f"slow[{i}]" in run.steps]
    done = [s for s in items if s.status is StepStatus.COMPLETED]
    stopped = [s for s in items if s.status is StepStatus.CANCELLED]
    assert done, "the first items ran before the failure"
    assert len(stopped) >= 20, statuses(run)
    assert {s.status for s in items} <= {StepStatus.COMPLETED, StepStatus.CANCELLED}
    assert run.error is not None and run.error.step == "bad"


def test_a_failing_item_runs_its_reactors_then_fails_the_map(client: Client, db_url: str) -> None:
    wf = Workflow("item_reactors")
    m = wf.map("m", over=[1, 2, 3])
    work = m.step("work", fail_at, x=legato.item, bad=2)
    m.step("tidy", tag, label="tidy", x=legato.item, needs=[work], when="${{ always() }}")
    m.step("use", tag, label="use", x=work.output)
    wf.step("after", tag, label="after", x=m.output)
    wf.step("finally", tag, label="finally", needs=[m], when="${{ always() }}")
    run = run_of(wf, db_url)

    assert run.status is RunStatus.FAILED
    steps = statuses(run)
    assert steps["m[1]"] == "failed"
    assert steps["m[1].work"] == "failed"
    assert steps["m[1].tidy"] == "completed"  # its reactor ran inside the failing item
    assert steps["m[1].use"] == "cancelled"
    assert run.steps["m[1].tidy"].output == {"label": "tidy", "x": 2}
    assert steps["m"] == "failed"
    assert steps["after"] == "cancelled"
    assert steps["finally"] == "completed"
    assert run.error is not None
    assert "at 2" in run.error.message
    history = event_order(client, run.id)
    assert ("scope.failing", "m[1]") in history
    assert history.index(("step.completed", "m[1].tidy")) < history.index(("step.failed", "m[1]"))


def test_a_failing_branch_runs_its_reactors_then_fails_the_switch(db_url: str) -> None:
    wf = Workflow("branch_reactors")
    sw = wf.switch("sw", on=wf.param("mode"))
    branch = sw.case("a")
    x = branch.step("x", fail, message="in the branch")
    branch.step("undo", tag, label="undo", needs=[x], when="${{ failure() }}")
    branch.step("more", tag, label="more", needs=[x])
    sw.default().step("other", tag, label="other")
    wf.step("after", tag, label="after", needs=[sw])
    run = run_of(wf, db_url, {"mode": "a"})

    assert run.status is RunStatus.FAILED
    steps = statuses(run)
    assert steps["x"] == "failed"
    assert steps["undo"] == "completed"
    assert steps["more"] == "cancelled"
    assert steps["other"] == "skipped"
    assert steps["sw"] == "failed"
    assert steps["after"] == "cancelled"
    assert run.error is not None and "in the branch" in run.error.message


def test_continue_on_error_does_not_make_its_scope_fail(db_url: str) -> None:
    wf = Workflow("tolerated")
    bad = wf.step("bad", fail, continue_on_error=True)
    wf.step("cleanup", tag, label="cleanup", needs=[bad], when="${{ always() }}")
    wf.step("after", tag, label="after", needs=[bad])
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert statuses(run) == {"bad": "failed", "cleanup": "completed", "after": "skipped"}
