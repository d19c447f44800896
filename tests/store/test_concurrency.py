"""Many claimers and reporters at once: no step twice, fan-ins released exactly once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from legato import Client, RunStatus, StepStatus, Workflow

from .helpers import claim, ok, report
from .tasks import noop


def run_threads(n: int, target: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    return results


def wide(width: int) -> Workflow:
    wf = Workflow(f"wide_{width}")
    start = wf.step("start", noop)
    middle = [wf.step(f"m{i}", noop, needs=[start]) for i in range(width)]
    wf.step("end", noop, needs=middle)
    return wf


def test_concurrent_claimers_never_share_a_step(db_url: str) -> None:
    wf = Workflow("many_roots")
    for i in range(60):
        wf.step(f"s{i}", noop)
    clients = [Client(db_url) for _ in range(4)]
    try:
        run_id = clients[0].start(wf)

        def claimer(i: int) -> list[str]:
            got: list[str] = []
            while batch := claim(clients[i], f"w{i}", limit=3):
                got += [s.step_id for s in batch]
            return got

        claimed = run_threads(4, claimer)
    finally:
        for c in clients:
            c.close()
    everything = [step for got in claimed for step in got]
    assert sorted(everything) == sorted(f"s{i}" for i in range(60))
    with Client(db_url) as client:
        run = client.get(run_id)
        assert {s.attempt for s in run.steps.values()} == {1}
        started = [e for e in client.history(run_id) if e.type == "step.started"]
        assert len(started) == 60
        assert [e.type for e in client.history(run_id)].count("run.started") == 1


def test_concurrent_completions_release_the_fan_in_once(db_url: str) -> None:
    width = 24
    clients = [Client(db_url) for _ in range(4)]
    try:
        run_id = clients[0].start(wide(width))
        report(clients[0], [ok(claim(clients[0])[0])])
        middle = claim(clients[0], limit=width)
        assert len(middle) == width
        shares = [middle[i::4] for i in range(4)]

        def completer(i: int) -> int:
            accepted = 0
            for step in shares[i]:
                accepted += report(clients[i], [ok(step)]).accepted
            return accepted

        assert sum(run_threads(4, completer)) == width
    finally:
        for c in clients:
            c.close()
    with Client(db_url) as client:
        run = client.get(run_id)
        assert run.steps["end"].status is StepStatus.QUEUED
        assert run.steps_done == width + 1
        queued = [e for e in client.history(run_id) if e.type == "step.queued"]
        assert [e.step_id for e in queued].count("end") == 1
        [end] = claim(client)
        report(client, [ok(end)])
        assert client.get(run_id).status is RunStatus.COMPLETED


def test_concurrent_starts_with_one_idempotency_key(db_url: str) -> None:
    clients = [Client(db_url) for _ in range(4)]
    wf = wide(2)
    try:
        ids = run_threads(4, lambda i: clients[i].start(wf, idempotency_key="same"))
    finally:
        for c in clients:
            c.close()
    assert len(set(ids)) == 1
    with Client(db_url) as client:
        assert [r.id for r in client.list_runs()] == ids[:1]
