"""Loop steps on each backend: a scope of steps again and again until ``until`` holds.

Every iteration is kept as its own instances (``lp[0]``, ``lp[0].body``,
``lp[1]``, ...); the loop's output is its last iteration's output. Whole runs go
through ``legato.run``; where the order matters (one iteration after the other)
the store is driven with ``claim``/``report``.
"""

from __future__ import annotations

from typing import Any

import pytest

import legato
from legato import Client, Run, RunStatus, StepStatus, Workflow
from store.helpers import claim, ok, report

from .tasks_loops import ALL_TASKS, add, echo, fail_at, square, tag


def run_of(wf: Workflow, db_url: str, params: dict[str, Any] | None = None) -> Run:
    return legato.run(wf, params, url=db_url, timeout=30)


def statuses(run: Run) -> dict[str, str]:
    return {key: step.status.value for key, step in run.steps.items()}


def events(client: Client, run_id: str) -> list[tuple[str, str | None]]:
    return [(e.type, e.step_id) for e in client.history(run_id)]


def counting_loop(name: str = "counting", *, max_iterations: int = 5) -> Workflow:
    """``body`` echoes the iteration; the loop stops once it reached 2."""
    wf = Workflow(name)
    lp = wf.loop("lp", max_iterations=max_iterations)
    lp.step("body", echo, x=legato.iteration)
    lp.repeat_until("${{ steps.body.output >= 2 }}")
    after = wf.step("after", echo, x=lp.output)
    wf.outputs(result=lp.output, after=after.output)
    return wf


# -- iterations, until and output ------------------------------------------------------------


def test_every_iteration_is_kept_and_until_stops_the_loop(client: Client, db_url: str) -> None:
    run = run_of(counting_loop(), db_url)

    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": 2, "after": 2}
    assert list(run.steps) == [
        "lp",
        "lp[0]",
        "lp[0].body",
        "lp[1]",
        "lp[1].body",
        "lp[2]",
        "lp[2].body",
        "after",
    ]  # until held after iteration 2: no lp[3]
    loop = run.steps["lp"]
    assert (loop.kind, loop.status, loop.output) == ("loop", StepStatus.COMPLETED, 2)
    for i in range(3):
        iteration = run.steps[f"lp[{i}]"]
        assert iteration.kind == "iteration"
        assert (iteration.scope, iteration.spec_step, iteration.index) == ("lp", "lp", i)
        assert iteration.status is StepStatus.COMPLETED
        assert iteration.inputs == {"iteration": i}
        assert iteration.output == i
        body = run.steps[f"lp[{i}].body"]
        assert (body.kind, body.scope, body.spec_step) == ("task", f"lp[{i}]", "body")
        assert body.status is StepStatus.COMPLETED
        assert body.inputs == {"x": i}  # legato.iteration, as each iteration saw it
        assert body.output == i
    assert run.steps["after"].inputs == {"x": 2}
    with Client(db_url) as other:  # stored, and read back the same
        assert other.get(run.id).steps == run.steps


def test_iterations_run_one_after_the_other(client: Client) -> None:
    run_id = client.start(counting_loop("one_by_one"))
    for i in range(3):
        [step] = claim(client, tasks=ALL_TASKS)
        assert (step.step_id, step.kwargs) == (f"lp[{i}].body", {"x": i})
        assert f"lp[{i + 1}]" not in client.get(run_id).steps  # made when this one ends
        assert claim(client, tasks=ALL_TASKS) == []
        assert report(client, [ok(step, i)]).accepted == 1
    [after] = claim(client, tasks=ALL_TASKS)
    assert (after.step_id, after.kwargs) == ("after", {"x": 2})
    assert report(client, [ok(after, "done")]).accepted == 1
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": 2, "after": "done"}
    history = events(client, run_id)
    order = [
        ("step.started", "lp"),
        ("step.started", "lp[0]"),
        ("step.completed", "lp[0].body"),
        ("step.completed", "lp[0]"),
        ("step.started", "lp[1]"),
        ("step.completed", "lp[1]"),
        ("step.started", "lp[2]"),
        ("step.completed", "lp[2]"),
        ("step.completed", "lp"),
        ("step.queued", "after"),
    ]
    assert [history.index(e) for e in order] == sorted(history.index(e) for e in order)
    assert ("step.started", "lp[3]") not in history


@pytest.mark.parametrize(("limit", "iterations"), [(0, 1), (3, 4)])
def test_until_reads_params_and_is_checked_after_each_iteration(
    db_url: str, limit: int, iterations: int
) -> None:
    wf = Workflow("until_params")
    wf.param("limit")
    lp = wf.loop("lp", until="${{ steps.body.output >= params.limit }}", max_iterations=10)
    lp.step("body", echo, x=legato.iteration)
    wf.outputs(result=lp.output)
    run = run_of(wf, db_url, {"limit": limit})
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": limit}
    kept = sorted(k for k, s in run.steps.items() if s.kind == "iteration")
    assert kept == [f"lp[{i}]" for i in range(iterations)]  # at least one, even if 0 holds


