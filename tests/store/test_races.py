"""Races, each played out deterministically: two connections, explicit interleaving.

One transaction is held at a named checkpoint inside the store (its locks
taken) while a second one, on another connection, runs against it. On
PostgreSQL the test waits until the second is really blocked on a row lock
(or checks that it was not, where the rule is that it never waits); on
SQLite, where writers take turns, until it queues for the write lock. Then
the first is released and the outcome is checked. Each interleaving is run
both ways round.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from legato import Client, RunStatus, StepStatus, Worker, Workflow
from legato.store.base import ClaimRequest
from legato.worker.worker import TickResult

from .helpers import ALL_TASKS, by_step, claim, failed, ok, report
from .tasks import echo, fail, gated, gates, noop

SECOND = "legato_race_second"


class Held:
    """``operation`` run in its own thread, held at ``point`` until :meth:`release`."""

    def __init__(self, client: Client, point: str, operation: Callable[[], Any]) -> None:
        self.reached = threading.Event()
        self._go = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

        def hold() -> None:
            if threading.current_thread() is self._thread and not self.reached.is_set():
                self.reached.set()
                if not self._go.wait(30):
                    raise AssertionError(f"the transaction held at {point} was never released")

        client.store.checkpoints[point] = hold  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._run, args=(operation,), daemon=True)
        self._thread.start()
        assert self.reached.wait(30), f"the first transaction never reached {point}"

    def _run(self, operation: Callable[[], Any]) -> None:
        try:
            self.result = operation()
        except BaseException as exc:
            self.error = exc

    def release(self) -> Any:
        self._go.set()
        self._thread.join(30)
        assert not self._thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


class Second:
    """The other transaction, on its own connection, in its own thread."""

    def __init__(self, client: Client, operation: Callable[[], Any]) -> None:
        self.client = client
        self.queued_for_write = threading.Event()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

        def begin() -> None:
            if threading.current_thread() is self._thread:
                self.queued_for_write.set()

        client.store.checkpoints["begin"] = begin  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._run, args=(operation,), daemon=True)
        self._thread.start()

    def _run(self, operation: Callable[[], Any]) -> None:
        try:
            self.result = operation()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def wait(self) -> Any:
        assert self.done.wait(30), "the second transaction never finished"
        if self.error is not None:
            raise self.error
        return self.result

    def assert_blocked(self, url: str) -> None:
        """It is waiting for the first transaction: on a row lock, or SQLite's write lock."""
        if url.startswith("sqlite"):
            # It reached BEGIN IMMEDIATE while the first holds the write lock (a
            # probe cannot take it), so it queues behind the first until it commits.
            assert self.queued_for_write.wait(10)
            probe = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    probe.execute("BEGIN IMMEDIATE")
            finally:
                probe.close()
            assert not self.done.is_set()
            return
        deadline = time.monotonic() + 10
        with psycopg.connect(url, autocommit=True) as admin:
            while time.monotonic() < deadline:
                row = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = %s AND wait_event_type = 'Lock'",
                    (SECOND,),
                ).fetchone()
                if row and row[0]:
                    assert not self.done.is_set()
                    return
                assert not self.done.is_set(), "the second transaction did not wait"
                time.sleep(0.005)
        raise AssertionError("the second transaction never waited on a lock")


@pytest.fixture
def two(db_url: str) -> Iterator[tuple[Client, Client]]:
    """Two clients on one database, each with connections of its own."""
    second_url = db_url if db_url.startswith("sqlite") else f"{db_url}?application_name={SECOND}"
    with Client(db_url) as first, Client(second_url) as second:
        yield first, second


def conflict_retries(*clients: Client) -> int:
    return sum(getattr(c.store, "conflict_retries", 0) for c in clients)


def pair() -> Workflow:
    """``a`` (retried) and ``b`` (not) run side by side; ``c`` waits for both; ``d`` is queued."""
    wf = Workflow("pair")
    a = wf.step("a", echo, x=1, retry={"max_attempts": 3, "delay": 0})
    b = wf.step("b", fail)
    wf.step("c", noop, needs=[a, b])
    wf.step("d", noop)
    return wf


def start_pair(client: Client) -> tuple[str, dict[str, Any]]:
    run_id = client.start(pair())
    steps = by_step(claim(client, "w1", tasks=["store_suite.echo", "store_suite.fail"]))
    assert set(steps) == {"a", "b"}
    return run_id, steps


