"""Bad input fails its step (or run), never the worker: the worker goes on serving others.

Each case runs a bad run beside a good one on one worker; the bad one fails
with an error naming its step and the cause, the good one completes, and the
worker's loop never raises.
"""

from __future__ import annotations

from typing import Any

import pytest

from legato import Client, RunStatus, StepStatus, Worker, Workflow
from legato.store.base import StepResult

from .helpers import claim, drive, sql
from .tasks import double, echo, huge_number, surrogate_error

pytestmark = pytest.mark.usefixtures("client")


def good() -> Workflow:
    wf = Workflow("good")
    a = wf.step("a", double, x=2)
    wf.step("b", double, x=a.output)
    wf.outputs(value="${{ steps.b.output }}")
    return wf


@pytest.fixture
def worker(client: Client) -> Any:
    w = Worker(client, worker_id="steady", concurrency=2)
    yield w
    w.close()


def both(client: Client, worker: Worker, bad: Workflow, params: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    bad_id = client.start(bad, params)
    good_id = client.start(good())
    bad_run = drive(client, bad_id, worker)
    good_run = drive(client, good_id, worker)
    assert good_run.status is RunStatus.COMPLETED and good_run.outputs == {"value": 8}
    return bad_run


def test_an_input_too_large_to_compute_fails_its_step(client: Client, worker: Worker) -> None:
    wf = Workflow("power")
    wf.param("n", 10)
    wf.step("p", echo, x="${{ params.n ** 5000 }}", retry=3)
    run = both(client, worker, wf)
    assert run.status is RunStatus.FAILED
    step = run.steps["p"]
    assert step.attempt == 1 and step.failures == 1  # not retried: it would fail the same way
    assert step.error is not None and step.error.type == "TemplateError"
    assert step.error.message == (
        "step 'p' inputs cannot be resolved: input 'x': expression '${{ params.n ** 5000 }}' "
        "is not allowed: 10 ** 5000 would be an integer of more than 16,384 bits"
    )
    assert step.input_errors == {"x": step.error.message.split("input 'x': ", 1)[1]}


def test_an_output_too_large_to_encode_fails_at_once(client: Client, worker: Worker) -> None:
    wf = Workflow("huge")
    wf.step("h", huge_number, retry=3)
    run = both(client, worker, wf)
    step = run.steps["h"]
    assert (step.status, step.attempt, step.failures) == (StepStatus.FAILED, 1, 1)
    assert step.error is not None and step.error.type == "PayloadError"
    assert step.error.message == (
        "step 'h' output: $ is an integer of more than 4,300 digits, which JSON cannot carry "
        "here (pass it as a string)"
    )
    assert step.inputs == {}  # the inputs it ran with are on record


def test_a_stored_policy_that_cannot_be_read_fails_the_step(client: Client, worker: Worker) -> None:
    wf = Workflow("policy")
    wf.step("p", echo, x=1)
    run_id = client.start(wf)
    sql(
        client.store,
        "UPDATE step_runs SET retry = ? WHERE run_id = ?",
        '{"max_delay": null}',
        run_id,
    )
    good_id = client.start(good())
    run = drive(client, run_id, worker)
    assert drive(client, good_id, worker).status is RunStatus.COMPLETED
    step = run.steps["p"]
    assert step.status is StepStatus.FAILED and step.error is not None
    assert step.error.type == "StepSetupError"
    assert step.error.message.startswith("step 'p': its stored retry policy cannot be read")


def test_a_policy_unreadable_when_the_task_fails_is_not_retried(client: Client) -> None:
    wf = Workflow("policy_late")
    wf.step("p", surrogate_error, retry=3)
    run_id = client.start(wf)
    [step] = claim(client, "w1", tasks=["store_suite.surrogate_error"])
    sql(client.store, "UPDATE step_runs SET retry = ? WHERE run_id = ?", "[]", run_id)
    from .helpers import failed, report

    report(client, [failed(step, "it broke")])
    run = client.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error.message.startswith("it broke (not retried: its stored retry policy")


def test_an_error_text_no_database_can_store_is_stored_escaped(
    client: Client, worker: Worker
) -> None:
    wf = Workflow("surrogates")
    wf.step("s", surrogate_error)
    run = both(client, worker, wf)
    error = run.steps["s"].error
    assert error is not None and error.type == "ValueError"
    assert error.message == "bad \\udcff byte and a \\x00 NUL"


def test_a_result_the_database_refuses_fails_its_step_and_the_rest_are_kept(
    client: Client, worker: Worker
) -> None:
    wf = Workflow("refused")
    wf.step("r", echo, x=1)
    wf.step("kept", echo, x=2)
    run_id = client.start(wf)
    claimed = {s.step_id: s for s in claim(client, "steady")}
    # A result whose text no database can take (a lone surrogate, unencodable
    # as UTF-8) arrives in one batch with a good one, as a worker reports them.
    for step_id, output in (("r", '"\udcff"'), ("kept", "2")):
        c = claimed[step_id]
        worker._running[(c.step_run_id, c.attempt)] = _placeholder(c)
        worker._results.put(
            StepResult(c.step_run_id, c.run_id, c.step_id, c.attempt, ok=True, output_json=output)
        )
    tick = worker.tick()  # must not raise
    assert tick.reported == 2
    run = client.get(run_id)
    assert run.steps["kept"].output == 2
    r = run.steps["r"]
    assert r.status is StepStatus.FAILED and r.error is not None
    assert r.error.type == "ResultNotRecorded"
    assert r.error.message.startswith("step 'r': the database refused to record this attempt's")
    assert run.status is RunStatus.FAILED
    good_id = client.start(good())
    assert drive(client, good_id, worker).status is RunStatus.COMPLETED


def _placeholder(claimed: Any) -> Any:
    from concurrent.futures import Future

    from legato.worker.worker import _Running

    return _Running(claimed, Future(), None)


@pytest.mark.parametrize("kind", ["set", "nan", "big"])
def test_an_output_json_cannot_carry_spends_no_retries(db_url: str, kind: str) -> None:
    from .tasks import bad_output

    with Client(db_url, max_payload_bytes=500) as client:
        worker = Worker(client, worker_id="gate")
        try:
            wf = Workflow("unretried")
            wf.step("out", bad_output, kind=kind, retry={"max_attempts": 3, "delay": 0})
            run = drive(client, client.start(wf), worker)
        finally:
            worker.close()
    step = run.steps["out"]
    assert (step.status, step.attempt, step.failures) == (StepStatus.FAILED, 1, 1)
    assert step.error is not None and step.error.type == "PayloadError"
    assert step.inputs == {"kind": kind}  # the attempt's inputs are on record
    assert [(a.number, a.status) for a in step.attempts] == [(1, "failed")]