def test_output_option_and_two_dependent_steps_per_iteration(db_url: str) -> None:
    wf = Workflow("two_steps")
    wf.param("limit")
    lp = wf.loop(
        "lp",
        max_iterations=10,
        output={"i": legato.iteration, "sq": "${{ steps.sq.output }}"},
    )
    a = lp.step("a", add, a=legato.iteration, b=1)
    lp.step("sq", square, x=a.output)
    lp.repeat_until("${{ steps.sq.output >= params.limit }}")
    after = wf.step("after", echo, x=lp.output["sq"])
    wf.outputs(result=lp.output, after=after.output)
    run = run_of(wf, db_url, {"limit": 10})

    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": {"i": 3, "sq": 16}, "after": 16}
    assert run.steps["lp"].output == {"i": 3, "sq": 16}
    for i in range(4):  # (i + 1) ** 2 reaches 10 in iteration 3
        assert run.steps[f"lp[{i}].a"].inputs == {"a": i, "b": 1}
        assert run.steps[f"lp[{i}].a"].output == i + 1
        assert run.steps[f"lp[{i}].sq"].inputs == {"x": i + 1}  # its own iteration's a
        assert run.steps[f"lp[{i}].sq"].output == (i + 1) ** 2
        assert run.steps[f"lp[{i}]"].output == {"i": i, "sq": (i + 1) ** 2}
    assert "lp[4]" not in run.steps


def test_until_reads_variables_set_inside_and_before_the_loop(db_url: str) -> None:
    wf = Workflow("until_vars")
    init = wf.set_vars("init", total=0)
    lp = wf.loop("lp", max_iterations=10, needs=[init])
    acc = lp.step("acc", add, a=legato.var("total"), b=legato.iteration)
    lp.set_vars("keep", total=acc.output)
    lp.repeat_until("${{ vars.total >= 6 }}")
    wf.outputs(result=lp.output, total=legato.var("total"))
    run = run_of(wf, db_url)

    assert run.status is RunStatus.COMPLETED
    # totals 0, 0+1, 1+2, 3+3: the fourth iteration reaches 6
    assert [run.steps[f"lp[{i}].acc"].inputs for i in range(4)] == [
        {"a": 0, "b": 0},
        {"a": 0, "b": 1},
        {"a": 1, "b": 2},
        {"a": 3, "b": 3},
    ]
    assert "lp[4]" not in run.steps
    assert run.variables == {"total": 6}
    assert run.outputs == {"result": {"total": 6}, "total": 6}  # its last step: set_vars


def test_iteration_is_visible_to_conditions_inside_the_loop(db_url: str) -> None:
    wf = Workflow("even_only")
    lp = wf.loop("lp", max_iterations=4, until="${{ iteration >= 3 }}")
    lp.step("even", tag, label="even", x=legato.iteration, when="${{ iteration % 2 == 0 }}")
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert [run.steps[f"lp[{i}].even"].status.value for i in range(4)] == [
        "completed",
        "skipped",
        "completed",
        "skipped",
    ]
    assert run.steps["lp[2].even"].output == {"label": "even", "x": 2}
    assert run.steps["lp"].output is None  # the last iteration's last step was skipped


def test_nested_loops_keep_each_level_of_iterations(db_url: str) -> None:
    wf = Workflow("nested_loops")
    outer = wf.loop("outer", max_iterations=5, until="${{ iteration >= 1 }}")
    inner = outer.loop("inner", max_iterations=5, until="${{ iteration >= 2 }}")
    inner.step("body", echo, x=legato.iteration)
    wf.outputs(result=outer.output)
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": 2}
    bodies = {k: s.output for k, s in run.steps.items() if s.spec_step == "body"}
    assert bodies == {f"outer[{o}].inner[{i}].body": i for o in range(2) for i in range(3)}
    assert run.steps["outer[1].inner"].scope == "outer[1]"
    assert run.steps["outer[1].inner[2]"].scope == "outer[1].inner"


def test_a_loop_whose_condition_is_false_is_skipped_with_no_iterations(db_url: str) -> None:
    wf = Workflow("skipped_loop")
    lp = wf.loop("lp", max_iterations=3, until="${{ true }}", when=wf.param("go"))
    lp.step("body", echo, x=legato.iteration)
    wf.step("after", echo, x="after", needs=[lp], when="${{ always() }}")
    run = run_of(wf, db_url, {"go": False})
    assert run.status is RunStatus.COMPLETED
    assert run.steps["lp"].status is StepStatus.SKIPPED
    assert not [k for k in run.steps if k.startswith("lp[")]
    assert run.steps["after"].status is StepStatus.COMPLETED


