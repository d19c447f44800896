"""Terminate and set_vars steps, and run variables changed from outside, on each backend.

``terminate`` ends the run at once with its status, reason and outputs: steps
already running finish and are recorded, nothing new starts. ``set_vars`` and
``Client.update_variables`` merge into the run's variables, which every later
expression reads as ``vars``; each change is an event of the run's history.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import legato
from legato import (
    Client,
    ConflictError,
    ParamError,
    Run,
    RunNotFoundError,
    RunStatus,
    StepStatus,
    Workflow,
)
from store.helpers import claim, ok, report

from .tasks_loops import ALL_TASKS, echo, tag

FINAL = {"completed", "failed", "skipped", "cancelled"}


def run_of(wf: Workflow, db_url: str, params: dict[str, Any] | None = None) -> Run:
    return legato.run(wf, params, url=db_url, timeout=30)


def statuses(run: Run) -> dict[str, str]:
    return {key: step.status.value for key, step in run.steps.items()}


def events(client: Client, run_id: str) -> list[tuple[str, str | None]]:
    return [(e.type, e.step_id) for e in client.history(run_id)]


def unfinished(run: Run) -> dict[str, str]:
    """Steps of a finished run still waiting, queued, running or suspended."""
    return {k: s for k, s in statuses(run).items() if s not in FINAL}


# -- terminate --------------------------------------------------------------------------------


def test_terminate_completed_ends_the_run_with_its_outputs(client: Client, db_url: str) -> None:
    wf = Workflow("terminated")
    wf.param("why")
    first = wf.step("first", echo, x={"n": 7})
    stop = wf.terminate(
        "stop",
        needs=[first],
        reason="${{ params.why }}",
        outputs={"n": first.output["n"], "note": "stopped early"},
    )
    wf.step("after_stop", echo, x="never", needs=[stop])
    wf.outputs(declared="${{ steps.first.output }}")  # terminate's outputs replace these
    run = run_of(wf, db_url, {"why": "enough data"})

    assert run.status is RunStatus.COMPLETED
    assert run.error is None
    assert run.outputs == {"n": 7, "note": "stopped early"}
    step = run.steps["stop"]
    assert (step.kind, step.status) == ("terminate", StepStatus.COMPLETED)
    assert step.output == {"status": "completed", "reason": "enough data"}
    assert "after_stop" not in run.steps or run.steps["after_stop"].status in (
        StepStatus.CANCELLED,
        StepStatus.SKIPPED,
    ), statuses(run)
    [done] = [e for e in client.history(run.id) if e.type == "run.completed"]
    assert done.details == {"terminated_by": "stop", "reason": "enough data"}
    assert ("step.queued", "after_stop") not in events(client, run.id)


def test_terminate_completed_cancels_what_has_not_started_and_lets_running_steps_finish(
    client: Client,
) -> None:
    wf = Workflow("terminated_midway")
    first = wf.step("first", echo, x="first")
    slow = wf.step("slow", echo, x="slow")
    wf.terminate("stop", needs=[first], outputs={"got": first.output})
    wf.step("after_first", echo, x="after first", needs=[first])
    wf.step("after_slow", echo, x=slow.output)
    run_id = client.start(wf)
    held = {s.step_id: s for s in claim(client, tasks=ALL_TASKS)}
    assert sorted(held) == ["first", "slow"]

    outcome = report(client, [ok(held["first"], "first")])
    assert outcome.finished_runs == {run_id: RunStatus.COMPLETED}
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"got": "first"}
    assert run.steps["slow"].status is StepStatus.RUNNING  # already running: it finishes
    assert claim(client, tasks=ALL_TASKS) == [], "a step started after the run terminated"
    assert (run.steps["after_first"].status, run.steps["after_slow"].status) == (
        StepStatus.CANCELLED,
        StepStatus.CANCELLED,
    ), statuses(run)

    assert report(client, [ok(held["slow"], "slow")]).accepted == 1  # recorded
    run = client.get(run_id)
    assert run.steps["slow"].status is StepStatus.COMPLETED
    assert run.steps["slow"].output == "slow"
    assert run.status is RunStatus.COMPLETED and run.outputs == {"got": "first"}
    assert claim(client, tasks=ALL_TASKS) == []
    assert unfinished(run) == {}
    history = events(client, run_id)
    assert ("step.queued", "after_slow") not in history
    assert ("step.started", "after_first") not in history


def test_terminate_failed_fails_the_run_with_its_reason(client: Client, db_url: str) -> None:
    wf = Workflow("rejected")
    wf.param("v")
    first = wf.step("first", echo, x="first")
    wf.terminate(
        "stop",
        status="failed",
        reason="${{ 'bad input: ' ~ params.v }}",
        needs=[first],
        outputs={"ignored": True},
    )
    wf.step("after_first", echo, x="after", needs=[first])
    run = run_of(wf, db_url, {"v": 3})

    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.type, run.error.message, run.error.step) == (
        "Terminated",
        "bad input: 3",
        "stop",
    )
    assert run.outputs is None
    assert run.steps["stop"].status is StepStatus.COMPLETED
    assert run.steps["stop"].output == {"status": "failed", "reason": "bad input: 3"}
    assert run.steps["after_first"].status is StepStatus.CANCELLED
    [failed] = [e for e in client.history(run.id) if e.type == "run.failed"]
    assert failed.details is not None
    assert failed.details["terminated_by"] == "stop"
    assert failed.details["error"]["message"] == "bad input: 3"


def test_terminate_failed_lets_a_running_step_finish(client: Client) -> None:
    wf = Workflow("failed_midway")
    first = wf.step("first", echo, x="first")
    slow = wf.step("slow", echo, x="slow")
    wf.terminate("stop", status="failed", reason="no", needs=[first])
    wf.step("after_slow", echo, x=slow.output)
    run_id = client.start(wf)
    held = {s.step_id: s for s in claim(client, tasks=ALL_TASKS)}
    assert report(client, [ok(held["first"], "first")]).finished_runs == {run_id: RunStatus.FAILED}
    assert client.get(run_id).steps["after_slow"].status is StepStatus.CANCELLED
    assert report(client, [ok(held["slow"], "slow")]).accepted == 1
    run = client.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.steps["slow"].status is StepStatus.COMPLETED
    assert run.steps["after_slow"].status is StepStatus.CANCELLED
    assert claim(client, tasks=ALL_TASKS) == []


@pytest.mark.parametrize(("v", "ends"), [(1, False), (3, True)])
def test_terminate_under_a_condition_acts_only_when_it_holds(
    db_url: str, v: int, ends: bool
) -> None:
    wf = Workflow("maybe_terminated")
    wf.param("v")
    first = wf.step("first", echo, x="first")
    wf.terminate(
        "stop", status="failed", reason="too big", needs=[first], when="${{ params.v > 2 }}"
    )
    after = wf.step("after", echo, x="after", needs=[first])
    wf.outputs(after=after.output)
    run = run_of(wf, db_url, {"v": v})
    if ends:
        assert run.status is RunStatus.FAILED
        assert run.error is not None and run.error.message == "too big"
        assert statuses(run) == {"first": "completed", "stop": "completed", "after": "cancelled"}
    else:
        assert run.status is RunStatus.COMPLETED
        assert run.error is None
        assert run.outputs == {"after": "after"}
        assert statuses(run) == {"first": "completed", "stop": "skipped", "after": "completed"}


def test_terminate_inside_a_loop_ends_the_whole_run(db_url: str) -> None:
    wf = Workflow("terminated_loop")
    lp = wf.loop("lp", max_iterations=10, until="${{ false }}")
    body = lp.step("body", echo, x=legato.iteration)
    lp.terminate(
        "stop", needs=[body], when="${{ steps.body.output == 2 }}", outputs={"at": body.output}
    )
    wf.step("after", echo, x=lp.output)
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"at": 2}
    assert [run.steps[f"lp[{i}].stop"].status.value for i in range(3)] == [
        "skipped",
        "skipped",
        "completed",
    ]
    assert "lp[3]" not in run.steps  # nothing new starts
    assert unfinished(run) == {}, "steps left hanging in a terminated run"


# -- set_vars ---------------------------------------------------------------------------------


def test_a_later_step_reads_variables_set_by_set_vars(client: Client, db_url: str) -> None:
    wf = Workflow("with_vars")
    wf.param("size")
    probe = wf.step("probe", echo, x={"kind": "csv"})
    sv = wf.set_vars("sv", color="red", kind=probe.output["kind"], size="${{ params.size * 2 }}")
    reader = wf.step(
        "reader", tag, label=legato.var("color"), x="${{ vars.kind ~ '/' ~ vars.size }}", needs=[sv]
    )
    wf.outputs(reader=reader.output, color=legato.var("color"))
    run = run_of(wf, db_url, {"size": 5})

    assert run.status is RunStatus.COMPLETED
    assert run.variables == {"color": "red", "kind": "csv", "size": 10}
    step = run.steps["sv"]
    assert (step.kind, step.status) == ("set_vars", StepStatus.COMPLETED)
    assert step.output == {"color": "red", "kind": "csv", "size": 10}
    assert run.steps["reader"].inputs == {"label": "red", "x": "csv/10"}
    assert run.outputs == {"reader": {"label": "red", "x": "csv/10"}, "color": "red"}
    changes = [e for e in client.history(run.id) if e.type == "run.variables"]
    assert [(e.actor, e.details) for e in changes] == [
        ("sv", {"set": step.output, "vars": step.output})
    ]


def test_a_second_set_vars_overwrites_its_keys_and_keeps_the_others(
    client: Client, db_url: str
) -> None:
    wf = Workflow("overwritten")
    one = wf.set_vars("one", color="red", n=1)
    two = wf.set_vars("two", color="blue", needs=[one])
    reader = wf.step("reader", tag, label=legato.var("color"), x=legato.var("n"), needs=[two])
    wf.outputs(reader=reader.output)
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    assert run.variables == {"color": "blue", "n": 1}
    assert run.outputs == {"reader": {"label": "blue", "x": 1}}
    changes = [e.details for e in client.history(run.id) if e.type == "run.variables"]
    assert changes == [
        {"set": {"color": "red", "n": 1}, "vars": {"color": "red", "n": 1}},
        {"set": {"color": "blue"}, "vars": {"color": "blue", "n": 1}},
    ]


def test_reading_a_variable_never_set_fails_the_step_naming_it(db_url: str) -> None:
    wf = Workflow("unset_var")
    wf.step("reader", echo, x=legato.var("missing"))
    run = run_of(wf, db_url)
    assert run.status is RunStatus.FAILED
    error = run.steps["reader"].error
    assert error is not None
    assert error.type == "TemplateError"
    assert "missing" in error.message
    assert list(run.steps["reader"].input_errors) == ["x"]


# -- update_variables -------------------------------------------------------------------------


def gated_reader() -> Workflow:
    """Sets ``color``, waits for the signal ``gate``, then reads the variables."""
    wf = Workflow("gated_reader")
    sv = wf.set_vars("sv", color="red", n=3)
    gate = wf.wait_for_signal("gate", needs=[sv])
    reader = wf.step(
        "reader", tag, label=legato.var("color"), x="${{ vars.n ~ '/' ~ vars.extra }}", needs=[gate]
    )
    wf.outputs(reader=reader.output, color=legato.var("color"))
    return wf


def test_variables_updated_while_the_run_waits_are_seen_by_a_later_step(client: Client) -> None:
    run_id = client.start(gated_reader())
    waiting = client.get(run_id)
    assert waiting.status is RunStatus.RUNNING
    assert waiting.steps["gate"].status is StepStatus.SUSPENDED
    assert waiting.variables == {"color": "red", "n": 3}

    merged = client.update_variables(run_id, {"color": "blue", "extra": [1, 2]}, actor="ops")
    assert merged == {"color": "blue", "n": 3, "extra": [1, 2]}
    assert client.get(run_id).variables == merged
    assert claim(client, tasks=ALL_TASKS) == []  # still waiting for its signal

    assert client.signal(run_id, "gate", None) == "gate"
    [step] = claim(client, tasks=ALL_TASKS)
    assert step.step_id == "reader"
    assert step.kwargs == {"label": "blue", "x": "3/[1, 2]"}
    assert report(client, [ok(step, {"read": step.kwargs["label"]})]).accepted == 1
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"reader": {"read": "blue"}, "color": "blue"}
    assert run.variables == {"color": "blue", "n": 3, "extra": [1, 2]}


def test_variable_changes_are_recorded_as_run_variables_events(client: Client) -> None:
    run_id = client.start(gated_reader())
    client.update_variables(run_id, {"color": "green"}, actor="ops")
    client.update_variables(run_id[:8], {"extra": None})  # a prefix of the id does too
    changes = [e for e in client.history(run_id) if e.type == "run.variables"]
    assert [(e.step_id, e.actor, e.details) for e in changes] == [
        (None, "sv", {"set": {"color": "red", "n": 3}, "vars": {"color": "red", "n": 3}}),
        (None, "ops", {"set": {"color": "green"}, "vars": {"color": "green", "n": 3}}),
        (
            None,
            None,
            {"set": {"extra": None}, "vars": {"color": "green", "n": 3, "extra": None}},
        ),
    ]
    assert all(e.run_id == run_id for e in changes)


def test_until_sees_variables_updated_while_an_iteration_waits(client: Client) -> None:
    wf = Workflow("stoppable_loop")
    init = wf.set_vars("init", stop=False)
    lp = wf.loop("lp", max_iterations=10, until="${{ vars.stop }}", needs=[init])
    lp.wait_for_signal("tick")
    wf.outputs(iterations="${{ steps.lp.output }}")
    run_id = client.start(wf)
    assert client.signal(run_id, "tick", 0) == "lp[0].tick"
    assert client.get(run_id).steps["lp[1].tick"].status is StepStatus.SUSPENDED
    client.update_variables(run_id, {"stop": True})
    assert client.signal(run_id, "tick", 1) == "lp[1].tick"
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["lp"].status is StepStatus.COMPLETED
    assert [k for k, s in run.steps.items() if s.kind == "iteration"] == ["lp[0]", "lp[1]"]
    assert run.variables == {"stop": True}


@pytest.mark.parametrize("payload", [None, 1, "text", {"ok": True, "rows": [1, 2]}])
def test_a_signal_payload_is_the_waiting_steps_output_as_sent(client: Client, payload: Any) -> None:
    """What the gate of the tests above passes on: the payload itself, with its JSON type,
    whether the step was waiting for it or the signal was kept until it was reached."""
    wf = Workflow("payloads")
    waiting = wf.wait_for_signal("waiting")
    wf.wait_for_signal("later", needs=[waiting])
    wf.outputs(waiting=waiting.output, later="${{ steps.later.output }}")
    run_id = client.start(wf)
    assert client.signal(run_id, "later", payload) == "kept"
    assert client.signal(run_id, "waiting", payload) == "waiting"
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["later"].output == payload  # kept, then read back from the database
    assert run.steps["waiting"].output == payload  # delivered to the step waiting for it
    assert run.outputs == {"waiting": payload, "later": payload}


def test_update_variables_on_a_finished_run_is_a_conflict(client: Client, db_url: str) -> None:
    wf = Workflow("finished_vars")
    wf.set_vars("sv", color="red")
    run = run_of(wf, db_url)
    assert run.status is RunStatus.COMPLETED
    before = client.history(run.id)
    with pytest.raises(ConflictError) as info:
        client.update_variables(run.id, {"color": "blue"})
    assert str(info.value) == f"run {run.id} is completed: its variables are final"
    assert client.get(run.id).variables == {"color": "red"}
    assert client.history(run.id) == before  # nothing recorded


def test_update_variables_on_an_unknown_run_is_not_found(client: Client) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(RunNotFoundError) as info:
        client.update_variables(missing, {"x": 1})
    assert str(info.value) == f"no run with id {missing!r}"
    with pytest.raises(RunNotFoundError, match="no run has an id starting with 'deadbeef'"):
        client.update_variables("deadbeef", {"x": 1})
    with pytest.raises(ParamError, match="too short"):
        client.update_variables("abc", {"x": 1})
    assert client.list_runs() == []
