"""The process pool: plain-function tasks run in child processes, JSON in and out."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from chaos.support import wait_until
from legato import Client, ConfigError, RunStatus, TaskRegistry, Worker, Workflow, task

from . import pool_tasks


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.fixture
def pool_worker(client: Client, workers: Callable[..., Worker]) -> Worker:
    return workers(client, pool="process", registry=pool_tasks.registry(), concurrency=2)


def test_a_cpu_bound_task_runs_in_another_process(client: Client, pool_worker: Worker) -> None:
    wf = Workflow("crunching")
    wf.step("a", pool_tasks.crunch, n=200_000)
    wf.step("b", pool_tasks.fails, message="bad input 42", needs=["a"])
    run = client.wait(client.start(wf), timeout=60)
    a, b = run.steps["a"], run.steps["b"]
    assert a.output["total"] == sum(i * i for i in range(200_000))
    assert a.output["pid"] != os.getpid()
    assert b.error is not None and b.error.type == "ValueError"
    assert b.error.message == "bad input 42"
    assert "raise ValueError(message)" in (b.error.traceback or "")


def test_the_context_reports_from_the_child(client: Client, pool_worker: Worker) -> None:
    wf = Workflow("reporting")
    wf.step("r", pool_tasks.reporter, steps=3)
    run = client.wait(client.start(wf), timeout=60)
    assert run.status is RunStatus.COMPLETED, run
    step = run.steps["r"]
    assert step.output["pid"] != os.getpid()
    assert (step.output["attempt"], step.output["step"]) == (1, "r")
    assert step.progress is not None and step.progress["done"] == 3
    assert step.progress["message"] == "step 3"


def test_a_timeout_kills_the_child_and_the_step_retries_as_a_timeout(
    client: Client, pool_worker: Worker, tmp_path: Path
) -> None:
    wf = Workflow("sleepy")
    wf.step("s", pool_tasks.sleeper, folder=str(tmp_path))
    run = client.wait(client.start(wf), timeout=60)
    assert run.status is RunStatus.FAILED
    step = run.steps["s"]
    assert [(a.number, a.status) for a in step.attempts] == [(1, "failed"), (2, "failed")]
    for attempt in step.attempts:
        assert attempt.error is not None and attempt.error.type == "StepTimeoutError"
        assert "its process was killed" in attempt.error.message
    pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2 and os.getpid() not in pids
    wait_until(lambda: not any(alive(pid) for pid in pids), 10, what="the children to die")
    assert step.duration is not None and step.duration < 30


def test_a_task_the_child_cannot_import_fails_its_step_clearly(
    client: Client, workers: Callable[..., Worker]
) -> None:
    registry = TaskRegistry()

    @task(name="pools.defined_in_a_test", registry=registry)
    def local() -> int:
        return 1

    workers(client, pool="process", registry=registry, imports=[])
    wf = Workflow("unimportable")
    wf.step("x", local)
    run = client.wait(client.start(wf), timeout=60)
    assert run.status is RunStatus.FAILED
    error = run.steps["x"].error
    assert error is not None and error.type == "UnknownTaskError"
    assert "task 'pools.defined_in_a_test' is not registered in the worker's task process" in (
        error.message
    )
    assert "(it imported nothing)" in error.message
    assert run.steps["x"].attempt == 1  # not retried: another attempt would fail alike


def test_pools_are_checked_where_they_are_given(client: Client) -> None:
    with pytest.raises(ConfigError, match="pool must be one of thread, process, asyncio"):
        Worker(client, pool="fork")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"asyncio pool runs async def tasks only.*pools\.crunch"):
        Worker(client, pool="asyncio", registry=pool_tasks.registry())


def test_what_a_child_logs_and_prints_is_kept_with_the_attempt(
    client: Client, workers: Callable[..., Worker]
) -> None:
    workers(client, pool="process", registry=pool_tasks.registry(), concurrency=1, log_lines=5)
    wf = Workflow("talking_child")
    wf.step("t", pool_tasks.talker, lines=10, word="hunter2")
    run = client.wait(client.start(wf), timeout=60)
    assert run.status is RunStatus.COMPLETED, run
    child = run.steps["t"].output
    assert child != os.getpid()
    lines = client.logs(run.id, "t")
    assert [(line.level, line.logger, line.message) for line in lines] == [
        ("stdout", None, f"printed in {child}"),
        ("INFO", "legato.task.pools.talker", "told hunter2"),
        ("WARNING", "pools.talk", "line 0"),
        ("WARNING", "pools.talk", "line 1"),
        ("WARNING", "pools.talk", "line 2"),
        (
            "WARNING",
            "legato",
            "... 7 lines dropped: this attempt's log passed its limit of 5 lines or "
            "1,048,576 bytes (LEGATO_LOG_LINES, LEGATO_LOG_BYTES)",
        ),
    ]
