"""Whole runs through legato.run and Worker.tick on each backend."""

from __future__ import annotations

import pytest

import legato
from legato import Client, RunStatus, Sequence, WaitTimeout, Worker, Workflow

from .helpers import drive
from .tasks import async_double, double, echo, total


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
    assert str(info.value) == f"run {run_id} is still pending after 0.05s (0/1 steps done)"
    worker = Worker(client, worker_id="waited")
    try:
        drive(client, run_id, worker)
    finally:
        worker.close()
    assert client.wait(run_id, timeout=1).outputs == {}
