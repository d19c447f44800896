"""The switch step: one branch of several, chosen at run time, on each backend.

Cases are compared as text (``true``/``false``/``null``, numbers as written);
the switch's output is its branch's last step's output; the steps of the
other branches are recorded as skipped.
"""

from __future__ import annotations

from typing import Any

import pytest

import legato
from legato import Client, DefinitionError, Run, RunStatus, StepStatus, Workflow

from .tasks_conditions import add, echo, fail, tag


def statuses(run: Run) -> dict[str, str]:
    return {key: step.status.value for key, step in run.steps.items()}


def events(client: Client, run_id: str) -> list[tuple[str, str | None]]:
    return [(e.type, e.step_id) for e in client.history(run_id)]


def run_of(wf: Workflow, db_url: str, params: dict[str, Any] | None = None) -> Run:
    return legato.run(wf, params, url=db_url, timeout=30)


def assert_statuses(run: Run, **expected: str) -> None:
    """The named steps have these statuses (others are not looked at)."""
    seen = statuses(run)
    assert {key: seen.get(key) for key in expected} == expected


def labelled_switch(*, default: bool) -> Workflow:
    """A switch on ``params.v`` whose every branch has one step saying which it is."""
    wf = Workflow("labelled")
    sw = wf.switch("sw", wf.param("v"))
    sw.case("red").step("red", tag, label="red")
    sw.case(2).step("two", tag, label="two")
    sw.case(1.5).step("one_and_a_half", tag, label="one_and_a_half")
    sw.case(True).step("yes", tag, label="yes")
    sw.case(False).step("no", tag, label="no")
    sw.case(None).step("nothing", tag, label="nothing")
    if default:
        sw.default().step("fallback", tag, label="fallback")
    after = wf.step("after", tag, label="after", x=sw.output)
    wf.outputs(chosen=sw.output, after=after.output)
    return wf


BRANCH_STEPS = ("red", "two", "one_and_a_half", "yes", "no", "nothing", "fallback")


@pytest.mark.parametrize(
    ("value", "branch"),
    [
        ("red", "red"),
        (2, "two"),
        ("2", "two"),  # compared as text
        (1.5, "one_and_a_half"),
        (True, "yes"),
        ("true", "yes"),
        (False, "no"),
        (None, "nothing"),
        ("blue", "fallback"),
        (3, "fallback"),
        ("RED", "fallback"),  # case matters
    ],
)
def test_the_case_matching_the_value_runs_and_the_others_are_skipped(
    db_url: str, value: Any, branch: str
) -> None:
    run = run_of(labelled_switch(default=True), db_url, {"v": value})
    assert run.status is RunStatus.COMPLETED
    chosen = {"label": branch, "x": None}
    assert run.outputs == {"chosen": chosen, "after": {"label": "after", "x": chosen}}
    assert run.steps["sw"].status is StepStatus.COMPLETED
    assert run.steps["sw"].kind == "switch"
    assert run.steps["sw"].output == chosen
    for key in BRANCH_STEPS:
        step = run.steps[key]
        assert step.scope == "sw", key
        expected = StepStatus.COMPLETED if key == branch else StepStatus.SKIPPED
        assert step.status is expected, key
        if key != branch:
            assert step.output is None and step.inputs is None, key


def test_true_does_not_pick_the_case_for_one(db_url: str) -> None:
    wf = Workflow("bool_vs_int")
    sw = wf.switch("sw", wf.param("v"))
    sw.case(1).step("one", echo, x="one")
    sw.case(True).step("yes", echo, x="yes")
    sw.case(0).step("zero", echo, x="zero")
    sw.case(False).step("no", echo, x="no")
    wf.outputs(chosen=sw.output)
    results = [run_of(wf, db_url, {"v": v}).outputs for v in (1, True, 0, False)]
    assert results == [{"chosen": "one"}, {"chosen": "yes"}, {"chosen": "zero"}, {"chosen": "no"}]


def test_no_matching_case_and_no_default_completes_the_switch_with_null(
    client: Client, db_url: str
) -> None:
    run = run_of(labelled_switch(default=False), db_url, {"v": "blue"})
    assert run.status is RunStatus.COMPLETED
    assert run.steps["sw"].status is StepStatus.COMPLETED
    assert run.steps["sw"].output is None
    assert "fallback" not in run.steps
    for key in BRANCH_STEPS[:-1]:
        assert run.steps[key].status is StepStatus.SKIPPED, key
    assert run.steps["after"].status is StepStatus.COMPLETED  # the switch completed
    assert run.outputs == {"chosen": None, "after": {"label": "after", "x": None}}
    history = events(client, run.id)
    assert not [e for e in history if e[0] == "step.queued" and e[1] in BRANCH_STEPS]