# -- failures ---------------------------------------------------------------------------------


def test_max_iterations_exhausted_fails_the_loop_and_the_run(client: Client, db_url: str) -> None:
    wf = Workflow("exhausted")
    lp = wf.loop("lp", max_iterations=3, until="${{ steps.body.output > 100 }}")
    lp.step("body", echo, x=legato.iteration)
    wf.step("after", echo, x=lp.output)
    run = run_of(wf, db_url)

    assert run.status is RunStatus.FAILED
    loop = run.steps["lp"]
    assert loop.status is StepStatus.FAILED
    assert loop.error is not None
    assert (loop.error.type, loop.error.message) == (
        "LoopExhausted",
        "step 'lp': until did not hold within 3 iterations",
    )
    assert run.error is not None
    assert (run.error.type, run.error.step) == ("LoopExhausted", "lp")
    assert "within 3 iterations" in run.error.message
    # every iteration ran, and is kept, before the loop gave up
    for i in range(3):
        assert run.steps[f"lp[{i}]"].status is StepStatus.COMPLETED
        assert run.steps[f"lp[{i}].body"].output == i
    assert "lp[3]" not in run.steps
    assert run.steps["after"].status is StepStatus.CANCELLED
    assert ("step.failed", "lp") in events(client, run.id)


def test_an_exhausted_loop_that_continues_on_error_lets_the_run_complete(db_url: str) -> None:
    wf = Workflow("exhausted_ok")
    lp = wf.loop("lp", max_iterations=2, until="${{ false }}", continue_on_error=True)
    lp.step("body", echo, x=legato.iteration)
    wf.step("after_success", echo, x="no", needs=[lp])
    wf.step("after_failure", echo, x="yes", needs=[lp], when="${{ failure() }}")
    wf.step("free", echo, x="free")
    run = run_of(wf, db_url)

    assert run.status is RunStatus.COMPLETED
    assert run.error is None
    assert run.steps["lp"].status is StepStatus.FAILED
    assert run.steps["lp"].error is not None
    assert run.steps["lp"].error.type == "LoopExhausted"
    assert statuses(run) == {
        "lp": "failed",
        "lp[0]": "completed",
        "lp[0].body": "completed",
        "lp[1]": "completed",
        "lp[1].body": "completed",
        "after_success": "skipped",
        "after_failure": "completed",
        "free": "completed",
    }


def test_a_failing_step_fails_its_iteration_the_loop_and_the_run(
    client: Client, db_url: str
) -> None:
    wf = Workflow("failing_iteration")
    lp = wf.loop("lp", max_iterations=5)
    body = lp.step("body", fail_at, n=legato.iteration, bad=1)
    lp.step("next", echo, x=body.output)
    lp.repeat_until("${{ steps.body.output >= 3 }}")
    wf.step("after", echo, x=lp.output)
    run = run_of(wf, db_url)

    assert run.status is RunStatus.FAILED
    assert statuses(run) == {
        "lp": "failed",
        "lp[0]": "completed",
        "lp[0].body": "completed",
        "lp[0].next": "completed",
        "lp[1]": "failed",
        "lp[1].body": "failed",
        "lp[1].next": "cancelled",
        "after": "cancelled",
    }  # no lp[2]: a failed iteration ends the loop
    failed = run.steps["lp[1].body"]
    assert failed.error is not None
    assert (failed.error.type, failed.error.message) == ("Boom", "iteration 1 is bad")
    for key in ("lp[1]", "lp"):
        error = run.steps[key].error
        assert error is not None, key
        assert (error.type, error.message, error.step) == (
            "Boom",
            "iteration 1 is bad",
            "lp[1].body",
        )
    assert run.error is not None
    assert (run.error.type, run.error.step) == ("Boom", "lp[1].body")
    history = events(client, run.id)
    assert history.index(("step.failed", "lp[1].body")) < history.index(("step.failed", "lp"))


def test_an_until_that_cannot_be_evaluated_fails_the_loop_naming_it(db_url: str) -> None:
    wf = Workflow("bad_until")
    lp = wf.loop("lp", max_iterations=5, until="${{ steps.body.output > 'text' }}")
    lp.step("body", echo, x=legato.iteration)
    run = run_of(wf, db_url)
    assert run.status is RunStatus.FAILED
    error = run.steps["lp"].error
    assert error is not None
    assert error.type == "TemplateError"
    assert error.message.startswith("step 'lp' until: ")
    assert "'>' not supported" in error.message
    assert run.steps["lp[0].body"].status is StepStatus.COMPLETED  # kept
    assert "lp[1]" not in run.steps
