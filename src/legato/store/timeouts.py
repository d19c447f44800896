"""The timeouts a sweep enforces in the database: schedule-to-start and heartbeat.

Both are judged by the store's clock in the sweep that claiming workers run
(:class:`~legato.store.reporting.Report`), so they hold when no worker serves
a step's queue (schedule-to-start), and when the worker holding an attempt
still renews its lease while its task is wedged (heartbeat). Each candidate
is locked with its run (runs first, never waiting: a busy run is left to the
next sweep) and checked again under that lock before it is failed.

Each is a timeout failure of the attempt, as Temporal counts an activity's
heartbeat timeout: it spends a retry, and is retried as the step's retry
policy says (``retry_on`` sees ``ScheduleToStartTimeout`` or
``HeartbeatTimeout``, both ``StepTimeoutError`` and ``TimeoutError``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from legato.engine.retry import RetryDecision, decide_retry, exception_names, is_retryable
from legato.errors import HeartbeatTimeout, ScheduleToStartTimeout
from legato.model.runs import StepError
from legato.model.spec import RetryPolicy
from legato.payload import dumps
from legato.store.base import StepResult
from legato.store.progress import Inst

if TYPE_CHECKING:
    from legato.store.reporting import Report

__all__ = ["TimeoutSweep"]

#: the actor the events of these failures name
SWEEPER = "timeout-sweeper"


class TimeoutSweep:
    """The timeout part of one sweep, inside the report's transaction."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def sweep(self, limit: int) -> int:
        """Fail the attempts past either timeout (at most ``limit`` of each); how many."""
        return self._silent(limit) + self._unclaimed(limit)

    def _candidates(self, query: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Candidates of ``query`` whose runs this transaction could lock."""
        report = self.report
        store = report.store
        rows = report.tx.all(query, limit=limit, now=store.clock.now())
        if not rows:
            return []
        run_ids = sorted({store._id(c["run_id"]) or "" for c in rows})
        report.lock_runs(run_ids, wait=False)
        found = []
        for row in rows:
            run_id = store._id(row["run_id"]) or ""
            if run_id in report.runs:  # else its run is busy elsewhere: next sweep
                found.append((run_id, row))
        return found

    # -- heartbeat ------------------------------------------------------------------

    def _silent(self, limit: int) -> int:
        report = self.report
        failed = 0
        for run_id, candidate in self._candidates("silent_steps", limit):
            row = report.tx.one(
                "silent_step",
                id=candidate["id"],
                attempt=candidate["attempt"],
                now=report.store.clock.now(),
            )
            if row is None:  # it heartbeat, finished or was swept since it was read
                continue
            message = (
                f"step {row['key']!r}: its task sent no heartbeat for "
                f"{float(row['silent_for']):.3g}s, more than its heartbeat_timeout of "
                f"{float(row['heartbeat_timeout']):g}s (worker {row['worker_id']} held it)"
            )
            policy = _policy(report, row) or RetryPolicy()
            result = StepResult(
                step_run_id=row["id"],
                run_id=run_id,
                step_id=row["key"],
                attempt=row["attempt"],
                ok=False,
                error=StepError("HeartbeatTimeout", message),
                retryable=is_retryable(policy, exception_names(HeartbeatTimeout(message))),
            )
            # The task's own failure, as if its worker had reported it: the worker's
            # late result is refused as stale.
            if report._fail_attempt(result):
                failed += 1
        return failed

    # -- schedule-to-start ------------------------------------------------------------

    def _unclaimed(self, limit: int) -> int:
        report = self.report
        tx = report.tx
        failed = 0
        for run_id, candidate in self._candidates("unclaimed_steps", limit):
            if not report.active(run_id):
                continue  # an ended run cancels what it has queued
            now = report.store.clock.now()
            row = tx.one(
                "unclaimed_step", id=candidate["id"], attempt=candidate["attempt"], now=now
            )
            if row is None:  # claimed (or moved on) since it was read
                continue
            key = row["key"]
            waited = float(row["waited"])
            # Whole seconds past ten: what it was timed out for, not the clock's jitter.
            shown = f"{int(waited)}" if waited >= 10 else f"{waited:.3g}"
            message = (
                f"step {key!r} was queued for {shown}s without a worker "
                f"claiming it (schedule_to_start_timeout {float(row['schedule_timeout']):g}s): "
                "no worker serving its queue and task took it"
            )
            policy = _policy(report, row)
            failures = row["failures"] + 1
            names = exception_names(ScheduleToStartTimeout(message))
            decision = RetryDecision(False)
            if policy is not None:
                decision = decide_retry(policy, failures, is_retryable(policy, names))
            error = StepError("ScheduleToStartTimeout", message)
            params = {
                "id": row["id"],
                "attempt": row["attempt"],
                "failures": failures,
                "error": dumps(error.to_json()),
                "now": now,
            }
            attempt = row["attempt"] + 1  # the attempt that never started
            details: dict[str, Any] = {"error": error.to_json()}
            failed += 1
            if decision.retry:
                tx.run("retry_unclaimed", delay=float(decision.delay), **params)
                details["retry_in"] = round(decision.delay, 3)
                report._record_failure(
                    run_id,
                    key,
                    attempt,
                    error,
                    "step.retrying",
                    details,
                    retry_in=decision.delay,
                    actor=SWEEPER,
                )
                if decision.delay > 0:
                    soonest = report.outcome.next_retry_in
                    report.outcome.next_retry_in = min(decision.delay, soonest or decision.delay)
                else:
                    tx.queued(run_id, key)
                continue
            ended = tx.one("fail_unclaimed", **params)
            report._record_failure(
                run_id, key, attempt, error, "step.failed", details, retry_in=None, actor=SWEEPER
            )
            if ended is not None:
                report.progress.failed(
                    Inst.of(run_id, {**ended, "id": row["id"]}), error.at_step(key)
                )
        return failed


def _policy(report: Report, row: dict[str, Any]) -> RetryPolicy | None:
    """The step's stored retry policy; ``None`` (no retry) when it cannot be read."""
    raw = row.get("retry")
    if raw is None:
        return RetryPolicy()
    try:
        return RetryPolicy.model_validate(report.store._json(raw))
    except Exception:
        return None
