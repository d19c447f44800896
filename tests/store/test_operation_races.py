"""Operations racing with workers, each played out deterministically on two connections
(see test_races.py): a pause and a completion, a cancel and a step finishing, the retry
of a run whose worker died. Each is run both ways round where both ways can happen."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from legato import Client, RunStatus, StepStatus, Workflow

from .helpers import by_step, claim, ok, report
from .tasks import echo, noop
from .test_races import SECOND, Held, Second, conflict_retries, statuses


@pytest.fixture
def two(db_url: str) -> Iterator[tuple[Client, Client]]:
    """Two clients on one database, each with connections of its own."""
    second_url = db_url if db_url.startswith("sqlite") else f"{db_url}?application_name={SECOND}"
    with Client(db_url) as first, Client(second_url) as second:
        yield first, second


def chain() -> Workflow:
    wf = Workflow("chain")
    a = wf.step("a", echo, x=1)
    wf.step("b", echo, x=a.output)
    return wf


def _started(client: Client) -> tuple[str, Any]:
    run_id = client.start(chain())
    [a] = claim(client, "w1")
    return run_id, a


# -- pause and a completion ------------------------------------------------------------------------


def test_a_pause_after_a_completion_holds_what_the_completion_queued(
    two: tuple[Client, Client], db_url: str
) -> None:
    first, second = two
    run_id, a = _started(first)
    completing = Held(first, "before_commit", lambda: report(first, [ok(a, 1)]))
    pausing = Second(second, lambda: second.pause(run_id))
    if db_url.startswith("sqlite"):
        pausing.assert_blocked(db_url)
    else:
        # b is queued only in the completion's snapshot: the pause, not seeing it
        # queued, holds nothing and never waits; the claims refuse b themselves.
        assert pausing.done.wait(10), "a pause waited for a completion"
    assert completing.release().accepted == 1
    pausing.wait()
    assert statuses(first, run_id) == {"a": "completed", "b": "queued"}
    assert claim(first, "w2") == []  # b is held
    first.resume(run_id)
    assert [s.step_id for s in claim(first, "w2")] == ["b"]
    assert conflict_retries(first, second) == 0


def test_a_completion_after_a_pause_queues_nothing_a_claim_takes(
    two: tuple[Client, Client], db_url: str
) -> None:
    first, second = two
    run_id, a = _started(first)
    pausing = Held(first, "before_commit", lambda: first.pause(run_id))
    completing = Second(second, lambda: report(second, [ok(a, 1)]))
    if db_url.startswith("sqlite"):
        completing.assert_blocked(db_url)
    else:
        # A completion takes no lock on its run, and the pause held nothing of b:
        # it goes through, and queues b while the run is pausing.
        assert completing.done.wait(10), "a completion waited for a pause"
    pausing.release()
    assert completing.wait().accepted == 1
    run = first.get(run_id)
    assert run.status is RunStatus.PAUSED and run.steps["b"].status is StepStatus.QUEUED
    assert claim(first, "w2") == []  # the claim itself refuses a paused run's steps
    first.resume(run_id)
    assert [s.step_id for s in claim(first, "w2")] == ["b"]


# -- cancel and a step finishing ------------------------------------------------------------------


@pytest.mark.parametrize("held_first", ["cancel", "complete"])
def test_a_cancel_and_a_step_finishing_keep_the_result_and_start_nothing(
    two: tuple[Client, Client], db_url: str, held_first: str
) -> None:
    first, second = two
    run_id, a = _started(first)

    def cancel(c: Client) -> Any:
        return c.cancel(run_id, "enough", actor="ops")

    def complete(c: Client) -> Any:
        return report(c, [ok(a, "a's output")])

    ops: list[Callable[[Client], Any]] = [cancel, complete]
    mine, theirs = ops if held_first == "cancel" else ops[::-1]
    held = Held(first, "before_commit", lambda: mine(first))
    other = Second(second, lambda: theirs(second))
    # the cancel asked a to stop (its row), the completion wrote a and b: either way
    # the second needs a row the first holds
    other.assert_blocked(db_url)
    held.release()
    other.wait()
    run = first.get(run_id)
    assert run.status is RunStatus.CANCELLED
    step = run.steps["a"]
    # it finished before its worker learned of the cancel: its result is kept
    assert (step.status, step.output) == (StepStatus.COMPLETED, "a's output")
    assert run.steps["b"].status is StepStatus.CANCELLED
    assert claim(first, "w2") == []


def test_an_attempt_that_stops_after_the_cancel_is_recorded_cancelled(client: Client) -> None:
    from dataclasses import replace

    run_id, a = _started(client)
    client.cancel(run_id)
    beat = client.store.extend_leases("w1", [a.step_run_id], 30)
    assert beat.stop_requested == {a.step_run_id}
    assert client.get(run_id).steps["a"].stop_requested
    outcome = report(client, [replace(ok(a, "partial"), stopped=True)])
    assert outcome.accepted == 1
    step = client.get(run_id).steps["a"]
    assert (step.status, step.output) == (StepStatus.CANCELLED, "partial")
    assert step.error is not None and step.error.type == "Cancelled"


# -- retry of a run whose worker died ------------------------------------------------------


def dies() -> Workflow:
    wf = Workflow("dies")
    a = wf.step("a", noop)
    wf.step("b", echo, x=2, needs=[a], max_lost_attempts=1)
    return wf


def test_a_retry_waits_for_the_sweep_that_fails_the_dead_workers_step(
    two: tuple[Client, Client], db_url: str
) -> None:
    first, second = two
    run_id = first.start(dies())
    [a] = claim(first, "w1")
    report(first, [ok(a)])
    [b] = claim(first, "w1", lease=5)  # then w1 is killed
    first.store.clock.advance(6)  # type: ignore[attr-defined]
    sweeping = Held(first, "before_commit", lambda: claim(first, "w2", sweep=True))
    retrying = Second(second, lambda: second.retry(run_id, actor="ops"))
    retrying.assert_blocked(db_url)  # on the run's row the sweep holds
    assert sweeping.release() == []  # b failed for good: its lost-worker budget spent
    assert retrying.wait() == ["b"]
    [again] = by_step(claim(first, "w2")).values()
    assert (again.step_id, again.attempt, again.kwargs) == ("b", 2, {"x": 2})
    # the dead worker comes back and reports its attempt: too late, refused
    late = report(first, [ok(b, "from w1")])
    assert late.stale and late.accepted == 0
    report(first, [ok(again, "from w2")])
    run = first.get(run_id)
    assert run.status is RunStatus.COMPLETED
    first_try, second_try = run.steps["b"].attempts
    assert (first_try.number, first_try.status, second_try.status) == (1, "failed", "completed")
    assert first_try.error is not None and first_try.error.type == "LeaseExpired"