def test_the_switch_records_its_value_and_chosen_branch(db_url: str) -> None:
    with_default = labelled_switch(default=True)
    assert run_of(with_default, db_url, {"v": 2}).steps["sw"].inputs == {
        "value": 2,
        "branch": "sw:case:2",
    }
    assert run_of(with_default, db_url, {"v": "blue"}).steps["sw"].inputs == {
        "value": "blue",
        "branch": "sw:default",
    }
    assert run_of(labelled_switch(default=False), db_url, {"v": "blue"}).steps["sw"].inputs == {
        "value": "blue",
        "branch": None,
    }


def branching_workflow() -> Workflow:
    """A step before the switch, a chain inside one branch, a step after the switch."""
    wf = Workflow("branching")
    pre = wf.step("pre", echo, x=10)
    sw = wf.switch("sw", wf.param("v"))
    chain = sw.case("chain")
    first = chain.step("first", add, a=pre.output, b=1)  # reads what ran before the switch
    second = chain.step("second", add, a=first.output, b=100)
    chain.step("third", add, a=second.output, b=1000)
    explicit = sw.case("explicit")
    start = explicit.step("start", echo, x="start")
    explicit.step("finish", echo, x="finish", needs=[start])
    after = wf.step("after", echo, x=sw.output)
    wf.outputs(switch=sw.output, after=after.output)
    return wf


def test_a_branch_chains_its_steps_and_reads_outputs_from_before_the_switch(
    client: Client, db_url: str
) -> None:
    run = run_of(branching_workflow(), db_url, {"v": "chain"})
    assert run.status is RunStatus.COMPLETED
    assert [run.steps[k].output for k in ("first", "second", "third")] == [11, 111, 1111]
    assert run.steps["first"].inputs == {"a": 10, "b": 1}
    assert run.outputs == {"switch": 1111, "after": 1111}
    assert (run.steps["start"].status, run.steps["finish"].status) == (
        StepStatus.SKIPPED,
        StepStatus.SKIPPED,
    )
    history = events(client, run.id)
    order = [
        ("step.completed", "pre"),
        ("step.started", "sw"),
        ("step.completed", "first"),
        ("step.completed", "second"),
        ("step.completed", "third"),
        ("step.completed", "sw"),
        ("step.queued", "after"),
    ]
    assert [history.index(e) for e in order] == sorted(history.index(e) for e in order)


def test_a_step_after_the_switch_runs_after_whichever_branch_ran(
    client: Client, db_url: str
) -> None:
    run = run_of(branching_workflow(), db_url, {"v": "explicit"})
    assert run.status is RunStatus.COMPLETED
    assert run.steps["start"].status is StepStatus.COMPLETED
    assert run.steps["finish"].status is StepStatus.COMPLETED
    for key in ("first", "second", "third"):
        assert run.steps[key].status is StepStatus.SKIPPED, key
    assert run.outputs == {"switch": "finish", "after": "finish"}
    history = events(client, run.id)
    assert history.index(("step.completed", "start")) < history.index(("step.queued", "finish"))
    assert history.index(("step.completed", "finish")) < history.index(("step.queued", "after"))


def test_a_branch_with_several_last_steps_outputs_them_by_id(db_url: str) -> None:
    wf = Workflow("two_sinks")
    sw = wf.switch("sw", "go")
    branch = sw.case("go")
    branch.step("left", echo, x="L")
    branch.step("right", echo, x="R")
    wf.outputs(switch=sw.output)
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"switch": {"left": "L", "right": "R"}}


def test_the_switch_value_can_come_from_a_step_output(db_url: str) -> None:
    wf = Workflow("switch_on_output")
    probe = wf.step("probe", echo, x={"kind": "csv"})
    sw = wf.switch("sw", probe.output["kind"])
    sw.case("csv").step("csv", echo, x="parsed csv")
    sw.case("json").step("json", echo, x="parsed json")
    wf.outputs(parsed=sw.output)
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"parsed": "parsed csv"}
    assert statuses(run)["json"] == "skipped"


