"""Sleep steps on each backend: durable timers that hold no worker and fire after restarts.

The store is driven directly (``claim`` with a sweep) and time is moved with
``client.store.clock.advance`` wherever the order of things matters; only the
tests about a real worker waking for its timer wait in real time, and those
poll with a deadline.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import legato
from legato import Client, Run, RunStatus, StepStatus, Worker, Workflow
from legato.store.base import ClaimedStep, ClaimRequest
from store.helpers import claim, ok, report

from .tasks_waits import ALL_TASKS, echo, tag


def grab(client: Client, *, sweep: bool = False) -> list[ClaimedStep]:
    """Claim whatever of this suite's tasks is queued (a sweep also fires due timers)."""
    return claim(client, tasks=ALL_TASKS, sweep=sweep)


def grab_with_timers(client: Client) -> list[ClaimedStep]:
    """A claim that fires due timers without sweeping leases: what a worker sends when a
    timer it was told of falls due."""
    return report(
        client,
        [],
        ClaimRequest(
            worker_id="w1", queues=("default",), tasks=ALL_TASKS, limit=100, lease=30, timers=True
        ),
    ).claimed


def keys(steps: list[ClaimedStep]) -> list[str]:
    return sorted(s.step_id for s in steps)


def event_types(client: Client, run_id: str, step_id: str) -> list[str]:
    return [e.type for e in client.history(run_id) if e.step_id == step_id]


def finish(client: Client, steps: list[ClaimedStep], output: Any = "done") -> None:
    assert report(client, [ok(s, output) for s in steps]).accepted == len(steps)


def drive(client: Client, run_id: str, worker: Worker, timeout: float = 2.5) -> Run:
    """Tick ``worker`` until the run finishes; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.tick()
        if client.get(run_id, with_steps=False).finished:
            worker.tick()  # report whatever still runs
            return client.get(run_id)
        time.sleep(0.005)  # let the task threads report
    raise AssertionError(f"run did not finish within {timeout}s: {client.get(run_id)!r}")


def napping(duration: Any = None, *, until: Any = None, name: str = "napping") -> Workflow:
    """``nap`` (a sleep), then ``after`` reading the sleep's output."""
    wf = Workflow(name)
    nap = wf.sleep("nap", duration, until=until)
    wf.step("after", tag, label="after", x=nap.output)
    return wf


def wake_seconds(client: Client, run_id: str, step_id: str = "nap") -> float:
    step = client.get(run_id).steps[step_id]
    assert step.status is StepStatus.SUSPENDED, step
    assert step.waiting_for == "timer"
    assert step.wake_at is not None
    return step.wake_at.timestamp()


# -- by duration ------------------------------------------------------------------------------


def test_a_sleep_suspends_on_a_timer_and_fires_only_once_its_time_has_passed(
    client: Client,
) -> None:
    before = client.store.clock.now()
    run_id = client.start(napping("10m"))
    after = client.store.clock.now()
    run = client.get(run_id)
    nap = run.steps["nap"]
    assert run.status is RunStatus.RUNNING
    assert (nap.status, nap.waiting_for, nap.kind) == (StepStatus.SUSPENDED, "timer", "sleep")
    assert nap.wake_at is not None
    assert before + 600 - 1 <= nap.wake_at.timestamp() <= after + 600 + 1
    assert run.steps["after"].status is StepStatus.WAITING

    assert grab(client, sweep=True) == []  # not yet
    client.store.clock.advance(590)
    assert grab(client, sweep=True) == []  # ten seconds short: still not
    assert client.get(run_id).steps["nap"].status is StepStatus.SUSPENDED
    assert client.get(run_id).steps["after"].status is StepStatus.WAITING

    client.store.clock.advance(15)
    steps = grab(client, sweep=True)  # fires the timer and claims what it released
    assert keys(steps) == ["after"]
    assert steps[0].kwargs == {"label": "after", "x": None}  # a sleep outputs nothing
    run = client.get(run_id)
    assert run.steps["nap"].status is StepStatus.COMPLETED
    assert run.steps["nap"].output is None
    assert run.steps["nap"].wake_at is None  # the timer is gone
    finish(client, steps, "awake")
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["after"].output == "awake"
    assert event_types(client, run_id, "nap") == ["step.suspended", "step.completed"]


