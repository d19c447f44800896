"""A claim committed as its worker's connection was cut: the worker never heard of the
attempts it took. Its next transaction adopts them (leases renewed, attempts
unchanged) instead of leaving them to lapse and run a second time."""

from __future__ import annotations

import time
from contextlib import suppress
from typing import Any

from legato import Client, RunStatus, Worker, Workflow
from legato.errors import DatabaseUnavailableError
from legato.store.base import ClaimRequest

from .helpers import ALL_TASKS, claim, ok, report
from .tasks import echo


def chain(n: int = 3) -> Workflow:
    wf = Workflow("adopted_chain")
    previous = wf.step("s0", echo, x=0)
    for i in range(1, n):
        previous = wf.step(f"s{i}", echo, x=previous.output)
    return wf


def adopt(worker: str, known: tuple[int, ...] = ()) -> ClaimRequest:
    return ClaimRequest(
        worker_id=worker,
        queues=("default",),
        tasks=ALL_TASKS,
        limit=0,
        lease=30.0,
        adopt=known,
    )


def test_a_claim_the_worker_never_heard_of_is_adopted_as_it_is(client: Client) -> None:
    first = client.start(chain())
    second = client.start(chain())
    [a, b] = claim(client, "w1", limit=2)  # committed; say the answer was lost for b
    outcome = report(client, [], adopt("w1", known=(a.step_run_id,)))
    [adopted] = outcome.adopted
    assert (adopted.step_run_id, adopted.attempt, adopted.run_id) == (
        b.step_run_id,
        b.attempt,
        b.run_id,
    )
    assert adopted.kwargs == b.kwargs and outcome.claimed == []
    # Another worker's attempts are not adopted, nor those known already.
    assert report(client, [], adopt("w2")).adopted == []
    assert report(client, [], adopt("w1", known=(a.step_run_id, b.step_run_id))).adopted == []
    # The adopted attempt completes as the one it is: no second attempt.
    assert report(client, [ok(adopted, 1), ok(a, 1)]).accepted == 2
    for run_id in (first, second):
        assert client.get(run_id).steps["s0"].attempt == 1


def test_a_worker_whose_commit_answer_was_lost_runs_what_it_claimed_once(
    client: Client, monkeypatch: Any
) -> None:
    run_id = client.start(chain(4))
    worker = Worker(client, concurrency=2, poll_interval=0.01)
    real = client.store.report_and_claim
    lost = iter([False, True, False, False, True])  # the 2nd and 5th lose their answer

    def commit_then_lose_the_answer(*args: Any, **kwargs: Any) -> Any:
        outcome = real(*args, **kwargs)
        if next(lost, False):
            raise DatabaseUnavailableError("the connection was cut as it committed")
        return outcome

    monkeypatch.setattr(client.store, "report_and_claim", commit_then_lose_the_answer)

    try:
        deadline = time.monotonic() + 20
        while not client.get(run_id, with_steps=False).finished:
            assert time.monotonic() < deadline, client.get(run_id)
            with suppress(DatabaseUnavailableError):  # as the worker's loop does
                worker.tick()
            time.sleep(0.002)  # let the task threads report
    finally:
        worker.close()
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED, run
    assert {(s.step_id, s.attempt) for s in run.steps.values()} == {
        ("s0", 1),
        ("s1", 1),
        ("s2", 1),
        ("s3", 1),
    }
    starts = [e.step_id or "" for e in client.history(run_id) if e.type == "step.started"]
    assert sorted(starts) == ["s0", "s1", "s2", "s3"]