def test_a_skipped_switch_runs_no_branch(db_url: str) -> None:
    wf = Workflow("skipped_switch")
    sw = wf.switch("sw", "a", when=wf.param("go"))
    sw.case("a").step("a", echo, x="a")
    sw.default().step("other", echo, x="other")
    wf.step("after", echo, x=sw.output)
    wf.step("after_always", echo, x=sw.output, when="${{ always() }}")
    run = run_of(wf, db_url, {"go": False})
    assert run.status is RunStatus.COMPLETED
    assert run.steps["sw"].status is StepStatus.SKIPPED
    for key in ("a", "other"):  # never reached: not recorded, or recorded as skipped
        assert key not in run.steps or run.steps[key].status is StepStatus.SKIPPED, key
    assert run.steps["after"].status is StepStatus.SKIPPED
    assert run.steps["after_always"].status is StepStatus.COMPLETED
    assert run.steps["after_always"].output is None


def test_a_when_inside_a_branch_skips_that_step(db_url: str) -> None:
    wf = Workflow("when_in_branch")
    sw = wf.switch("sw", "a")
    branch = sw.case("a")
    kept = branch.step("kept", echo, x="kept")
    branch.step("dropped", echo, x="dropped", needs=[kept], when="${{ false }}")
    wf.outputs(switch=sw.output)
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert statuses(run)["kept"] == "completed"
    assert statuses(run)["dropped"] == "skipped"
    assert run.steps["sw"].status is StepStatus.COMPLETED
    assert run.outputs == {"switch": None}  # its last step was skipped


def test_branch_steps_are_listed_right_after_their_switch(db_url: str) -> None:
    run = run_of(branching_workflow(), db_url, {"v": "chain"})
    keys = list(run.steps)
    assert keys[0] == "pre" and keys[-1] == "after"
    at = keys.index("sw")
    assert set(keys[at + 1 : -1]) == {"first", "second", "third", "start", "finish"}, keys


# -- failures in a branch -----------------------------------------------------------------


def failing_branch(**options: Any) -> Workflow:
    wf = Workflow("failing_branch")
    sw = wf.switch("sw", wf.param("v"), **options.pop("switch", {}))
    branch = sw.case("bad")
    broken = branch.step("broken", fail, message="branch broke", **options)
    branch.step("rest", echo, x="rest", needs=[broken])
    sw.case("good").step("good", echo, x="good")
    wf.step("after", echo, x="after", needs=[sw])
    wf.step("after_always", echo, x=sw.output, when="${{ always() }}")
    wf.step("after_failure", echo, x="after_failure", needs=[sw], when="${{ failure() }}")
    return wf


def test_a_branch_step_that_continues_on_error_lets_the_switch_complete(
    client: Client, db_url: str
) -> None:
    run = run_of(failing_branch(continue_on_error=True), db_url, {"v": "bad"})
    assert run.status is RunStatus.COMPLETED
    assert run.error is None
    broken = run.steps["broken"]
    assert broken.status is StepStatus.FAILED
    assert broken.error is not None
    assert (broken.error.type, broken.error.message) == ("Boom", "branch broke")
    assert_statuses(
        run,
        rest="skipped",  # success() by default: its dependency failed
        good="skipped",
        sw="completed",
        after="completed",
        after_always="completed",
        after_failure="skipped",  # the switch itself completed
    )
    assert run.steps["sw"].output is None  # the branch's last step did not run
    assert ("step.failed", "broken") in events(client, run.id)


def test_a_switch_that_continues_on_error_fails_and_always_steps_after_it_run(
    db_url: str,
) -> None:
    run = run_of(failing_branch(switch={"continue_on_error": True}), db_url, {"v": "bad"})
    assert run.status is RunStatus.COMPLETED
    assert_statuses(
        run,
        broken="failed",
        sw="failed",
        after="skipped",
        after_always="completed",
        after_failure="completed",
    )
    assert run.steps["rest"].status is not StepStatus.COMPLETED
    sw = run.steps["sw"]
    assert sw.error is not None
    assert (sw.error.type, sw.error.message, sw.error.step) == ("Boom", "branch broke", "broken")


def test_a_failed_branch_step_fails_the_switch_and_the_run(client: Client, db_url: str) -> None:
    run = run_of(failing_branch(), db_url, {"v": "bad"})
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.type, run.error.message) == ("Boom", "branch broke")
    assert run.error.step == "broken"
    assert run.steps["broken"].status is StepStatus.FAILED
    assert run.steps["sw"].status is StepStatus.FAILED
    assert run.steps["sw"].error is not None
    assert run.steps["sw"].error.step == "broken"
    for key in ("rest", "after"):
        assert run.steps[key].status in (StepStatus.SKIPPED, StepStatus.CANCELLED), key
    assert run.steps["good"].status is StepStatus.SKIPPED
    history = events(client, run.id)
    assert history.index(("step.failed", "broken")) < history.index(("step.failed", "sw"))
    assert history[-1] == ("run.failed", None)


