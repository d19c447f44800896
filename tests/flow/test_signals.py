"""Signals on each backend: a step waits until ``client.signal`` answers it.

The store is driven directly (``claim``/``report``) and time is moved with
``client.store.clock.advance``, so nothing depends on timing; the race between
two senders is run with real threads on two clients.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.helpers import assert_usage_error
from legato import Client, RunStatus, StepStatus, Workflow
from legato.cli.main import app
from legato.embedded import work_until_finished
from legato.errors import ConflictError, ParamError, PayloadError, RunNotFoundError
from legato.store.base import ClaimedStep
from store.helpers import claim, ok, report, sql

from .tasks_waits import ALL_TASKS, echo, tag


def grab(client: Client, *, sweep: bool = False) -> list[ClaimedStep]:
    """Claim whatever of this suite's tasks is queued (a sweep also fires due timers)."""
    return claim(client, tasks=ALL_TASKS, sweep=sweep)


def keys(steps: list[ClaimedStep]) -> list[str]:
    return sorted(s.step_id for s in steps)


def finish(client: Client, steps: list[ClaimedStep], output: Any = "done") -> None:
    assert report(client, [ok(s, output) for s in steps]).accepted == len(steps)


def signal_events(client: Client, run_id: str) -> list[tuple[str, str | None, str | None]]:
    """``(type, step, signal name)`` of the run's signal events, oldest first."""
    return [
        (e.type, e.step_id, (e.details or {}).get("signal"))
        for e in client.history(run_id)
        if e.type.startswith("signal.")
    ]


def gated() -> Workflow:
    """``gate`` waits for ``approve``; ``use`` reads the payload's ``answer``."""
    wf = Workflow("gated")
    gate = wf.wait_for_signal("gate", "approve")
    wf.step("use", tag, label="use", x=gate.output["answer"])
    wf.outputs(approval=gate.output)
    return wf


def after_first() -> Workflow:
    """``first`` (a task), then ``gate`` waiting for ``approve``, then ``use``."""
    wf = Workflow("gated_later")
    first = wf.step("first", echo, x=1)
    gate = wf.wait_for_signal("gate", "approve", needs=[first])
    wf.step("use", tag, label="use", x=gate.output)
    return wf


# -- delivery ---------------------------------------------------------------------------------


def test_a_signal_completes_the_waiting_step_with_its_payload(client: Client) -> None:
    run_id = client.start(gated())
    gate = client.get(run_id).steps["gate"]
    assert (gate.status, gate.waiting_for, gate.kind) == (
        StepStatus.SUSPENDED,
        "signal:approve",
        "wait_for_signal",
    )
    assert gate.wake_at is None  # no timeout: no timer
    assert gate.worker is None
    assert grab(client, sweep=True) == []  # nothing to do for a worker meanwhile
    assert client.get(run_id).steps["gate"].status is StepStatus.SUSPENDED

    assert client.signal(run_id, "approve", {"answer": 42, "by": "ann"}) == "gate"
    run = client.get(run_id)
    assert run.steps["gate"].status is StepStatus.COMPLETED
    assert run.steps["gate"].output == {"answer": 42, "by": "ann"}
    [use] = grab(client)
    assert use.step_id == "use"
    assert use.kwargs == {"label": "use", "x": 42}  # the successor reads the payload
    finish(client, [use])
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"approval": {"answer": 42, "by": "ann"}}


def test_a_signal_without_a_payload_completes_the_step_with_none(client: Client) -> None:
    run_id = client.start(after_first())
    finish(client, grab(client))
    assert client.signal(run_id, "approve") == "gate"
    [use] = grab(client)
    assert use.kwargs == {"label": "use", "x": None}


