"""Pruning finished runs in bounded batches, and the turn-taking of periodic tasks.

A prune deletes whole run trees: a top-level run that finished before the
cutoff, with its child runs (same ``root_run_id``), their steps, events,
signals, counters and tags (the foreign keys cascade; the text index follows
by trigger), and its steps' log lines. Each batch is one short transaction, so
a prune of millions never holds a lock for long: its size adapts to take about
:data:`BATCH_SECONDS`. A tree with a run not finished is left alone, and so
is a run whose row another transaction holds (the next prune takes it).

Periodic tasks (the automatic retention rule) need no leader: a guarded
upsert of their row in ``maintenance`` gives the turn to one caller per
interval, whichever of many workers asks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from legato.model.retention import FINISHED, PruneResult, Retention
from legato.model.states import RunStatus

if TYPE_CHECKING:
    from legato.store.sql import SQLStore

__all__ = ["BATCH_SECONDS", "claim_turn", "prune"]

#: what one batch should take; a slower one halves the next, a quick one doubles it
BATCH_SECONDS = 0.25
#: between batches, so other writers (SQLite has one at a time) get their turn
_PAUSE = 0.01


def prune(
    store: SQLStore,
    rule: Retention,
    *,
    dry_run: bool = False,
    stop: Callable[[], bool] | None = None,
) -> PruneResult:
    """Delete (or, ``dry_run``, count) the run trees ``rule`` selects; ``stop()`` true
    ends it between two batches."""
    params = {
        "older_than": float(rule.older_than),
        "statuses": store._list([s.value for s in rule.statuses if s in FINISHED]),
        "workflow": rule.workflow,
    }
    if dry_run:
        with store._transaction(write=False) as tx:
            row = tx.one("prune_count", now=store.clock.now(), **params)
        assert row is not None
        return PruneResult(int(row["runs"]), int(row["child_runs"] or 0), 0, dry_run=True)
    result = PruneResult()
    size = rule.batch_size
    skipped: set[str] = set()
    while stop is None or not stop():
        began = time.monotonic()
        deleted, children, left = _batch(store, params, size, skipped)
        if deleted == 0 and not left:
            break
        result.runs += deleted
        result.child_runs += children
        result.batches += 1
        skipped.update(left)
        elapsed = time.monotonic() - began
        if elapsed > BATCH_SECONDS and size > 1:
            size = max(1, size // 2)
        elif elapsed < BATCH_SECONDS / 4:
            size = min(rule.batch_size, size * 2)
        time.sleep(_PAUSE)
    result.skipped = sorted(skipped)
    return result


def _batch(
    store: SQLStore, params: dict[str, object], size: int, skipped: set[str]
) -> tuple[int, int, list[str]]:
    """One transaction: up to ``size`` trees deleted; returns (runs, child runs, trees left)."""
    with store._transaction() as tx:
        rows = tx.all(
            "prune_candidates", limit=size + len(skipped), now=store.clock.now(), **params
        )
        roots = [r for r in (store._id(row["id"]) or "" for row in rows) if r not in skipped]
        roots = roots[:size]
        if not roots:
            return 0, 0, []
        children = tx.all("prune_children", ids=store._list(roots))
        going = {
            store._id(c["root_run_id"]) or ""
            for c in children
            if not RunStatus(c["status"]).finished
        }
        doomed = [r for r in roots if r not in going]
        if not doomed:
            return 0, 0, sorted(going)
        tx.run("delete_tree_logs", ids=store._list(doomed))  # no foreign key to follow
        child_runs = tx.run("delete_child_runs", ids=store._list(doomed))
        runs = tx.run("delete_runs", ids=store._list(doomed))
    return runs, child_runs, sorted(going)


def claim_turn(store: SQLStore, name: str, every: float) -> bool:
    """Whether this caller takes the periodic task ``name``'s turn: at most one caller
    per ``every`` seconds does, by the store's clock."""
    with store._transaction() as tx:
        row = tx.one("claim_maintenance", name=name, every=float(every), now=store.clock.now())
    return row is not None
