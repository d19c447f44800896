"""The executor turns a claimed attempt into a result, without a database."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from legato import RetryPolicy, StepError, TaskRegistry, task
from legato.store.base import ClaimedStep, StepResult
from legato.worker.executor import Executor

registry = TaskRegistry()


class Flaky(Exception):
    pass


@task(name="unit.exec.add", registry=registry)
def add(a: int, b: int = 0) -> int:
    return a + b


@task(name="unit.exec.boom", registry=registry)
def boom(kind: str = "value") -> None:
    if kind == "flaky":
        raise Flaky("try again")
    raise ValueError("bad value")


@task(name="unit.exec.bad_output", registry=registry)
def bad_output() -> Any:
    return {"when": {1, 2}}


@task(name="unit.exec.mutate", registry=registry)
def mutate(rows: list[Any]) -> int:
    rows.append(99)
    return len(rows)


@task(name="unit.exec.async_add", registry=registry)
async def async_add(a: int, b: int = 0) -> int:
    await asyncio.sleep(0)
    return a + b


@task(name="unit.exec.exit", registry=registry)
def sync_exit() -> None:
    raise SystemExit(4)


@task(name="unit.exec.async_exit", registry=registry)
async def async_exit() -> None:
    raise SystemExit(5)


#: keys of the ``async_slow`` calls that were cancelled
cancelled: set[str] = set()


@task(name="unit.exec.async_slow", registry=registry)
async def async_slow(key: str = "") -> None:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        cancelled.add(key)
        raise


def claimed(
    fn: Any,
    *args: Any,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    resolve_error: StepError | None = None,
    **kwargs: Any,
) -> ClaimedStep:
    return ClaimedStep(
        step_run_id=1,
        run_id="run-1",
        step_id="s",
        task=fn.name,
        attempt=2,
        max_attempts=3,
        retry=retry or RetryPolicy(max_attempts=3),
        timeout=timeout,
        priority=0,
        args=list(args),
        kwargs=kwargs,
        resolve_error=resolve_error,
    )


@pytest.fixture
def executor() -> Iterator[Executor]:
    ex = Executor(2, max_payload_bytes=1000)
    yield ex
    ex.shutdown()


def run(executor: Executor, step: ClaimedStep, fn: Any) -> StepResult:
    return executor.submit(step, fn).result(timeout=10)


def test_a_sync_call_reports_its_output_and_inputs(executor: Executor) -> None:
    result = run(executor, claimed(add, 1, b=2), add)
    assert result.ok and result.error is None
    assert (result.step_run_id, result.run_id, result.step_id, result.attempt) == (
        1,
        "run-1",
        "s",
        2,
    )
    assert result.output_json == "3"
    assert json.loads(result.inputs_json or "") == {"args": [1], "kwargs": {"b": 2}}


def test_an_async_call(executor: Executor) -> None:
    result = run(executor, claimed(async_add, a=4, b=5), async_add)
    assert result.ok and result.output_json == "9"


def test_an_exception_becomes_an_error_with_its_traceback(executor: Executor) -> None:
    result = run(executor, claimed(boom), boom)
    assert not result.ok and result.output_json is None
    assert result.error is not None
    assert (result.error.type, result.error.message) == ("ValueError", "bad value")
    assert result.error.traceback and "ValueError: bad value" in result.error.traceback
    assert result.retryable


def test_retry_on_decides_whether_an_error_is_retryable(executor: Executor) -> None:
    policy = RetryPolicy(max_attempts=3, retry_on=(f"{__name__}.Flaky",))
    flaky = run(executor, claimed(boom, kind="flaky", retry=policy), boom)
    other = run(executor, claimed(boom, kind="value", retry=policy), boom)
    assert flaky.error is not None and flaky.error.type == "Flaky"
    assert flaky.retryable and not other.retryable


def test_an_output_json_cannot_carry_fails_the_attempt(executor: Executor) -> None:
    result = run(executor, claimed(bad_output), bad_output)
    assert not result.ok and result.error is not None
    assert result.error.type == "PayloadError"
    assert result.error.message == (
        "step 's' output: $.when is of type set, which JSON cannot carry (convert it to a list)"
    )


def test_an_output_over_the_limit_fails_the_attempt(executor: Executor) -> None:
    result = run(executor, claimed(add, "x" * 600, b="y" * 600), add)
    assert result.error is not None and result.error.type == "PayloadError"
    assert "over the limit of 1,000 bytes" in result.error.message


def test_a_task_changing_its_arguments_changes_neither_the_claim_nor_the_record(
    executor: Executor,
) -> None:
    rows = ["a"]
    step = claimed(mutate, rows=rows)
    result = run(executor, step, mutate)
    assert result.output_json == "2"
    assert rows == ["a"] and step.kwargs == {"rows": ["a"]}
    assert json.loads(result.inputs_json or "") == {"args": [], "kwargs": {"rows": ["a"]}}


def test_an_unresolved_call_fails_without_running(executor: Executor) -> None:
    error = StepError(type="TemplateError", message="no such key")
    result = run(executor, claimed(boom, resolve_error=error), boom)
    assert not result.ok and result.error == error
    assert result.retryable is False


def test_an_async_call_over_its_timeout_is_cancelled(executor: Executor) -> None:
    key = uuid.uuid4().hex
    began = time.monotonic()
    result = run(executor, claimed(async_slow, timeout=0.05, key=key), async_slow)
    assert time.monotonic() - began < 10  # not the call's 30 s
    assert not result.ok and result.error is not None
    assert result.error.type == "StepTimeoutError"
    assert result.error.message == "step 's' ran longer than its timeout of 0.05s"
    # The coroutine itself was cancelled, not left running on the loop.
    deadline = time.monotonic() + 5
    while key not in cancelled:
        assert time.monotonic() < deadline, "the timed-out coroutine was never cancelled"
        time.sleep(0.005)


def test_system_exit_in_a_task_is_its_failure(executor: Executor) -> None:
    result = run(executor, claimed(sync_exit), sync_exit)
    assert result.error is not None
    assert (result.error.type, result.error.message) == ("SystemExit", "4")


def test_system_exit_in_an_async_task_is_its_failure_and_the_loop_lives_on(
    executor: Executor,
) -> None:
    result = run(executor, claimed(async_exit), async_exit)
    assert result.error is not None
    assert (result.error.type, result.error.message) == ("SystemExit", "5")
    assert run(executor, claimed(async_add, a=1, b=1), async_add).output_json == "2"
