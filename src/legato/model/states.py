"""Run and step statuses, and the one table of transitions allowed between them.

Stores guard every status write with the expected current status; this table
is what the planner consults and what the tests check every write against.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "RUN_MOVES",
    "RUN_REOPENINGS",
    "RUN_TRANSITIONS",
    "STEP_TRANSITIONS",
    "RunStatus",
    "StepStatus",
    "can_run_transition",
    "can_step_transition",
]


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in _RUN_FINISHED


class StepStatus(StrEnum):
    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in _STEP_FINISHED


_RUN_FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
_STEP_FINISHED = frozenset(
    {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}
)

#: what a run's status does by itself (as its steps or its creator move it)
RUN_MOVES: frozenset[tuple[RunStatus, RunStatus]] = frozenset(
    {
        (RunStatus.PENDING, RunStatus.RUNNING),
        (RunStatus.PENDING, RunStatus.COMPLETED),  # a run whose steps were all skipped
        (RunStatus.PENDING, RunStatus.FAILED),
        (RunStatus.PENDING, RunStatus.CANCELLED),
        (RunStatus.RUNNING, RunStatus.COMPLETED),
        (RunStatus.RUNNING, RunStatus.FAILED),
        (RunStatus.RUNNING, RunStatus.CANCELLED),
        (RunStatus.RUNNING, RunStatus.PAUSED),
        (RunStatus.PENDING, RunStatus.PAUSED),  # paused before a worker took it
        (RunStatus.PAUSED, RunStatus.RUNNING),
        (RunStatus.PAUSED, RunStatus.CANCELLED),
        # what was running when it paused finished it (its last step, or a failure)
        (RunStatus.PAUSED, RunStatus.COMPLETED),
        (RunStatus.PAUSED, RunStatus.FAILED),
    }
)
#: a finished run set going again by an operator: retried, rerun from a step or restarted
RUN_REOPENINGS: frozenset[tuple[RunStatus, RunStatus]] = frozenset(
    {
        (RunStatus.FAILED, RunStatus.RUNNING),
        (RunStatus.CANCELLED, RunStatus.RUNNING),
        (RunStatus.COMPLETED, RunStatus.RUNNING),
    }
)
#: what a run's status may do: on its own (the moves above), or reopened by an operator
RUN_TRANSITIONS: frozenset[tuple[RunStatus, RunStatus]] = RUN_MOVES | RUN_REOPENINGS

STEP_TRANSITIONS: frozenset[tuple[StepStatus, StepStatus]] = frozenset(
    {
        (StepStatus.WAITING, StepStatus.QUEUED),
        (StepStatus.WAITING, StepStatus.SKIPPED),
        (StepStatus.WAITING, StepStatus.CANCELLED),
        # kinds no worker runs: a compound opens its scope (running), a sleep or a
        # wait suspends, set_vars completes at once, a decision that fails fails
        (StepStatus.WAITING, StepStatus.RUNNING),
        (StepStatus.WAITING, StepStatus.SUSPENDED),
        (StepStatus.WAITING, StepStatus.COMPLETED),
        (StepStatus.WAITING, StepStatus.FAILED),
        (StepStatus.QUEUED, StepStatus.RUNNING),
        (StepStatus.QUEUED, StepStatus.CANCELLED),
        # no worker claimed it within its schedule-to-start timeout, no retry left
        (StepStatus.QUEUED, StepStatus.FAILED),
        (StepStatus.RUNNING, StepStatus.COMPLETED),
        (StepStatus.RUNNING, StepStatus.FAILED),
        (StepStatus.RUNNING, StepStatus.QUEUED),  # a failed attempt that will be retried
        (StepStatus.RUNNING, StepStatus.SUSPENDED),
        (StepStatus.RUNNING, StepStatus.CANCELLED),
        (StepStatus.SUSPENDED, StepStatus.QUEUED),
        (StepStatus.SUSPENDED, StepStatus.COMPLETED),
        (StepStatus.SUSPENDED, StepStatus.FAILED),
        (StepStatus.SUSPENDED, StepStatus.CANCELLED),
        # skipped by request (its output given): a step not yet run, or one that failed
        (StepStatus.QUEUED, StepStatus.COMPLETED),
        (StepStatus.FAILED, StepStatus.COMPLETED),
        # a run retried or rerun: a step goes back to waiting, a compound that had
        # opened its scope runs on with what it holds
        (StepStatus.FAILED, StepStatus.WAITING),
        (StepStatus.CANCELLED, StepStatus.WAITING),
        (StepStatus.SKIPPED, StepStatus.WAITING),
        (StepStatus.COMPLETED, StepStatus.WAITING),
        (StepStatus.FAILED, StepStatus.RUNNING),
        (StepStatus.CANCELLED, StepStatus.RUNNING),
        (StepStatus.COMPLETED, StepStatus.RUNNING),
    }
)


def can_run_transition(old: RunStatus | str, new: RunStatus | str) -> bool:
    return (RunStatus(old), RunStatus(new)) in RUN_TRANSITIONS


def can_step_transition(old: StepStatus | str, new: StepStatus | str) -> bool:
    return (StepStatus(old), StepStatus(new)) in STEP_TRANSITIONS