def test_a_sleep_holds_no_worker(client: Client) -> None:
    wf = Workflow("sleep_alongside")
    nap = wf.sleep("nap", "1h")
    wf.step("busy", echo, x="busy")  # runs while the sleep waits
    wf.step("after", echo, x="after", needs=[nap])
    run_id = client.start(wf)
    # the only thing a worker gets is the task step: nothing is claimed for the sleep
    steps = grab(client, sweep=True)
    assert keys(steps) == ["busy"]
    sleeping = client.get(run_id).steps["nap"]
    assert sleeping.worker is None and sleeping.attempt == 0 and sleeping.attempts == ()
    assert "step.queued" not in event_types(client, run_id, "nap")
    assert "step.started" not in event_types(client, run_id, "nap")
    finish(client, steps)
    assert grab(client, sweep=True) == []

    # a worker with one slot runs the other step to the end while the sleep waits
    wf2 = Workflow("sleep_one_slot")
    nap2 = wf2.sleep("nap", "1h")
    wf2.step("busy", echo, x="busy")
    wf2.step("busy2", echo, x="busy2")
    wf2.step("after", echo, x="after", needs=[nap2])
    run2 = client.start(wf2)
    worker = Worker(client, concurrency=1, root_run_id=run2, poll_interval=0.01)
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            worker.tick()
            steps2 = client.get(run2).steps
            if steps2["busy"].status is steps2["busy2"].status is StepStatus.COMPLETED:
                break
            time.sleep(0.005)
        steps2 = client.get(run2).steps
        assert steps2["busy"].status is StepStatus.COMPLETED
        assert steps2["busy2"].status is StepStatus.COMPLETED
        assert steps2["nap"].status is StepStatus.SUSPENDED
        assert worker.idle  # its one slot is free: the sleep is not in it
    finally:
        worker.close()


def test_a_sleep_in_the_middle_of_a_run_starts_when_it_is_reached(client: Client) -> None:
    wf = Workflow("sleep_middle")
    first = wf.step("first", echo, x=1)
    nap = wf.sleep("nap", 30, needs=[first])
    wf.step("after", echo, x=2, needs=[nap])
    run_id = client.start(wf)
    assert client.get(run_id).steps["nap"].status is StepStatus.WAITING
    [step] = grab(client)
    client.store.clock.advance(100)  # time before the sleep is reached does not count
    before = client.store.clock.now()
    finish(client, [step])
    assert before + 29 <= wake_seconds(client, run_id) <= client.store.clock.now() + 31
    assert grab(client, sweep=True) == []
    client.store.clock.advance(31)
    assert keys(grab(client, sweep=True)) == ["after"]


def test_a_sleep_duration_from_an_expression(client: Client) -> None:
    wf = Workflow("sleep_expr")
    wf.param("wait")
    nap = wf.sleep("nap", "${{ params.wait }}")
    wf.step("after", echo, x=1, needs=[nap])
    before = client.store.clock.now()
    run_id = client.start(wf, {"wait": "1h30m"})
    assert before + 5400 - 1 <= wake_seconds(client, run_id) <= client.store.clock.now() + 5401
    client.store.clock.advance(5390)
    assert grab(client, sweep=True) == []
    client.store.clock.advance(20)
    assert keys(grab(client, sweep=True)) == ["after"]


# -- until --------------------------------------------------------------------------------------


def test_a_sleep_until_an_iso_time_with_a_zone(client: Client) -> None:
    target = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    in_zone = target.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    assert "+05:30" in in_zone
    run_id = client.start(napping(until=in_zone))
    assert wake_seconds(client, run_id) == pytest.approx(target.timestamp(), abs=0.01)
    client.store.clock.advance(2 * 3600 - 60)
    assert grab(client, sweep=True) == []
    client.store.clock.advance(120)
    assert keys(grab(client, sweep=True)) == ["after"]
    assert client.get(run_id).steps["nap"].status is StepStatus.COMPLETED


def test_a_sleep_until_a_z_time(client: Client) -> None:
    target = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    text = target.strftime("%Y-%m-%dT%H:%M:%SZ")
    run_id = client.start(napping(until=text))
    assert wake_seconds(client, run_id) == pytest.approx(target.timestamp(), abs=0.01)


