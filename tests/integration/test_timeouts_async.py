"""Timeouts and async tasks under a real worker loop (``Worker.run`` in a thread)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from chaos.support import wait_until
from legato import Client, RunStatus, Worker, Workflow

from .tasks import async_slow, async_span, async_where, calls, gate, notes, quick, stuck_first


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end before a start at the same time)."""
    edges = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    most = current = 0
    for _, change in edges:
        current += change
        most = max(most, current)
    return most


def test_a_sync_timeout_is_retried_while_the_worker_runs_other_steps(
    client: Client, workers: Callable[..., Worker]
) -> None:
    key = uuid.uuid4().hex
    stuck = Workflow("stuck")
    stuck.step("s", stuck_first, key=key)
    chain = Workflow("chain")
    previous = chain.step("c0", quick, key=key + "chain")
    for i in range(1, 6):
        previous = chain.step(f"c{i}", quick, key=key + "chain", x=previous.output)
    chain.outputs(last=previous.output)

    workers(client, concurrency=2)
    stuck_id, chain_id = client.start(stuck), client.start(chain)
    stuck_run = client.wait(stuck_id, timeout=30)
    chain_run = client.wait(chain_id, timeout=30)

    # Both runs finished while the first attempt's thread was still blocked.
    assert not gate(key).is_set()
    assert notes(key) == []
    assert chain_run.status is RunStatus.COMPLETED and chain_run.outputs == {"last": 6}
    assert stuck_run.status is RunStatus.COMPLETED
    step = stuck_run.steps["s"]
    assert step.output == "attempt 2"
    assert [(a.number, a.status) for a in step.attempts] == [(1, "failed"), (2, "completed")]
    timed_out = step.attempts[0].error
    assert timed_out is not None and timed_out.type == "StepTimeoutError"
    assert timed_out.message == "step 's' ran longer than its timeout of 0.5s"

    # The abandoned thread returns at last; its late result changes nothing.
    history = client.history(stuck_id)
    gate(key).set()
    wait_until(lambda: notes(key) == ["first attempt returned"], 30, what="the late return")
    after = client.wait(client.start(chain), timeout=30)  # the worker ticks on
    assert after.status is RunStatus.COMPLETED
    assert client.get(stuck_id) == stuck_run
    assert client.history(stuck_id) == history
    assert calls(key) == 2


def test_an_async_task_runs_on_the_event_loop(
    client: Client, workers: Callable[..., Worker]
) -> None:
    wf = Workflow("where")
    wf.step("w", async_where)
    workers(client)
    run = client.wait(client.start(wf), timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["w"].output == {"thread": "legato-async", "loop_running": True}


def test_a_slow_async_task_is_cancelled_at_its_timeout(
    client: Client, workers: Callable[..., Worker]
) -> None:
    key = uuid.uuid4().hex
    wf = Workflow("slow_async")
    wf.step("slow", async_slow, key=key)
    workers(client)
    run = client.wait(client.start(wf), timeout=30)
    assert run.status is RunStatus.FAILED
    step = run.steps["slow"]
    assert step.attempt == 1 and step.error is not None
    assert step.error.type == "StepTimeoutError"
    assert step.duration is not None and step.duration < 10  # not the task's 60 s
    wait_until(lambda: notes(key) == ["cancelled"], 10, what="the coroutine to be cancelled")


def test_async_tasks_overlap_up_to_the_worker_concurrency(
    client: Client, workers: Callable[..., Worker]
) -> None:
    key = uuid.uuid4().hex
    wf = Workflow("spans")
    for i in range(12):
        wf.step(f"a{i}", async_span, key=key, seconds=0.4)
    workers(client, concurrency=4)
    run = client.wait(client.start(wf), timeout=60)
    assert run.status is RunStatus.COMPLETED
    spans = notes(key)
    assert len(spans) == 12
    assert max_overlap(spans) == 4
