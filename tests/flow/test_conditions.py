"""Conditions on steps: ``when``, the status functions and ``continue_on_error``, on each backend.

As in GitHub Actions, a ``when`` without a status function also needs every
dependency to have completed (``success()``); ``always()``, ``failure()`` and
``cancelled()`` say otherwise.
"""

from __future__ import annotations

from typing import Any

import legato
from legato import Client, Run, RunStatus, StepStatus, Workflow

from .tasks_conditions import echo, fail, maybe_fail, tag


def statuses(run: Run) -> dict[str, str]:
    return {key: step.status.value for key, step in run.steps.items()}


def events(client: Client, run_id: str) -> list[tuple[str, str | None]]:
    return [(e.type, e.step_id) for e in client.history(run_id)]


def run_of(wf: Workflow, db_url: str, params: dict[str, Any] | None = None) -> Run:
    return legato.run(wf, params, url=db_url, timeout=30)


# -- when -----------------------------------------------------------------------------------


def gated_workflow() -> Workflow:
    wf = Workflow("gated")
    go = wf.param("go")
    gated = wf.step("gated", tag, label="gated", when=go)
    reader = wf.step("reader", tag, label="reader", x=gated.output)  # depends only on it
    wf.step("cleanup", tag, label="cleanup", needs=[gated], when="${{ always() }}")
    wf.step("free", tag, label="free")  # depends on nothing
    wf.outputs(gated=gated.output, reader=reader.output)
    return wf


def test_when_false_skips_the_step_and_the_steps_that_depend_on_it(
    client: Client, db_url: str
) -> None:
    run = run_of(gated_workflow(), db_url, {"go": False})
    assert run.status is RunStatus.COMPLETED
    assert run.error is None
    assert statuses(run) == {
        "gated": "skipped",
        "reader": "skipped",  # success() is implied, and its one dependency was skipped
        "cleanup": "completed",  # always() runs whatever its dependencies did
        "free": "completed",
    }
    assert run.steps["gated"].output is None and run.steps["gated"].inputs is None
    assert run.steps["cleanup"].output == {"label": "cleanup", "x": None}
    assert run.outputs == {"gated": None, "reader": None}
    history = events(client, run.id)
    assert ("step.skipped", "gated") in history
    assert ("step.skipped", "reader") in history
    assert ("step.queued", "gated") not in history
    assert ("step.queued", "reader") not in history


def test_when_true_runs_the_step(client: Client, db_url: str) -> None:
    run = run_of(gated_workflow(), db_url, {"go": True})
    assert run.status is RunStatus.COMPLETED
    assert set(statuses(run).values()) == {"completed"}
    assert run.outputs == {
        "gated": {"label": "gated", "x": None},
        "reader": {"label": "reader", "x": {"label": "gated", "x": None}},
    }
    assert "step.skipped" not in [kind for kind, _ in events(client, run.id)]


def test_when_reads_text_and_values_as_people_write_them(db_url: str) -> None:
    wf = Workflow("truthy")
    wf.step("s", echo, x="ran", when=wf.param("go"))
    expected = {
        "false": "skipped",
        "False": "skipped",
        "no": "skipped",
        "0": "skipped",
        "": "skipped",
        0: "skipped",
        None: "skipped",
        "yes": "completed",
        "true": "completed",
        1: "completed",
        "anything": "completed",
    }
    seen = {value: run_of(wf, db_url, {"go": value}).steps["s"].status.value for value in expected}
    assert seen == expected


def test_when_reads_a_step_output_and_waits_for_that_step(client: Client, db_url: str) -> None:
    wf = Workflow("when_output")
    probe = wf.step("probe", echo, x={"ok": False, "n": 3})
    wf.step("by_ref", tag, label="by_ref", when=probe.output["ok"])
    wf.step("by_text", tag, label="by_text", when="${{ steps.probe.output.n > 2 }}")
    wf.step("negated", tag, label="negated", when="${{ not steps.probe.output.ok }}")
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert statuses(run) == {
        "probe": "completed",
        "by_ref": "skipped",
        "by_text": "completed",
        "negated": "completed",
    }
    # No needs were given: reading probe's output in the condition is a dependency.
    history = events(client, run.id)
    done = history.index(("step.completed", "probe"))
    assert history.index(("step.skipped", "by_ref")) > done
    assert history.index(("step.queued", "by_text")) > done
    assert history.index(("step.queued", "negated")) > done