def test_the_good_branch_of_a_switch_with_a_failing_branch_completes(db_url: str) -> None:
    run = run_of(failing_branch(), db_url, {"v": "good"})
    assert run.status is RunStatus.COMPLETED
    assert_statuses(
        run,
        broken="skipped",
        rest="skipped",
        good="completed",
        sw="completed",
        after="completed",
        after_always="completed",
        after_failure="skipped",
    )
    assert run.steps["after_always"].output == "good"


# -- bad definitions ----------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second"), [("a", "a"), (1, "1"), (True, "true"), (None, None)])
def test_a_case_given_twice_is_refused(first: Any, second: Any) -> None:
    wf = Workflow("twice")
    sw = wf.switch("pick", wf.param("v"))
    sw.case(first).step("one", echo)
    with pytest.raises(DefinitionError) as info:
        sw.case(second)
    message = str(info.value)
    assert message.startswith("workflow 'twice' step 'pick': case ")
    assert message.endswith(" is given twice")


def test_a_default_given_twice_is_refused() -> None:
    wf = Workflow("twice_default")
    sw = wf.switch("pick", wf.param("v"))
    sw.default().step("one", echo)
    with pytest.raises(
        DefinitionError,
        match=r"^workflow 'twice_default' step 'pick': the default branch is given twice$",
    ):
        sw.default()


def test_a_step_in_a_branch_cannot_need_a_step_of_another_branch() -> None:
    wf = Workflow("cross_needs")
    sw = wf.switch("pick", wf.param("v"))
    left = sw.case("left").step("left_step", echo)
    sw.case("right").step("right_step", echo, needs=[left])
    with pytest.raises(DefinitionError) as info:
        _ = wf.spec
    message = str(info.value)
    assert "step 'right_step' needs step 'left_step', which is in another scope" in message


def test_a_step_in_a_branch_cannot_read_a_step_of_another_branch() -> None:
    wf = Workflow("cross_read")
    sw = wf.switch("pick", wf.param("v"))
    left = sw.case("left").step("left_step", echo)
    sw.case("right").step("right_step", echo, x=left.output)
    with pytest.raises(DefinitionError) as info:
        _ = wf.spec
    assert "step 'right_step'" in str(info.value)
    assert "refers to step 'left_step', which is inside another step" in str(info.value)


def test_a_step_after_the_switch_cannot_read_a_branch_step() -> None:
    wf = Workflow("outer_read")
    sw = wf.switch("pick", wf.param("v"))
    inner = sw.case("left").step("inner", echo)
    wf.step("after", echo, x=inner.output)
    with pytest.raises(DefinitionError) as info:
        _ = wf.spec
    assert "step 'after'" in str(info.value)
    assert "refers to step 'inner', which is inside another step" in str(info.value)


@pytest.mark.parametrize("where", ["top_then_branch", "two_branches", "the_switch_itself"])
def test_a_step_id_is_unique_across_scopes(where: str) -> None:
    wf = Workflow("dup")
    if where == "top_then_branch":
        wf.step("same", echo)
    sw = wf.switch("pick", wf.param("v"))
    if where == "two_branches":
        sw.case("left").step("same", echo)
    with pytest.raises(DefinitionError) as info:
        sw.case("right").step("pick" if where == "the_switch_itself" else "same", echo)
    dup = "pick" if where == "the_switch_itself" else "same"
    assert str(info.value) == f"workflow 'dup': duplicate step id {dup!r}"


def test_a_switch_needs_a_case_and_no_empty_one() -> None:
    wf = Workflow("empty")
    sw = wf.switch("pick", wf.param("v"))
    wf.step("other", echo)
    with pytest.raises(DefinitionError, match="step 'pick': a switch needs at least one case"):
        _ = wf.spec
    sw.case("a")
    with pytest.raises(DefinitionError, match="step 'pick': case 'a' has no steps"):
        _ = wf.spec


def test_status_functions_belong_in_when_not_in_the_switch_value() -> None:
    wf = Workflow("status_value")
    sw = wf.switch("pick", "${{ failure() }}")
    sw.case("true").step("one", echo)
    with pytest.raises(DefinitionError) as info:
        _ = wf.spec
    assert "step 'pick' value: failure() can only be used in a step's when" in str(info.value)
