"""Step attempts' log lines in the store: written with heartbeats and reports, never twice,
never for a step run that is gone, read by run, step, attempt and cursor."""

from __future__ import annotations

import time

import pytest

from legato import Client, ParamError, Workflow
from legato.store.base import LogEntry

from .helpers import claim, count, ok
from .tasks import echo

TASKS = ("store_suite.echo",)


def lines(step_run_id: int, attempt: int, seqs: range, level: str = "INFO") -> list[LogEntry]:
    return [
        LogEntry(step_run_id, attempt, seq, time.time(), level, "app", f"line {seq}")
        for seq in seqs
    ]


def test_a_heartbeat_and_a_report_write_lines_and_a_repeat_writes_nothing(client: Client) -> None:
    wf = Workflow("logged")
    wf.step("a", echo, x=1)
    run_id = client.start(wf)
    [a] = claim(client, tasks=TASKS)
    client.store.extend_leases("w1", [a.step_run_id], 30, logs=lines(a.step_run_id, 1, range(1, 4)))
    # the same lines again (a write whose commit's answer was lost), and the rest with the result
    client.store.extend_leases("w1", [a.step_run_id], 30, logs=lines(a.step_run_id, 1, range(1, 4)))
    outcome = client.store.report_and_claim(
        [ok(a, 1)], worker_id="w1", logs=lines(a.step_run_id, 1, range(4, 6))
    )
    assert outcome.accepted == 1
    stored = client.logs(run_id)
    assert [(x.step_id, x.attempt, x.seq, x.message) for x in stored] == [
        ("a", 1, n, f"line {n}") for n in range(1, 6)
    ]
    assert client.get(run_id).status.value == "completed"


def test_lines_of_a_step_run_that_is_gone_are_skipped(client: Client) -> None:
    wf = Workflow("gone")
    wf.step("a", echo, x=1)
    client.start(wf)
    [a] = claim(client, tasks=TASKS)
    client.store.extend_leases(
        "w1", [a.step_run_id], 30, logs=lines(a.step_run_id + 999, 1, range(1, 3))
    )
    assert count(client.store, "step_logs") == 0


def test_reads_narrow_by_step_attempt_and_cursor(client: Client) -> None:
    wf = Workflow("narrowed")
    wf.step("a", echo, x=1)
    wf.step("b", echo, x=2)
    run_id = client.start(wf)
    a, b = sorted(claim(client, tasks=TASKS), key=lambda s: s.step_id)
    client.store.extend_leases(
        "w1",
        [a.step_run_id, b.step_run_id],
        30,
        logs=lines(a.step_run_id, 1, range(1, 3))
        + lines(b.step_run_id, 1, range(1, 4), "stdout")
        + lines(a.step_run_id, 2, range(1, 2)),
    )
    assert len(client.logs(run_id)) == 6
    assert [x.seq for x in client.logs(run_id, "a")] == [1, 2, 1]
    assert [x.seq for x in client.logs(run_id, "a", attempt=2)] == [1]
    assert {x.level for x in client.logs(run_id, "b")} == {"stdout"}
    first = client.logs(run_id, limit=2)
    assert client.logs(run_id, after=first[-1].id, limit=10) == client.logs(run_id)[2:]
    with pytest.raises(ParamError, match=r"has no step 'c'"):
        client.logs(run_id, "c")