def test_a_signal_sent_before_the_step_is_reached_is_kept_for_it(client: Client) -> None:
    run_id = client.start(after_first())
    assert client.get(run_id).steps["gate"].status is StepStatus.WAITING
    assert client.signal(run_id, "approve", "early") == "kept"
    assert client.get(run_id).steps["gate"].status is StepStatus.WAITING  # still not reached
    assert signal_events(client, run_id) == [("signal.received", None, "approve")]
    [first] = grab(client)
    # completing first reaches gate, which takes the kept signal in the same transaction
    finish(client, [first])
    gate = client.get(run_id).steps["gate"]
    assert gate.status is StepStatus.COMPLETED
    assert gate.output == "early"
    [use] = grab(client)
    assert use.kwargs == {"label": "use", "x": "early"}
    finish(client, [use])
    assert client.get(run_id).status is RunStatus.COMPLETED
    assert signal_events(client, run_id) == [
        ("signal.received", None, "approve"),
        ("signal.consumed", "gate", "approve"),
    ]


def test_kept_signals_are_taken_in_the_order_they_were_sent(client: Client) -> None:
    wf = Workflow("root_gate")
    first = wf.step("first", echo, x=1)
    gate = wf.wait_for_signal("gate", "go", needs=[first])
    second = wf.wait_for_signal("gate2", "go", needs=[gate])
    wf.step("use", echo, x=second.output, needs=[second])
    run_id = client.start(wf)
    # two signals kept: the steps reached later take them in the order they were sent
    assert client.signal(run_id, "go", "one") == "kept"
    assert client.signal(run_id, "go", "two") == "kept"
    finish(client, grab(client))
    run = client.get(run_id)
    assert run.steps["gate"].output == "one"
    assert run.steps["gate2"].output == "two"
    [use] = grab(client)
    assert use.kwargs == {"x": "two"}
    # a third finds nobody waiting: kept, and the run goes on
    assert client.signal(run_id, "go", "three") == "kept"
    finish(client, [use])
    assert client.get(run_id).status is RunStatus.COMPLETED


def test_two_signals_of_one_name_answer_two_waiting_steps_once_each(client: Client) -> None:
    wf = Workflow("two_gates")
    a = wf.wait_for_signal("a", "approve")
    b = wf.wait_for_signal("b", "approve")
    wf.step("both", echo, x={"a": a.output, "b": b.output})
    run_id = client.start(wf)
    steps = client.get(run_id).steps
    assert steps["a"].status is steps["b"].status is StepStatus.SUSPENDED
    first = client.signal(run_id, "approve", "first")
    steps = client.get(run_id).steps
    assert first in ("a", "b")
    other = "b" if first == "a" else "a"
    assert steps[first].status is StepStatus.COMPLETED
    assert steps[other].status is StepStatus.SUSPENDED  # one signal, one step
    assert grab(client) == []  # "both" still waits for the other
    assert client.signal(run_id, "approve", "second") == other
    steps = client.get(run_id).steps
    assert (steps[first].output, steps[other].output) == ("first", "second")
    [both] = grab(client)
    assert both.kwargs == {"x": {first: "first", other: "second"}}
    history = signal_events(client, run_id)
    assert [t for t, _, _ in history].count("signal.consumed") == 2
    assert sorted(str(s) for t, s, _ in history if t == "signal.consumed") == ["a", "b"]


def test_a_signal_of_another_name_does_not_answer_the_step(client: Client) -> None:
    run_id = client.start(gated())
    assert client.signal(run_id, "reject", {"answer": 0}) == "kept"
    assert client.get(run_id).steps["gate"].status is StepStatus.SUSPENDED
    assert client.signal(run_id, "approve", {"answer": 1}) == "gate"
    assert client.get(run_id).steps["gate"].output == {"answer": 1}


def test_the_signal_name_defaults_to_the_step_id(client: Client) -> None:
    wf = Workflow("default_name")
    wf.wait_for_signal("approval")
    run_id = client.start(wf)
    assert client.get(run_id).steps["approval"].waiting_for == "signal:approval"
    assert client.signal(run_id, "approval", True) == "approval"
    assert client.get(run_id).status is RunStatus.COMPLETED


def test_a_run_id_prefix_reaches_the_run(client: Client) -> None:
    run_id = client.start(gated())
    assert client.signal(run_id[:8], "approve", {"answer": 3}) == "gate"
    assert client.get(run_id).steps["gate"].output == {"answer": 3}


# -- timeouts ---------------------------------------------------------------------------------