def test_when_reading_params_and_outputs_together(db_url: str) -> None:
    wf = Workflow("when_both")
    wf.param("limit")
    size = wf.step("size", echo, x=5)
    wf.step("big", tag, label="big", when="${{ steps.size.output > params.limit }}")
    for limit, status in ((3, "completed"), (5, "skipped"), (9, "skipped")):
        run = run_of(wf, db_url, {"limit": limit})
        assert run.status is RunStatus.COMPLETED
        assert run.steps[size.id].status is StepStatus.COMPLETED
        assert run.steps["big"].status.value == status, limit


def test_a_when_that_cannot_be_evaluated_fails_the_step_and_names_it(db_url: str) -> None:
    wf = Workflow("when_broken")
    probe = wf.step("probe", echo, x={"ok": True})
    broken = wf.step("broken", tag, label="broken", when="${{ steps.probe.output.missing }}")
    wf.step("after", tag, label="after", needs=[broken])
    run = run_of(wf, db_url)
    assert run.status is RunStatus.FAILED
    assert run.steps[probe.id].status is StepStatus.COMPLETED
    step = run.steps["broken"]
    assert step.status is StepStatus.FAILED
    assert step.error is not None
    assert step.error.type == "TemplateError"
    assert step.error.message.startswith("step 'broken' when: ")
    assert "missing" in step.error.message
    assert run.error is not None and run.error.step == "broken"
    assert run.steps["after"].status is not StepStatus.COMPLETED


def test_a_skipped_dependency_skips_success_steps_but_not_always_steps(db_url: str) -> None:
    wf = Workflow("half_skipped")
    ran = wf.step("ran", echo, x=1)
    off = wf.step("off", echo, x=2, when="${{ false }}")
    both = [ran, off]
    wf.step("plain", echo, x=3, needs=both)
    wf.step("on_success", echo, x=4, needs=both, when="${{ success() }}")
    wf.step("on_always", echo, x=5, needs=both, when="${{ always() }}")
    wf.step("on_failure", echo, x=6, needs=both, when="${{ failure() }}")
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert statuses(run) == {
        "ran": "completed",
        "off": "skipped",
        "plain": "skipped",
        "on_success": "skipped",
        "on_always": "completed",
        "on_failure": "skipped",  # skipped is not failed
    }
    assert run.steps["on_always"].output == 5


# -- status functions ---------------------------------------------------------------------


def status_workflow() -> Workflow:
    wf = Workflow("status_functions")
    first = wf.step(
        "first", maybe_fail, fail=wf.param("fail"), message="first broke", continue_on_error=True
    )
    wf.step("plain", tag, label="plain", needs=[first])
    wf.step("on_success", tag, label="on_success", needs=[first], when="${{ success() }}")
    wf.step("on_failure", tag, label="on_failure", needs=[first], when="${{ failure() }}")
    wf.step("on_always", tag, label="on_always", needs=[first], when="${{ always() }}")
    wf.step("on_cancelled", tag, label="on_cancelled", needs=[first], when="${{ cancelled() }}")
    return wf


def test_after_a_completed_dependency_success_and_always_steps_run(db_url: str) -> None:
    run = run_of(status_workflow(), db_url, {"fail": False})
    assert run.status is RunStatus.COMPLETED
    assert statuses(run) == {
        "first": "completed",
        "plain": "completed",
        "on_success": "completed",
        "on_failure": "skipped",
        "on_always": "completed",
        "on_cancelled": "skipped",
    }


def test_after_a_failed_dependency_only_failure_and_always_steps_run(db_url: str) -> None:
    run = run_of(status_workflow(), db_url, {"fail": True})
    assert run.status is RunStatus.COMPLETED  # first continues on error
    assert statuses(run) == {
        "first": "failed",
        "plain": "skipped",  # success() is the default
        "on_success": "skipped",
        "on_failure": "completed",
        "on_always": "completed",
        "on_cancelled": "skipped",  # failed is not cancelled
    }
    assert run.steps["on_failure"].output == {"label": "on_failure", "x": None}


