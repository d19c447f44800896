"""A worker's usual batch sent at once: steps completed, their successors, the next claim.

Most of a worker's reports are steps that completed, each still current, whose
successors are released straight to the queue (or still wait for others) and
whose scope goes on. For such a batch the statements the ordinary path sends
one after another, each waiting for the answer before it, do not depend on
those answers: :func:`chained` sends them together behind a savepoint
(complete, release the successors, count the scopes down, claim), which on
PostgreSQL is one round trip in pipeline mode, then reads the answers. A
chain's step then costs two round trips: these statements with ``BEGIN``, and
the events with ``COMMIT``.

Every statement is the ordinary path's, with its guards, sent in the ordinary
path's order, so rows are locked in the same order (the claim, which never
waits, comes before the engine's decisions on what it answered). Where an
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
from typing import TYPE_CHECKING, Any

from legato.engine.planner import shard_of
from legato.errors import RunNotFoundError
from legato.model.instances import instance_key, place_of, scope_key
from legato.model.states import StepStatus
from legato.model.steps import TaskStep
from legato.store.base import ClaimRequest, Pending, StepResult

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
    release: Pending | None = None


def chained(report: Report, results: Sequence[StepResult], claim: ClaimRequest | None) -> bool:
    """Apply ``results`` and ``claim`` at once if they are the usual kind; False if the
    transaction is as it was and the ordinary path must apply them."""
    if not results or any(not r.ok or r.stopped for r in results):
        return False
    if claim is not None and (claim.sweep or claim.timers):
        return False
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

    # Sent in the ordinary path's order, none waiting for another's answer.
    tx.savepoint(_SAVEPOINT)
    now = store.clock.now()
    for plan in planned:
        r = plan.result
        plan.completion = tx.send(
            "complete_step",
            id=r.step_run_id,
            attempt=r.attempt,
            output=r.output_json,
            inputs=r.inputs_json,
            now=now,
        )
        if plan.successors:
            plan.release = tx.send(
                "release_successors",
                run_id=r.run_id,
                keys=store._list(plan.successors),
                failed=0,
                now=now,
            )
    decrements = [
        (
            counter,
            tx.send(
                "decrement_counter",
                run_id=counter[0],
                scope=counter[1],
                shard=counter[2],
                count=count,
            ),
        )
        for counter, count in sorted(counts.items())
    ]
    claimed = None if claim is None else report._send_claim(claim)

    if not all(_usual(plan) for plan in planned):
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
        for released in plan.release.rows() if plan.release is not None else ():
            if released["status"] == StepStatus.QUEUED:
                report.event(r.run_id, "step.queued", step_id=released["key"])
                tx.queued(r.run_id, released["key"])
    waiting = tx.unclaimed
    for (run_id, scope, _), pending in decrements:
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


def _usual(plan: _Planned) -> bool:
    """The completion went through as predicted and left no successor to decide."""
    row = plan.completion.one() if plan.completion is not None else None
    if row is None or row["step_id"] != plan.step_id or row["scope"] != plan.scope:
        return False
    if row["idx"] is not None or row["key"] != plan.result.step_id:
        return False
    released: list[dict[str, Any]] = plan.release.rows() if plan.release is not None else []
    return all(r["status"] == StepStatus.QUEUED or r["deps_remaining"] > 0 for r in released)