def test_a_wait_that_times_out_without_a_default_fails_the_step_and_the_run(
    client: Client,
) -> None:
    wf = Workflow("timed_gate")
    gate = wf.wait_for_signal("gate", "approve", timeout="1h")
    wf.step("use", echo, x=gate.output)
    before = client.store.clock.now()
    run_id = client.start(wf)
    step = client.get(run_id).steps["gate"]
    assert step.status is StepStatus.SUSPENDED and step.waiting_for == "signal:approve"
    assert step.wake_at is not None
    assert before + 3600 - 1 <= step.wake_at.timestamp() <= client.store.clock.now() + 3601
    client.store.clock.advance(3500)
    assert grab(client, sweep=True) == []
    assert client.get(run_id).steps["gate"].status is StepStatus.SUSPENDED
    client.store.clock.advance(120)
    assert grab(client, sweep=True) == []  # the timeout fired: nothing after it runs
    run = client.get(run_id)
    step = run.steps["gate"]
    assert step.status is StepStatus.FAILED
    assert step.error is not None
    assert step.error.type == "SignalTimeout"
    assert "step 'gate'" in step.error.message
    assert "'approve'" in step.error.message and "3600s" in step.error.message
    assert run.status is RunStatus.FAILED
    assert run.error is not None and "'approve'" in run.error.message
    assert run.steps["use"].status is not StepStatus.COMPLETED
    # the run is over: a late signal is refused
    with pytest.raises(ConflictError):
        client.signal(run_id, "approve", "late")


def test_a_wait_that_times_out_with_a_default_completes_with_it(client: Client) -> None:
    wf = Workflow("defaulted_gate")
    gate = wf.wait_for_signal("gate", "approve", timeout="10m", default={"approved": False})
    wf.step("use", echo, x=gate.output["approved"])
    run_id = client.start(wf)
    client.store.clock.advance(601)
    [use] = grab(client, sweep=True)
    assert use.kwargs == {"x": False}
    gate_step = client.get(run_id).steps["gate"]
    assert gate_step.status is StepStatus.COMPLETED
    assert gate_step.output == {"approved": False}
    assert gate_step.error is None
    finish(client, [use])
    assert client.get(run_id).status is RunStatus.COMPLETED


def test_a_signal_before_the_timeout_wins_over_the_default(client: Client) -> None:
    wf = Workflow("answered_gate")
    gate = wf.wait_for_signal("gate", "approve", timeout="10m", default="nobody answered")
    wf.step("use", echo, x=gate.output)
    run_id = client.start(wf)
    client.store.clock.advance(300)
    assert client.signal(run_id, "approve", "yes") == "gate"
    assert client.get(run_id).steps["gate"].wake_at is None  # its timer is gone
    [use] = grab(client, sweep=True)
    assert use.kwargs == {"x": "yes"}
    finish(client, [use])
    assert client.get(run_id).status is RunStatus.COMPLETED
    client.store.clock.advance(3600)  # long past the timeout: nothing fires
    assert grab(client, sweep=True) == []
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    gate_step = run.steps["gate"]
    assert (gate_step.status, gate_step.output) == (StepStatus.COMPLETED, "yes")
    assert [e.type for e in client.history(run_id) if e.step_id == "gate"].count(
        "step.completed"
    ) == 1


def test_a_wait_timeout_counts_from_when_the_step_is_reached(client: Client) -> None:
    wf = Workflow("late_gate")
    first = wf.step("first", echo, x=1)
    wf.wait_for_signal("gate", "approve", timeout=60, needs=[first])
    run_id = client.start(wf)
    [step] = grab(client)
    client.store.clock.advance(120)  # longer than the timeout, before the step is reached
    finish(client, [step])
    assert grab(client, sweep=True) == []
    assert client.get(run_id).steps["gate"].status is StepStatus.SUSPENDED
    assert client.signal(run_id, "approve", "in time") == "gate"
    assert client.get(run_id).status is RunStatus.COMPLETED


# -- refusals -----------------------------------------------------------------------------------