def test_a_sleep_until_seconds_since_the_epoch(client: Client) -> None:
    target = round(client.store.clock.now()) + 120.5
    run_id = client.start(napping(until=target))
    assert wake_seconds(client, run_id) == pytest.approx(target, abs=0.01)
    assert grab(client, sweep=True) == []
    client.store.clock.advance(130)
    assert keys(grab(client, sweep=True)) == ["after"]


def test_a_sleep_until_read_from_a_param(client: Client) -> None:
    wf = Workflow("until_param")
    wf.param("at")
    nap = wf.sleep("nap", until=wf.param("at"))  # a reference
    wf.sleep("nap2", until="${{ params.at }}")  # the same, written as an expression
    wf.step("after", echo, x=1, needs=[nap])
    target = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    run_id = client.start(wf, {"at": target.isoformat()})
    assert wake_seconds(client, run_id, "nap") == pytest.approx(target.timestamp(), abs=0.01)
    assert wake_seconds(client, run_id, "nap2") == pytest.approx(target.timestamp(), abs=0.01)
    # a number given as the param works too
    run2 = client.start(wf, {"at": target.timestamp() + 60})
    assert wake_seconds(client, run2) == pytest.approx(target.timestamp() + 60, abs=0.01)
    client.store.clock.advance(11 * 60 + 30)
    steps = grab(client, sweep=True)
    assert sorted((s.run_id, s.step_id) for s in steps) == sorted(
        [(run_id, "after"), (run2, "after")]
    )


def test_a_sleep_until_a_time_already_past_completes_at_once(client: Client) -> None:
    run_id = client.start(napping(until="2020-01-01T00:00:00Z"))
    # the very first claim that looks at timers fires it: no time has to pass
    steps = grab_with_timers(client)
    assert keys(steps) == ["after"]
    assert client.get(run_id).steps["nap"].status is StepStatus.COMPLETED
    finish(client, steps)
    assert client.get(run_id).status is RunStatus.COMPLETED


def test_a_sleep_until_a_time_already_past_does_not_wait_in_a_real_run(db_url: str) -> None:
    wf = Workflow("past_real")
    first = wf.step("first", echo, x=1)
    nap = wf.sleep("nap", until=0, needs=[first])  # 1970
    wf.step("after", echo, x=2, needs=[nap])
    started = time.monotonic()
    run = legato.run(wf, url=db_url, timeout=5)
    elapsed = time.monotonic() - started
    assert run.status is RunStatus.COMPLETED
    assert run.steps["after"].output == 2
    assert elapsed < 1.0, elapsed


def test_a_zero_duration_sleep_does_not_wait(db_url: str) -> None:
    wf = Workflow("zero_nap")
    first = wf.step("first", echo, x=1)
    nap = wf.sleep("nap", "0s", needs=[first])
    wf.step("after", echo, x=2, needs=[nap])
    started = time.monotonic()
    run = legato.run(wf, url=db_url, timeout=5)
    assert run.status is RunStatus.COMPLETED
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("until", "expected"),
    [
        ("not a time", "until must give an ISO 8601 time or seconds since the epoch"),
        ("2026-01-01T00:00:00", "has no time zone"),
        (True, "until must give a time"),
    ],
)
def test_a_bad_until_fails_the_step_naming_it(client: Client, until: Any, expected: str) -> None:
    run_id = client.start(napping(until=until))
    run = client.get(run_id)
    nap = run.steps["nap"]
    assert nap.status is StepStatus.FAILED
    assert nap.error is not None
    assert nap.error.type == "TemplateError"
    assert "step 'nap'" in nap.error.message
    assert expected in nap.error.message
    assert run.status is RunStatus.FAILED
    assert run.error is not None and "'nap'" in run.error.message
    assert run.steps["after"].status is not StepStatus.COMPLETED
    assert grab(client, sweep=True) == []  # nothing runs after it


def test_a_bad_until_from_a_param_fails_when_the_step_is_reached(client: Client) -> None:
    wf = Workflow("bad_until_param")
    wf.param("at")
    first = wf.step("first", echo, x=1)
    nap = wf.sleep("nap", until=wf.param("at"), needs=[first])
    wf.step("after", echo, x=2, needs=[nap])
    run_id = client.start(wf, {"at": "next tuesday"})
    assert client.get(run_id).status is not RunStatus.FAILED  # not reached yet
    finish(client, grab(client))
    run = client.get(run_id)
    nap_step = run.steps["nap"]
    assert nap_step.status is StepStatus.FAILED
    assert nap_step.error is not None
    assert "step 'nap'" in nap_step.error.message
    assert "'next tuesday'" in nap_step.error.message
    assert run.status is RunStatus.FAILED


