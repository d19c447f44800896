"""Whole runs through legato.run and Worker.tick on each backend."""

from __future__ import annotations

import uuid

import pytest

import legato
from legato import Client, ParamError, Run, RunStatus, Sequence, WaitTimeout, Worker, Workflow

from .helpers import drive
from .tasks import (
    async_double,
    calls,
    double,
    echo,
    exits,
    fail_when_sibling_runs,
    flaky,
    only_value_errors,
    outlive_the_run,
    total,
)


def test_chain_completes_on_each_backend(db_url: str) -> None:
    wf = Workflow("smoke")
    a = wf.step("a", double, x=wf.param("x"))
    b = wf.step("b", double, x=a.output)
    wf.outputs(result=b.output)
    run = legato.run(wf, {"x": 3}, url=db_url)
    assert run.status == "completed"
    assert run.outputs == {"result": 12}
    assert [s.status for s in run.steps.values()] == ["completed", "completed"]
    with Client(db_url) as client:
        assert client.get(run.id) == run  # stored, and read back the same


def test_async_tasks_and_fan_in(client: Client) -> None:
    wf = Workflow("async_fan")
    parts = [wf.step(f"p{i}", async_double, x=i) for i in range(6)]
    summed = wf.step("sum", total, rows=[p.output for p in parts])
    wf.outputs(sum=summed.output)
    worker = Worker(client, worker_id="e2e", concurrency=3)
    try:
        run = drive(client, client.start(wf), worker)
    finally:
        worker.close()
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"sum": 30}
    assert run.steps["sum"].inputs == {"rows": [0, 2, 4, 6, 8, 10]}


def test_sequence_end_to_end(client: Client) -> None:
    seq = Sequence("seq_e2e", [double, echo, double])
    worker = Worker(client, worker_id="seq")
    try:
        run = drive(client, client.start(seq, {"x": 5}), worker)
    finally:
        worker.close()
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": 20}
    assert run.params == {"x": 5}
    assert [s.args for s in run.steps.values()] == [[], [10], [10]]


def test_wait_times_out_on_an_unfinished_run(client: Client) -> None:
    wf = Workflow("waiting")
    wf.step("a", double, x=1)
    run_id = client.start(wf)
    with pytest.raises(WaitTimeout) as info:
        client.wait(run_id, timeout=0.05)
    assert str(info.value) == (
        f"run {run_id} is still pending after 0.05s (0/1 steps done); no live worker serves "
        "task store_suite.double on queue 'default'; start one with: legato worker --import "
        "<module defining the task>"
    )
    worker = Worker(client, worker_id="waited")
    try:
        drive(client, run_id, worker)
    finally:
        worker.close()
    assert client.wait(run_id, timeout=1).outputs == {}


def run_with_worker(client: Client, wf: Workflow, params: dict[str, object] | None = None) -> Run:
    worker = Worker(client, worker_id="e2e")
    try:
        return drive(client, client.start(wf, params), worker)
    finally:
        worker.close()


def test_a_flaky_step_is_retried_until_it_succeeds(client: Client) -> None:
    key = f"flaky-{uuid.uuid4()}"
    wf = Workflow("flaky")
    wf.step("f", flaky, key=key, fails=2)
    run = run_with_worker(client, wf)
    assert run.status is RunStatus.COMPLETED
    step = run.steps["f"]
    assert step.output == "ok after 3" and calls(key) == 3
    assert [(a.number, a.status) for a in step.attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "completed"),
    ]
    assert [a.error.message for a in step.attempts[:2]] == [  # type: ignore[union-attr]
        "attempt 1 failed",
        "attempt 2 failed",
    ]
    assert [e.type for e in client.history(run.id)].count("step.retrying") == 2


@pytest.mark.parametrize(
    ("kind", "attempts", "error"), [("value", 4, "ValueError"), ("key", 1, "KeyError")]
)
def test_retry_on_limits_what_is_retried(
    client: Client, kind: str, attempts: int, error: str
) -> None:
    wf = Workflow("retry_on")
    wf.step("r", only_value_errors, kind=kind)
    run = run_with_worker(client, wf)
    assert run.status is RunStatus.FAILED
    assert run.steps["r"].attempt == attempts
    assert run.error is not None and run.error.type == error


def test_a_task_raising_system_exit_fails_its_step(client: Client) -> None:
    wf = Workflow("exiting")
    wf.step("x", exits, code=3)
    run = run_with_worker(client, wf)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.type, run.error.message, run.error.step) == ("SystemExit", "3", "x")


def test_legato_run_returns_after_steps_running_when_the_run_failed_have_finished(
    db_url: str,
) -> None:
    """A failed step fails the run at once, but a sibling already running finishes and
    is recorded before ``legato.run`` returns; the step after it is cancelled."""
    key = f"sibling-{uuid.uuid4()}"
    wf = Workflow("outlived")
    wf.step("fails", fail_when_sibling_runs, key=key)
    slow = wf.step("slow", outlive_the_run, key=key, url=db_url, run_id="${{ run.id }}")
    wf.step("after", echo, x=slow.output)
    run = legato.run(wf, url=db_url)
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.step == "fails"
    assert {k: s.status.value for k, s in run.steps.items()} == {
        "fails": "failed",
        "slow": "completed",
        "after": "cancelled",
    }
    assert run.steps["slow"].output == "finished after the run failed"
    with Client(db_url) as client:
        types = [(e.type, e.step_id) for e in client.history(run.id)]
    assert types.index(("run.failed", None)) < types.index(("step.completed", "slow"))
    assert ("step.started", "after") not in types


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1, "soon"])
def test_waits_refuse_a_timeout_that_is_no_duration(client: Client, bad: object) -> None:
    wf = Workflow("waits")
    wf.step("a", double, x=1)
    run_id = client.start(wf)
    with pytest.raises(ParamError, match="timeout"):
        client.wait(run_id, timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(ParamError, match="timeout"):
        legato.run(wf, url=client.url, timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(ParamError, match="timeout: a duration must be more than zero"):
        legato.run(wf, url=client.url, timeout=0)
    assert len(client.list_runs()) == 1  # refused before anything was started
