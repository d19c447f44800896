"""A worker's usual batch sent at once: steps completed, their successors, the next claim.

Most of a worker's reports are steps that completed, each still current, whose
successors are released straight to the queue (or still wait for others) and
whose scope goes on. For such a batch the statements the ordinary path sends
one after another, each waiting for the answer before it, do not depend on
those answers: :func:`chained` sends them together behind a savepoint
(complete, release the successors, count the scopes down, claim), which on
PostgreSQL is one round trip in pipeline mode, then reads the answers. A
chain's step then costs two round trips: these statements with ``BEGIN``, and
the events with ``COMMIT``. The batch's completions go in one statement and
the dependencies they satisfy in one more (:mod:`legato.store.batched`), so
the statements do not grow with the batch.

Every statement has the ordinary path's guards, and the completions are the
ordinary path's statement (the claim, which never waits, comes before the
engine's decisions on what it answered). Where an
answer is not the usual one (an attempt no longer current, a row not as
predicted from its key, a successor ready with a decision to make), the
savepoint is rolled back and the batch takes the ordinary path: nothing is
decided on a guess. A scope brought to none is finished after the claim, as
the ordinary path would before it, and what that queues is claimed in a
second claim of the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from legato.engine.planner import shard_of
from legato.errors import RunNotFoundError
from legato.model.instances import instance_key, place_of, scope_key
from legato.model.states import StepStatus
from legato.model.steps import TaskStep
from legato.store.base import ClaimRequest, Pending, StepResult
from legato.store.batched import send_completions, send_decrements, send_releases

if TYPE_CHECKING:
    from legato.store.reporting import Report

__all__ = ["chained"]

_SAVEPOINT = "legato_chained"


@dataclass
class _Planned:
    result: StepResult
    step_id: str
    scope: str
    successors: list[str]
    completion: Pending | None = None


def chained(report: Report, results: Sequence[StepResult], claim: ClaimRequest | None) -> bool:
    """Apply ``results`` and ``claim`` at once if they are the usual kind; False if the
    transaction is as it was and the ordinary path must apply them."""
    if not results or any(not r.ok or r.stopped for r in results):
        return False
    if claim is not None and (claim.sweep or claim.timers):
        return False
    if len({r.step_run_id for r in results}) != len(results):
        return False  # one attempt reported twice: the ordinary path refuses the second
    store, tx, flow = report.store, report.tx, report.progress
    if any(not store.known_started(r.run_id) for r in results):
        return False
    planned: list[_Planned] = []
    counts: dict[tuple[str, str, int], int] = {}
    shards: dict[tuple[str, str], int] = {}
    for result in sorted(results, key=lambda r: (r.run_id, r.step_id)):
        try:
            graph = flow.graph(result.run_id)
        except RunNotFoundError:
            return False  # deleted: the ordinary path refuses its result as stale
        place, step_id = place_of(result.step_id)
        if not isinstance(graph.steps.get(step_id), TaskStep):
            return False  # an item of a map, a loop's iteration: the ordinary path
        scope = scope_key(graph, step_id, place)
        if flow._counts_itself(result.run_id, scope):
            return False  # the run's only step: it finishes the run
        successors = [instance_key(graph, s, place) for s in graph.successors.get(step_id, ())]
        planned.append(_Planned(result, step_id, scope, successors))
        count = shards.get((result.run_id, scope))
        if count is None:
            count = shards[(result.run_id, scope)] = store.shards(tx, result.run_id, scope)
        counter = (result.run_id, scope, shard_of(result.step_id, count))
        counts[counter] = counts.get(counter, 0) + 1
    store.checkpoint("runs_locked")

    # Sent in the ordinary path's order, none waiting for another's answer: the
    # completions in one statement, the dependencies they satisfy in another.
    tx.savepoint(_SAVEPOINT)
    completions = send_completions(store, tx, [plan.result for plan in planned])
    for plan in planned:
        plan.completion = completions[plan.result.step_run_id]
    released = send_releases(
        store, tx, [(plan.result.run_id, key) for plan in planned for key in plan.successors]
    )
    decrements = send_decrements(store, tx, counts)
    claimed = None if claim is None else report._send_claim(claim)

    released_rows = [] if released is None else released.rows()
    if not all(_usual(plan) for plan in planned) or not all(
        r["status"] == StepStatus.QUEUED or r["deps_remaining"] > 0 for r in released_rows
    ):
        tx.rollback_to(_SAVEPOINT)
        return False

    for plan in planned:
        r = plan.result
        row = plan.completion.one() if plan.completion is not None else None
        assert row is not None
        report.outcome.accepted += 1
        report.event(
            r.run_id,
            "step.completed",
            step_id=row["key"],
            attempt=r.attempt,
            actor=row["worker_id"],
        )
    for row in released_rows:
        if row["status"] == StepStatus.QUEUED:
            run_id = store._id(row["run_id"]) or ""
            report.event(run_id, "step.queued", step_id=row["key"])
            tx.queued(run_id, row["key"])
    waiting = tx.unclaimed
    # The runs whose top level this batch brings to none are about to be finished,
    # each needing its row: taken together, in one statement.
    report.lock_runs_now(
        run_id
        for (run_id, scope, _), pending in decrements.items()
        if scope == "" and shards[(run_id, scope)] == 1 and _none_left(pending)
    )
    for (run_id, scope, _), pending in sorted(decrements.items()):
        flow.counted_down(run_id, scope, shards[(run_id, scope)], pending.one())
    flow.settle()
    if claim is None or claimed is None:
        return True
    taken = report._take_claimed(claim, claimed.rows())
    # A scope finished above may have queued steps the claim, sent before, missed.
    if tx.unclaimed - waiting and len(taken) < claim.limit:
        taken += report._claim(replace(claim, limit=claim.limit - len(taken)))
    report.outcome.claimed = taken
    return True


def _none_left(pending: Pending) -> bool:
    row = pending.one()
    return row is not None and row["remaining"] <= 0


def _usual(plan: _Planned) -> bool:
    """The completion went through as predicted."""
    row = plan.completion.one() if plan.completion is not None else None
    if row is None or row["step_id"] != plan.step_id or row["scope"] != plan.scope:
        return False
    return row["idx"] is None and row["key"] == plan.result.step_id