def test_a_signal_to_a_finished_run_is_refused(client: Client) -> None:
    wf = Workflow("no_gate")
    wf.step("only", echo, x=1)
    run_id = client.start(wf)
    finish(client, grab(client))
    assert client.get(run_id).status is RunStatus.COMPLETED
    before = client.history(run_id)
    with pytest.raises(ConflictError) as caught:
        client.signal(run_id, "approve", "late")
    assert run_id in str(caught.value)
    assert "completed" in str(caught.value)
    assert "signal" in str(caught.value)
    assert client.history(run_id) == before  # nothing recorded


def test_a_signal_to_a_cancelled_or_failed_run_is_refused(client: Client) -> None:
    wf = Workflow("timed_out")
    wf.wait_for_signal("gate", "approve", timeout=5)
    run_id = client.start(wf)
    client.store.clock.advance(6)
    grab(client, sweep=True)
    assert client.get(run_id).status is RunStatus.FAILED
    with pytest.raises(ConflictError, match="failed"):
        client.signal(run_id, "approve", "late")


def test_a_signal_to_an_unknown_run_is_refused(client: Client) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(RunNotFoundError, match=missing):
        client.signal(missing, "approve", 1)
    with pytest.raises(RunNotFoundError):
        client.signal(missing[:8], "approve", 1)
    with pytest.raises(ParamError, match="too short"):
        client.signal("abc", "approve", 1)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (object(), "of type object"),
        ({1, 2}, "of type set"),
        (float("nan"), "nan"),
        ({"a": b"bytes"}, "$.a"),
        ({1: "x"}, "keys must be strings"),
    ],
    ids=["object", "set", "nan", "bytes", "int-key"],
)
def test_a_payload_that_is_not_json_is_refused_and_nothing_is_kept(
    client: Client, payload: Any, expected: str
) -> None:
    run_id = client.start(gated())
    with pytest.raises(PayloadError) as caught:
        client.signal(run_id, "approve", payload)
    assert "signal 'approve' payload" in str(caught.value)
    assert expected in str(caught.value)
    assert client.get(run_id).steps["gate"].status is StepStatus.SUSPENDED
    assert signal_events(client, run_id) == []
    # nothing was kept either: the next signal is the one the step takes
    assert client.signal(run_id, "approve", {"answer": "fine"}) == "gate"
    assert client.get(run_id).steps["gate"].output == {"answer": "fine"}


def test_a_payload_over_the_size_limit_is_refused(db_url: str) -> None:
    with Client(db_url, max_payload_bytes=1024) as small:
        run_id = small.start(gated())
        with pytest.raises(PayloadError):
            small.signal(run_id, "approve", {"answer": "x" * 5000})
        assert small.get(run_id).steps["gate"].status is StepStatus.SUSPENDED


# -- history ----------------------------------------------------------------------------------


def test_a_signals_events_are_in_the_history(client: Client) -> None:
    run_id = client.start(gated())
    assert client.signal(run_id, "approve", {"answer": 1}, sent_by="ann") == "gate"
    history = client.history(run_id)
    received = [e for e in history if e.type == "signal.received"]
    consumed = [e for e in history if e.type == "signal.consumed"]
    assert len(received) == 1 and len(consumed) == 1
    assert received[0].actor == "ann"
    assert received[0].details == {"signal": "approve"}
    assert consumed[0].step_id == "gate"
    assert consumed[0].details == {"signal": "approve"}
    types = [(e.type, e.step_id) for e in history]
    suspended = types.index(("step.suspended", "gate"))
    got = types.index(("signal.received", None))
    taken = types.index(("signal.consumed", "gate"))
    done = types.index(("step.completed", "gate"))
    assert suspended < got < taken < done
    [waiting] = [e for e in history if e.type == "step.suspended" and e.step_id == "gate"]
    assert waiting.details is not None and waiting.details["waiting_for"] == "signal:approve"


# -- races --------------------------------------------------------------------------------------


def send_together(senders: dict[str, Client], run_id: str) -> dict[str, str]:
    """Each client sends ``approve`` (its name as the answer) at the same moment."""
    barrier = threading.Barrier(len(senders))
    answers: dict[str, str] = {}
    errors: list[BaseException] = []

    def send(name: str, sender: Client) -> None:
        try:
            barrier.wait(timeout=5)
            answers[name] = sender.signal(run_id, "approve", {"answer": name})
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=send, args=item) for item in senders.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == [], errors
    return answers