def test_a_bad_duration_from_an_expression_fails_the_step_naming_it(client: Client) -> None:
    wf = Workflow("bad_duration")
    wf.param("wait")
    wf.sleep("nap", "${{ params.wait }}")
    run_id = client.start(wf, {"wait": "soonish"})
    run = client.get(run_id)
    nap = run.steps["nap"]
    assert nap.status is StepStatus.FAILED
    assert nap.error is not None
    assert "'nap'" in nap.error.message and "duration" in nap.error.message
    assert run.status is RunStatus.FAILED


# -- real workers -----------------------------------------------------------------------------


def test_a_timer_fires_after_the_worker_and_client_restart(db_url: str) -> None:
    wf = Workflow("restarted")
    first = wf.step("first", echo, x="before")
    nap = wf.sleep("nap", 0.3, needs=[first])
    wf.step("after", echo, x="after", needs=[nap])
    client = Client(db_url)
    worker = Worker(client, root_run_id=None, poll_interval=0.01)
    try:
        run_id = client.start(wf)
        deadline = time.monotonic() + 2
        while client.get(run_id).steps["nap"].status is not StepStatus.SUSPENDED:
            assert time.monotonic() < deadline, client.get(run_id)
            worker.tick()
            time.sleep(0.005)
    finally:
        worker.close()
        client.close()
    # everything that knew of the timer is gone; a new client and worker find it
    with Client(db_url) as again:
        suspended = again.get(run_id).steps["nap"]
        assert suspended.status is StepStatus.SUSPENDED and suspended.wake_at is not None
        fresh = Worker(again, poll_interval=0.01)
        try:
            run = drive(again, run_id, fresh)
        finally:
            fresh.close()
        assert run.status is RunStatus.COMPLETED
        assert run.steps["after"].output == "after"
        nap_step = run.steps["nap"]
        assert nap_step.finished_at is not None
        assert nap_step.finished_at >= suspended.wake_at  # it did not end early


def test_a_timer_fires_after_a_restart_when_its_time_passed_meanwhile(db_url: str) -> None:
    with Client(db_url) as client:
        run_id = client.start(napping(60))
        wake = wake_seconds(client, run_id)
    # a new client (its clock is the real one) sees the timer due once time has moved on
    with Client(db_url) as again:
        assert grab(again, sweep=True) == []
        again.store.clock.advance(61)
        assert again.store.clock.now() > wake
        worker = Worker(again, poll_interval=0.01)
        try:
            run = drive(again, run_id, worker)
        finally:
            worker.close()
        assert run.status is RunStatus.COMPLETED
        assert run.steps["after"].output == {"label": "after", "x": None}


def test_legato_run_wakes_for_its_timer_rather_than_its_next_sweep(db_url: str) -> None:
    started = time.monotonic()
    run = legato.run(napping(0.3), url=db_url, timeout=10)
    elapsed = time.monotonic() - started
    assert run.status is RunStatus.COMPLETED
    assert run.steps["after"].output == {"label": "after", "x": None}
    assert elapsed >= 0.3  # it did sleep
    assert elapsed < 1.5, f"a 0.3 s sleep took {elapsed:.2f}s"


def test_legato_run_wakes_for_a_timer_reached_in_the_middle_of_the_run(db_url: str) -> None:
    wf = Workflow("middle_nap")
    first = wf.step("first", echo, x=1)
    nap = wf.sleep("nap", 0.3, needs=[first])
    wf.step("after", echo, x=2, needs=[nap])
    started = time.monotonic()
    run = legato.run(wf, url=db_url, timeout=10)
    elapsed = time.monotonic() - started
    assert run.status is RunStatus.COMPLETED
    assert run.steps["after"].output == 2
    nap_step = run.steps["nap"]
    assert nap_step.started_at is not None and nap_step.finished_at is not None
    assert (nap_step.finished_at - nap_step.started_at).total_seconds() >= 0.29
    assert elapsed < 1.5, f"a 0.3 s sleep took {elapsed:.2f}s"