def test_status_functions_combine_with_other_conditions(db_url: str) -> None:
    wf = Workflow("status_and")
    wf.param("notify")
    first = wf.step("first", fail, continue_on_error=True)
    wf.step("alert", echo, x="alert", needs=[first], when="${{ failure() and params.notify }}")
    wf.step("quiet", echo, x="quiet", needs=[first], when="${{ not failure() }}")
    wf.step("either", echo, x="either", needs=[first], when="${{ success() or failure() }}")
    loud = run_of(wf, db_url, {"notify": True})
    assert statuses(loud) == {
        "first": "failed",
        "alert": "completed",
        "quiet": "skipped",
        "either": "completed",
    }
    assert run_of(wf, db_url, {"notify": False}).steps["alert"].status is StepStatus.SKIPPED


# -- continue_on_error --------------------------------------------------------------------


def test_continue_on_error_records_the_failure_and_the_run_completes(
    client: Client, db_url: str
) -> None:
    wf = Workflow("keep_going")
    broken = wf.step("broken", fail, message="it broke", continue_on_error=True)
    report = wf.step(
        "report", tag, label="report", x=broken.output, needs=[broken], when="${{ failure() }}"
    )
    tidy = wf.step("tidy", tag, label="tidy", needs=[broken], when="${{ always() }}")
    free = wf.step("free", echo, x="free")
    wf.outputs(report=report.output, tidy=tidy.output, free=free.output)
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert run.error is None
    assert run.outputs == {
        "report": {"label": "report", "x": None},  # a failed step outputs nothing
        "tidy": {"label": "tidy", "x": None},
        "free": "free",
    }
    step = run.steps["broken"]
    assert step.status is StepStatus.FAILED
    assert step.output is None
    assert step.error is not None
    assert (step.error.type, step.error.message) == ("Boom", "it broke")
    assert step.error.traceback and "it broke" in step.error.traceback
    history = client.history(run.id)
    [failed] = [e for e in history if e.type == "step.failed"]
    assert failed.step_id == "broken"
    assert [e.type for e in history][-1] == "run.completed"
    assert "run.failed" not in [e.type for e in history]


def test_a_failure_without_continue_on_error_fails_the_run(client: Client, db_url: str) -> None:
    wf = Workflow("fail_fast")
    before = wf.step("before", echo, x=1)
    broken = wf.step("broken", fail, message="fatal", needs=[before])
    wf.step("next", echo, x=2, needs=[broken])
    wf.step("next_success", echo, x=3, needs=[broken], when="${{ success() }}")
    run = run_of(wf, db_url)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.type, run.error.message, run.error.step) == ("Boom", "fatal", "broken")
    assert run.outputs is None
    assert run.steps["before"].status is StepStatus.COMPLETED
    assert run.steps["broken"].status is StepStatus.FAILED
    for key in ("next", "next_success"):
        assert run.steps[key].status in (StepStatus.SKIPPED, StepStatus.CANCELLED), key
        assert run.steps[key].output is None and run.steps[key].inputs is None
    history = events(client, run.id)
    assert ("step.failed", "broken") in history
    assert ("step.queued", "next") not in history
    assert history[-1] == ("run.failed", None)


def test_always_and_failure_steps_run_after_a_failure_that_fails_the_run(
    client: Client, db_url: str
) -> None:
    """As in GitHub Actions: a failed step fails the run, yet the steps meant to run
    after a failure (cleanup, notify) still do; the run ends failed, with that error."""
    wf = Workflow("cleanup_after_fatal")
    broken = wf.step("broken", fail, message="fatal")
    wf.step("next", echo, x="next", needs=[broken])
    wf.step("cleanup", echo, x="cleaned", needs=[broken], when="${{ always() }}")
    wf.step("notify", echo, x="notified", needs=[broken], when="${{ failure() }}")
    run = run_of(wf, db_url)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.type, run.error.message, run.error.step) == ("Boom", "fatal", "broken")
    assert run.steps["next"].status in (StepStatus.SKIPPED, StepStatus.CANCELLED)
    assert (run.steps["cleanup"].status, run.steps["cleanup"].output) == (
        StepStatus.COMPLETED,
        "cleaned",
    )
    assert (run.steps["notify"].status, run.steps["notify"].output) == (
        StepStatus.COMPLETED,
        "notified",
    )
    history = events(client, run.id)
    assert history.index(("step.completed", "cleanup")) < history.index(("run.failed", None))