def test_two_clients_signalling_at_once_answer_one_step_exactly_once(db_url: str) -> None:
    with Client(db_url) as one, Client(db_url) as two:
        for round_ in range(1, 5):
            run_id = one.start(gated())
            answers = send_together({"one": one, "two": two}, run_id)
            assert sorted(answers.values()) == ["gate", "kept"], (round_, answers)
            [winner] = [name for name, answer in answers.items() if answer == "gate"]
            gate = one.get(run_id).steps["gate"]
            assert gate.status is StepStatus.COMPLETED
            assert gate.output == {"answer": winner}
            history = signal_events(one, run_id)
            assert [t for t, _, _ in history].count("signal.received") == 2
            assert [(t, s) for t, s, _ in history if t == "signal.consumed"] == [
                ("signal.consumed", "gate")
            ]
            # every signal of every round is stored; one of each round's two is consumed
            [(sent, consumed)] = sql(
                two.store, "SELECT COUNT(*) AS sent, COUNT(consumed_by) AS consumed FROM signals"
            )
            assert (sent, consumed) == (2 * round_, round_)


# -- end to end -----------------------------------------------------------------------------------


def test_a_real_run_waits_for_its_signal(db_url: str) -> None:
    with Client(db_url) as client:
        run_id = client.start(gated())
        assert client.signal(run_id, "approve", {"answer": "go"}) == "gate"
        run = work_until_finished(client, run_id, timeout=5)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["use"].output == {"label": "use", "x": "go"}


# -- the command line ----------------------------------------------------------------------------


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "LEGATO_URL": None})


def test_cli_signal_completes_the_waiting_step(client: Client, db_url: str) -> None:
    run_id = client.start(gated())
    result = cli(
        "runs",
        "signal",
        run_id,
        "approve",
        "--payload",
        '{"answer": 7}',
        "--by",
        "bob",
        "--url",
        db_url,
    )
    assert result.exit_code == 0, result.output
    assert f"signal 'approve' completed step gate of run {run_id}" in result.stdout
    gate = client.get(run_id).steps["gate"]
    assert gate.status is StepStatus.COMPLETED and gate.output == {"answer": 7}
    [received] = [e for e in client.history(run_id) if e.type == "signal.received"]
    assert received.actor == "bob"


def test_cli_signal_as_json_and_kept(client: Client, db_url: str) -> None:
    run_id = client.start(after_first())
    kept = cli("runs", "signal", run_id[:8], "approve", "--json", "--url", db_url)
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.stdout) == {"run_id": run_id, "signal": "approve", "step": None}
    again = cli("runs", "signal", run_id, "other", "--url", db_url)
    assert again.exit_code == 0, again.output
    assert f"signal 'other' kept for run {run_id}: no step waits for it yet" in again.stdout
    finish(client, grab(client))
    gate = client.get(run_id).steps["gate"]
    assert gate.status is StepStatus.COMPLETED and gate.output is None  # no payload: null


def test_cli_signal_refuses_a_payload_that_is_not_json(client: Client, db_url: str) -> None:
    run_id = client.start(gated())
    result = cli("runs", "signal", run_id, "approve", "--payload", "{nope", "--url", db_url)
    assert_usage_error(result, "--payload is not JSON")
    assert client.get(run_id).steps["gate"].status is StepStatus.SUSPENDED
    assert signal_events(client, run_id) == []


def test_cli_signal_refuses_a_finished_or_unknown_run(client: Client, db_url: str) -> None:
    wf = Workflow("cli_done")
    wf.step("only", echo, x=1)
    run_id = client.start(wf)
    finish(client, grab(client))
    done = cli("runs", "signal", run_id, "approve", "--url", db_url)
    assert_usage_error(done, run_id, "completed")
    missing = str(uuid.uuid4())
    unknown = cli("runs", "signal", missing, "approve", "--url", db_url)
    assert_usage_error(unknown, missing)