def statuses(client: Client, run_id: str) -> dict[str, str]:
    return {k: s.status.value for k, s in client.get(run_id).steps.items()}


# -- a retry and the run's failure ----------------------------------------------------------


@pytest.mark.parametrize("point", ["runs_locked", "before_commit"])
def test_a_retry_decided_beside_a_failure_waits_for_it_and_is_not_queued(
    two: tuple[Client, Client], db_url: str, point: str
) -> None:
    first, second = two
    run_id, steps = start_pair(first)
    failing = Held(first, point, lambda: report(first, [failed(steps["b"])]))
    retrying = Second(second, lambda: report(second, [failed(steps["a"])]))
    retrying.assert_blocked(db_url)
    assert failing.release().finished_runs == {run_id: RunStatus.FAILED}
    outcome = retrying.wait()
    assert outcome.accepted == 1 and outcome.failures[0].retry_in is None  # not retried
    run = first.get(run_id)
    assert run.status is RunStatus.FAILED and run.error is not None and run.error.step == "b"
    assert statuses(first, run_id) == {
        "a": "failed",
        "b": "failed",
        "c": "cancelled",
        "d": "cancelled",
    }
    assert run.steps["a"].failures == 1
    assert claim(first, "w2") == []
    assert "step.retrying" not in [e.type for e in first.history(run_id)]
    assert conflict_retries(first, second) == 0


@pytest.mark.parametrize("point", ["runs_locked", "before_commit"])
def test_a_failure_decided_beside_a_retry_cancels_the_retry(
    two: tuple[Client, Client], db_url: str, point: str
) -> None:
    first, second = two
    run_id, steps = start_pair(first)
    retrying = Held(first, point, lambda: report(first, [failed(steps["a"])]))
    failing = Second(second, lambda: report(second, [failed(steps["b"])]))
    failing.assert_blocked(db_url)
    [retry] = retrying.release().failures
    assert retry.retry_in == 0.0  # queued again...
    assert failing.wait().finished_runs == {run_id: RunStatus.FAILED}
    assert statuses(first, run_id)["a"] == "cancelled"  # ...and cancelled with its run
    assert claim(first, "w2") == []
    assert conflict_retries(first, second) == 0


# -- a completion and a failure --------------------------------------------------------------


@pytest.mark.parametrize("point", ["runs_locked", "before_commit"])
@pytest.mark.parametrize("held_first", ["complete", "fail"])
def test_a_completion_and_a_failure_in_one_run_neither_deadlock_nor_lose_either(
    two: tuple[Client, Client], db_url: str, point: str, held_first: str
) -> None:
    first, second = two
    wf = Workflow("both")
    a = wf.step("a", echo, x=1)
    b = wf.step("b", fail)
    wf.step("after_a", noop, needs=[a])
    wf.step("after_b", noop, needs=[b])
    run_id = first.start(wf)
    steps = by_step(claim(first, "w1", tasks=["store_suite.echo", "store_suite.fail"]))
    complete = ok(steps["a"], "a's output")
    failure = failed(steps["b"])
    mine, theirs = (complete, failure) if held_first == "complete" else (failure, complete)
    held = Held(first, point, lambda: report(first, [mine]))
    other = Second(second, lambda: report(second, [theirs]))
    if db_url.startswith("sqlite") or point == "before_commit":
        # Held after its writes, the first holds after_a's row, which the second
        # must touch too (release it, or cancel it): it waits, and nothing cycles.
        other.assert_blocked(db_url)
    else:
        # A completion locks nothing of its run; the failure holds only the run's
        # row, which a completion never asks for: neither waits for the other.
        assert other.done.wait(10), "one waited for the other"
    held.release()
    other.wait()
    run = first.get(run_id)
    assert run.status is RunStatus.FAILED
    assert (run.steps["a"].status, run.steps["a"].output) == (StepStatus.COMPLETED, "a's output")
    assert run.steps["b"].status is StepStatus.FAILED
    # after_a was queued by the completion or never queued; either way the failure cancels it
    assert statuses(first, run_id)["after_a"] == "cancelled"
    assert statuses(first, run_id)["after_b"] == "cancelled"
    assert conflict_retries(first, second) == 0


