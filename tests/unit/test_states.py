"""The one table of allowed status transitions."""

from __future__ import annotations

import itertools

import pytest

from legato.model.states import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    RunStatus,
    StepStatus,
    can_run_transition,
    can_step_transition,
)

R = RunStatus
S = StepStatus

ALLOWED_RUN = {
    (R.PENDING, R.RUNNING),
    (R.PENDING, R.COMPLETED),
    (R.PENDING, R.FAILED),
    (R.PENDING, R.CANCELLED),
    (R.RUNNING, R.COMPLETED),
    (R.RUNNING, R.FAILED),
    (R.RUNNING, R.CANCELLED),
    (R.RUNNING, R.PAUSED),
    (R.PENDING, R.PAUSED),
    (R.PAUSED, R.RUNNING),
    (R.PAUSED, R.CANCELLED),
    (R.PAUSED, R.COMPLETED),  # its last running step finished while it was paused
    (R.PAUSED, R.FAILED),
    (R.FAILED, R.RUNNING),  # retried, rerun or restarted
    (R.CANCELLED, R.RUNNING),
    (R.COMPLETED, R.RUNNING),  # rerun or restarted
}

ALLOWED_STEP = {
    (S.WAITING, S.QUEUED),
    (S.WAITING, S.SKIPPED),
    (S.WAITING, S.CANCELLED),
    (S.WAITING, S.RUNNING),  # a compound (map, loop, switch) opening its scope
    (S.WAITING, S.SUSPENDED),  # a sleep, a signal wait, a sub-workflow
    (S.WAITING, S.COMPLETED),  # set_vars, or a signal already kept
    (S.WAITING, S.FAILED),  # a decision that failed (for_each gave no list)
    (S.QUEUED, S.RUNNING),
    (S.QUEUED, S.CANCELLED),
    (S.QUEUED, S.FAILED),  # schedule-to-start timeout, no retry left
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.QUEUED),
    (S.RUNNING, S.SUSPENDED),
    (S.RUNNING, S.CANCELLED),
    (S.SUSPENDED, S.QUEUED),
    (S.SUSPENDED, S.COMPLETED),
    (S.SUSPENDED, S.FAILED),
    (S.SUSPENDED, S.CANCELLED),
    (S.QUEUED, S.COMPLETED),  # skipped by request
    (S.FAILED, S.COMPLETED),
    (S.FAILED, S.WAITING),  # retried or rerun
    (S.CANCELLED, S.WAITING),
    (S.SKIPPED, S.WAITING),
    (S.COMPLETED, S.WAITING),
    (S.FAILED, S.RUNNING),  # a compound retried with what it holds
    (S.CANCELLED, S.RUNNING),
    (S.COMPLETED, S.RUNNING),
}


def test_status_values() -> None:
    assert [s.value for s in RunStatus] == [
        "pending",
        "running",
        "paused",
        "completed",
        "failed",
        "cancelled",
    ]
    assert [s.value for s in StepStatus] == [
        "waiting",
        "queued",
        "running",
        "suspended",
        "completed",
        "failed",
        "skipped",
        "cancelled",
    ]


def test_tables_are_exactly_the_allowed_pairs() -> None:
    assert set(RUN_TRANSITIONS) == ALLOWED_RUN
    assert set(STEP_TRANSITIONS) == ALLOWED_STEP


@pytest.mark.parametrize(("old", "new"), list(itertools.product(RunStatus, RunStatus)))
def test_every_run_pair(old: RunStatus, new: RunStatus) -> None:
    expected = (old, new) in ALLOWED_RUN
    assert can_run_transition(old, new) is expected
    assert can_run_transition(old.value, new.value) is expected


@pytest.mark.parametrize(("old", "new"), list(itertools.product(StepStatus, StepStatus)))
def test_every_step_pair(old: StepStatus, new: StepStatus) -> None:
    expected = (old, new) in ALLOWED_STEP
    assert can_step_transition(old, new) is expected
    assert can_step_transition(old.value, new.value) is expected


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("completed", "failed"),
        ("failed", "completed"),
        ("cancelled", "paused"),
        ("running", "pending"),
        ("completed", "pending"),
        ("running", "running"),
    ],
)
def test_forbidden_run_transitions(old: str, new: str) -> None:
    assert not can_run_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("queued", "suspended"),  # a task in the queue is taken by a worker first
        ("running", "waiting"),  # a running attempt ends before anything else
        ("completed", "queued"),
        ("skipped", "running"),
        ("cancelled", "queued"),
        ("skipped", "queued"),
        ("queued", "queued"),
    ],
)
def test_forbidden_step_transitions(old: str, new: str) -> None:
    assert not can_step_transition(old, new)


def test_finished_statuses_leave_only_to_go_on_again() -> None:
    """A finished run or step changes only when an operation sets it going again
    (retry, rerun, restart, skip), never to another final status of its own."""
    for old, new in RUN_TRANSITIONS:
        if old.finished:
            assert new is RunStatus.RUNNING, (old, new)
    for step_old, step_new in STEP_TRANSITIONS:
        if step_old.finished and step_old is not StepStatus.FAILED:
            assert step_new in (StepStatus.WAITING, StepStatus.RUNNING), (step_old, step_new)
        elif step_old.finished:  # a failed step may also be skipped with an output
            assert step_new in (StepStatus.WAITING, StepStatus.RUNNING, StepStatus.COMPLETED)


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError):
        can_run_transition("pending", "exploded")
    with pytest.raises(ValueError):
        can_step_transition("done", "queued")