# -- claims ----------------------------------------------------------------------------------


def test_a_claim_beside_a_finishing_run_takes_nothing_it_cancels(
    two: tuple[Client, Client], db_url: str
) -> None:
    first, second = two
    run_id, steps = start_pair(first)  # d is queued
    failing = Held(first, "before_commit", lambda: report(first, [failed(steps["b"])]))
    claiming = Second(second, lambda: claim(second, "w2"))
    if db_url.startswith("sqlite"):
        claiming.assert_blocked(db_url)
    else:
        # Claims never wait: d's row is locked by the failure, so it is skipped.
        assert claiming.done.wait(10), "a claim waited for a lock"
    failing.release()
    assert claiming.wait() == []
    assert statuses(first, run_id)["d"] == "cancelled"


def test_a_claim_beside_a_failure_goes_wholly_before_or_wholly_after_it(
    two: tuple[Client, Client], db_url: str
) -> None:
    """Held before it locks anything, a failure lets a claim through on PostgreSQL.

    The claim then comes first: d started while its run still ran, and its
    result is recorded when it finishes. On SQLite writers take turns, so the
    failure, which began first, goes first and the claim finds d cancelled.
    Either way nothing starts after the failure commits.
    """
    first, second = two
    run_id, steps = start_pair(first)
    failing = Held(first, "runs_locked", lambda: report(first, [failed(steps["b"])]))
    claiming = Second(second, lambda: claim(second, "w2"))
    if db_url.startswith("sqlite"):
        claiming.assert_blocked(db_url)
        failing.release()
        assert claiming.wait() == []  # the failure went first and cancelled d
        assert statuses(first, run_id)["d"] == "cancelled"
        return
    assert claiming.done.wait(10), "a claim waited for a lock"
    [d] = claiming.wait()
    assert d.step_id == "d"
    failing.release()
    assert statuses(first, run_id)["d"] == "running"
    assert report(first, [ok(d, "finished late")]).accepted == 1
    assert first.get(run_id).steps["d"].output == "finished late"
    assert first.get(run_id).status is RunStatus.FAILED


def test_a_run_whose_first_claim_rolled_back_is_started_by_the_next(
    two: tuple[Client, Client],
) -> None:
    first, _ = two
    run_id = first.start(pair())
    calls: list[int] = []

    def roll_back_once() -> None:
        if not calls:
            calls.append(1)
            raise RuntimeError("the connection broke before the commit")

    first.store.checkpoints["before_commit"] = roll_back_once  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        claim(first, "w1")
    assert first.get(run_id).status is RunStatus.PENDING
    assert len(claim(first, "w1")) == 3
    run = first.get(run_id)
    assert run.status is RunStatus.RUNNING and run.started_at is not None
    assert [e.type for e in first.history(run_id)].count("run.started") == 1


def test_a_pending_run_with_a_step_reported_is_started_by_the_report(
    two: tuple[Client, Client],
) -> None:
    """However a claim came to skip marking its run started, the first report does it.

    The report comes from another process (another client: it has not seen the
    run started), as a worker elsewhere would send it.
    """
    first, second = two
    run_id = first.start(pair())
    [a] = claim(first, "w1", tasks=["store_suite.echo"])
    _force_pending(first, run_id)
    report(second, [ok(a, 1)])
    run = first.get(run_id)
    assert run.status is RunStatus.RUNNING and run.started_at is not None


def _force_pending(client: Client, run_id: str) -> None:
    from .helpers import sql

    sql(client.store, "UPDATE runs SET status = 'pending', started_at = NULL WHERE id = ?", run_id)


# -- the sweep and a late result -------------------------------------------------------------


def test_a_result_that_lands_while_the_sweep_reads_its_candidates_is_kept(
    two: tuple[Client, Client], db_url: str
) -> None:
    first, second = two
    wf = Workflow("late")
    wf.step("a", echo, x=1)
    run_id = first.start(wf)
    [a] = claim(first, "w1", lease=5)
    first.store.clock.advance(6)  # expired for the sweeper; w1 does not know yet
    sweep = ClaimRequest("w2", ("default",), ALL_TASKS, 10, 30, sweep=True)
    sweeping = Held(first, "sweep_candidates", lambda: report(first, [], sweep))
    late = ok(a, "from w1")
    reporting = Second(second, lambda: report(second, [late]))
    if db_url.startswith("sqlite"):
        # Writers take turns: the sweep, which began first, goes first.
        reporting.assert_blocked(db_url)
        assert sweeping.release().reclaimed == 1
        assert reporting.wait().stale == [late]
        return
    # The sweep holds no lock while it reads candidates: the result lands first...
    assert reporting.wait().accepted == 1
    # ...and the sweep, checking each candidate again under its locks, leaves it be.
    outcome = sweeping.release()
    assert outcome.reclaimed == 0 and outcome.claimed == []
    step = first.get(run_id).steps["a"]
    assert (step.status, step.output, step.lost) == (StepStatus.COMPLETED, "from w1", 0)


def test_a_result_that_arrives_while_the_sweep_reclaims_its_attempt_is_stale(
    two: tuple[Client, Client], db_url: str
) -> None:
    first, second = two
    wf = Workflow("late")
    wf.step("a", echo, x=1)
    run_id = first.start(wf)
    [a] = claim(first, "w1", lease=5)
    first.store.clock.advance(6)
    sweep = ClaimRequest("w2", ("default",), ALL_TASKS, 10, 30, sweep=True)
    sweeping = Held(first, "before_commit", lambda: report(first, [], sweep))
    late = ok(a, "from w1")
    reporting = Second(second, lambda: report(second, [late]))
    reporting.assert_blocked(db_url)
    outcome = sweeping.release()
    assert outcome.reclaimed == 1 and [c.attempt for c in outcome.claimed] == [2]
    assert reporting.wait().stale == [late]
    step = first.get(run_id).steps["a"]
    assert (step.status, step.attempt, step.output, step.lost) == ("running", 2, None, 1)


# -- heartbeats ------------------------------------------------------------------------------


def test_a_heartbeat_never_waits_for_a_report(two: tuple[Client, Client], db_url: str) -> None:
    first, second = two
    wf = Workflow("beats")
    wf.step("a", echo, x=1)
    wf.step("b", echo, x=2)
    first.start(wf)
    steps = by_step(claim(first, "w1"))
    held = Held(first, "before_commit", lambda: report(first, [ok(steps["a"], 1)]))
    ids = [steps["a"].step_run_id, steps["b"].step_run_id]
    beat = Second(second, lambda: second.store.extend_leases("w1", ids, 30).renewed)
    if db_url.startswith("sqlite"):
        beat.assert_blocked(db_url)
        held.release()
        assert beat.wait() == 1  # a had completed by then
    else:
        assert beat.done.wait(5), "a heartbeat waited for a report"
        assert beat.wait() == 1  # b renewed; a, locked by the report, skipped
        held.release()


# -- the worker's own bookkeeping -----------------------------------------------------------


def test_a_late_result_of_an_old_attempt_keeps_the_current_attempts_result(
    client: Client,
) -> None:
    """The same worker runs attempts 1 and 2 of one step; 1 reports after 2 started."""
    key = f"late-{time.monotonic_ns()}"
    wf = Workflow("twice")
    wf.step("g", gated, key=key)
    run_id = client.start(wf)
    worker = Worker(client, worker_id="w1", lease=5, sweep_interval=0, concurrency=2)
    try:
        worker.tick()  # claims attempt 1
        assert gates.entered(key, 1)
        client.store.clock.advance(6)  # its lease lapses (no heartbeats outside run())
        worker.tick()  # the sweep loses attempt 1 and the same tick claims attempt 2
        assert gates.entered(key, 2)
        assert client.get(run_id).steps["g"].attempt == 2
        gates.open(key, 1)  # attempt 1 returns now, late
        _tick_until(worker, lambda tick: tick.stale == 1)
        gates.open(key, 2)
        _tick_until(worker, lambda tick: run_id in tick.finished_runs)
    finally:
        gates.open(key, 1)
        gates.open(key, 2)
        worker.close()
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["g"].output == "call 2"
    assert [(a.number, a.status) for a in run.steps["g"].attempts] == [
        (1, "lost"),
        (2, "completed"),
    ]


def _tick_until(worker: Worker, done: Callable[[TickResult], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not done(worker.tick()):
        assert time.monotonic() < deadline, "timed out"
        worker._wait()  # sleeps until a result arrives (or the poll interval)
